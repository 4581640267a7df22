"""Radial / lateral split of the centre error: hand-computed cases, and a known depth scale error
pushed through the official devkit's matching frame."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nuscenes.eval.common.data_classes import EvalBoxes
from nuscenes.eval.detection.data_classes import DetectionBox

from distillbev.eval.fake_predictions import gt_predictions
from distillbev.eval.localisation import localisation_breakdown, split_error
from distillbev.eval.nuscenes_eval import evaluate
from distillbev.eval.results import write_results
from distillbev.eval.tables import format_localisation_table


def test_split_error_hand_computed():
    gt = [[10.0, 0.0], [0.0, -20.0], [3.0, 4.0]]
    radial, lateral = split_error(gt, [[11.0, 1.0], [0.0, -19.0], [3.0, 4.0]])
    assert radial == pytest.approx([math.sqrt(122.0) - 10.0, -1.0, 0.0])
    assert lateral == pytest.approx([1.0, 0.0, 0.0])
    # an error purely across the line of sight: (0, 5) seen from the ego, moved by 2 m along x
    radial, lateral = split_error([[0.0, 5.0]], [[2.0, 5.0]])
    assert lateral[0] == pytest.approx(2.0) and radial[0] == pytest.approx(math.sqrt(29.0) - 5.0)
    with pytest.raises(ValueError, match="line of sight"):
        split_error([[0.0, 0.0]], [[1.0, 0.0]])


def _box(token, name, ego_xy, score=-1.0):
    # global = ego + (100, 200): the breakdown must read ego_translation, not translation
    return DetectionBox(
        sample_token=token,
        translation=(ego_xy[0] + 100.0, ego_xy[1] + 200.0, 1.0),
        size=(1.9, 4.5, 1.6),
        ego_translation=(ego_xy[0], ego_xy[1], 1.0),
        detection_name=name,
        detection_score=score,
    )


def _boxes(rows):
    out = EvalBoxes()
    for token in sorted({b.sample_token for b in rows}):
        out.add_boxes(token, [b for b in rows if b.sample_token == token])
    return out


def test_breakdown_hand_computed_case():
    gt = _boxes([_box("s", "car", (10, 0)), _box("s", "car", (0, 20)), _box("s", "pedestrian", (-5, 0))])
    pred = _boxes(
        [
            _box("s", "car", (11, 0), score=0.9),  # 1 m too far
            _box("s", "car", (0, 19.5), score=0.8),  # 0.5 m too near
            _box("s", "car", (30, 30), score=0.9),  # no GT within 2 m: unmatched
            _box("s", "pedestrian", (-5, 1), score=0.6),  # 1 m to the side
            _box("s", "pedestrian", (-5, 0), score=0.1),  # below min score
        ]
    )
    m = localisation_breakdown(gt, pred)
    assert m["loc/n/car"] == 2 and m["loc/n/pedestrian"] == 1 and m["loc/n/all"] == 3
    assert m["loc/radial_bias/car"] == pytest.approx(0.25)
    assert m["loc/radial_abs/car"] == pytest.approx(0.75)
    assert m["loc/radial_bias_rel/car"] == pytest.approx((0.1 - 0.025) / 2)
    assert m["loc/lateral_abs/pedestrian"] == pytest.approx(1.0)
    assert m["loc/radial_bias/pedestrian"] == pytest.approx(math.sqrt(26.0) - 5.0)
    assert m["loc/n/bus"] == 0 and m["loc/radial_bias/bus"] is None
    table = format_localisation_table(m)
    rows = {next(iter(c.cells)) for c in table.columns[:1]}
    assert rows == {"car"} and [c.header for c in table.columns][:3] == ["class", "n", "radial bias"]


def test_depth_scale_error_through_the_devkit(eval_world, tmp_path):
    """Every prediction 1 % farther from the ego along its line of sight: after the devkit's filtering
    and ego_translation, the breakdown reads a relative radial bias of 0.01 and no lateral error."""
    nusc = eval_world.nusc
    res = gt_predictions(nusc, eval_world.split)
    for token, boxes in res["results"].items():
        sd = nusc.get("sample_data", nusc.get("sample", token)["data"]["LIDAR_TOP"])
        ego = np.asarray(nusc.get("ego_pose", sd["ego_pose_token"])["translation"][:2])
        for b in boxes:
            b["detection_score"] = 0.9
            xy = ego + 1.01 * (np.asarray(b["translation"][:2]) - ego)
            b["translation"] = [float(xy[0]), float(xy[1]), b["translation"][2]]
    path = write_results(res, tmp_path / "far.json")
    m = evaluate(eval_world.dataroot, eval_world.version, eval_world.split, path, tmp_path / "out",
                 nusc=nusc, distance_bins=())
    assert m["loc/n/all"] > 20
    assert m["loc/radial_bias_rel/all"] == pytest.approx(0.01, abs=1e-6)
    assert m["loc/radial_bias/all"] > 0.05 and m["loc/lateral_abs/all"] == pytest.approx(0.0, abs=1e-6)
    assert m["loc/radial_abs/all"] == pytest.approx(m["loc/radial_bias/all"])
