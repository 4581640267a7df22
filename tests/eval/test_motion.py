"""Heading / velocity breakdown of matched detections: a hand-computed case and the devkit's AOE."""

from __future__ import annotations

import math

import pytest
from nuscenes.eval.common.data_classes import EvalBoxes
from nuscenes.eval.detection.data_classes import DetectionBox
from pyquaternion import Quaternion

from distillbev.eval.fake_predictions import gt_predictions
from distillbev.eval.motion import match_class, motion_breakdown
from distillbev.eval.nuscenes_eval import evaluate
from distillbev.eval.results import write_results
from distillbev.eval.tables import format_motion_table


def _box(token, name, xy, yaw, velocity, score=-1.0):
    return DetectionBox(
        sample_token=token,
        translation=(xy[0], xy[1], 1.0),
        size=(1.9, 4.5, 1.6),
        rotation=tuple(Quaternion(axis=(0, 0, 1), angle=yaw).elements),
        velocity=velocity,
        detection_name=name,
        detection_score=score,
        attribute_name="",
    )


def _boxes(rows):
    out = EvalBoxes()
    for token in sorted({b.sample_token for b in rows}):
        out.add_boxes(token, [b for b in rows if b.sample_token == token])
    return out


def test_hand_computed_case():
    gt = _boxes([
        _box("s", "car", (0, 0), 0.0, (5.0, 0.0)),  # moving
        _box("s", "car", (10, 0), 0.0, (0.0, 0.0)),  # parked
        _box("s", "barrier", (20, 0), 0.3, (math.nan, math.nan)),
    ])
    pred = _boxes([
        _box("s", "car", (0.5, 0), 0.1, (4.0, 0.0), score=0.9),  # moving car: heading ok, 1 m/s off
        _box("s", "car", (0.2, 0), 0.0, (5.0, 0.0), score=0.8),  # same GT, lower score: unmatched
        _box("s", "car", (10, 1), 0.1 + math.pi, (0.0, 0.6), score=0.7),  # parked car flipped
        _box("s", "car", (10, 0), 0.0, (0.0, 0.0), score=0.2),  # below min_score
        _box("s", "car", (30, 0), 0.0, (0.0, 0.0), score=0.9),  # no GT near
        _box("s", "barrier", (20, 0), 0.3 + math.pi, (0.0, 0.0), score=0.5),  # barrier: period pi
    ])
    pairs = match_class(gt, pred, "car", 2.0, 0.3)
    assert [(g.translation[0], p.detection_score) for g, p in pairs] == [(0, 0.9), (10, 0.7)]
    m = motion_breakdown(gt, pred)
    assert m["motion/n/car"] == 2
    assert m["motion/heading30/car"] == pytest.approx(0.5)
    assert m["motion/flipped/car"] == pytest.approx(0.5)
    assert m["motion/heading30_moving/car"] == pytest.approx(1.0)
    assert m["motion/heading30_static/car"] == pytest.approx(0.0)
    assert m["motion/speed_pred/car"] == pytest.approx(4.0)
    assert m["motion/speed_gt/car"] == pytest.approx(5.0)
    assert m["motion/ave_moving/car"] == pytest.approx(1.0)
    assert m["motion/ave_static/car"] == pytest.approx(0.6)
    assert m["motion/n/barrier"] == 1 and m["motion/heading30/barrier"] == pytest.approx(1.0)
    assert m["motion/flipped/barrier"] == pytest.approx(0.0) and m["motion/ave_static/barrier"] is None
    assert m["motion/n/truck"] == 0 and m["motion/heading30/truck"] is None
    assert not any(k.endswith("/traffic_cone") for k in m)


def test_flipped_cars_against_devkit_aoe(eval_world, tmp_path):
    """Every car turned by 180 degrees: the devkit's car AOE is pi and the breakdown says all flipped,
    while the other classes stay exact (heading within 30, velocity error 0)."""
    res = gt_predictions(eval_world.nusc, eval_world.split)
    for boxes in res["results"].values():
        for b in boxes:
            b["detection_score"] = 0.9
            if b["detection_name"] == "car":
                q = Quaternion(b["rotation"]) * Quaternion(axis=(0, 0, 1), angle=math.pi)
                b["rotation"] = list(q.elements)
    path = write_results(res, tmp_path / "flipped.json")
    m = evaluate(eval_world.dataroot, eval_world.version, eval_world.split, path, tmp_path / "out",
                 nusc=eval_world.nusc, distance_bins=())
    assert m["AOE/car"] == pytest.approx(math.pi, abs=1e-6)
    assert m["motion/n/car"] > 0 and m["motion/flipped/car"] == 1.0 and m["motion/heading30/car"] == 0.0
    assert m["motion/speed_pred/car"] == pytest.approx(m["motion/speed_gt/car"])  # velocities untouched
    for name in ("truck", "pedestrian"):
        assert m[f"motion/n/{name}"] > 0, name
        assert m[f"motion/heading30/{name}"] == 1.0 and m[f"motion/flipped/{name}"] == 0.0
        for key in ("ave_moving", "ave_static"):
            assert m[f"motion/{key}/{name}"] in (None, pytest.approx(0.0, abs=1e-9))


def test_motion_table_shows_values_and_dashes():
    m = {"motion/n/car": 2, "motion/heading30/car": 0.5, "motion/speed_pred/car": None}
    table = format_motion_table(m)
    assert [c.header for c in table.columns][:3] == ["class", "n", "<30"]
    row = [next(iter(c.cells)) for c in table.columns]
    assert row[:3] == ["car", "2", "0.50"] and row[6] == "-"  # speed_pred None -> dash
    assert format_motion_table({"mAP": 0.1}) is None
