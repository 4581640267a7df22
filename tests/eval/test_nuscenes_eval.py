"""The official nuScenes evaluation on the synthetic smoke world, and the metric tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
from nuscenes.eval.detection.utils import category_to_detection_name

from distillbev.eval.fake_predictions import NoiseSpec, gt_predictions
from distillbev.eval.nuscenes_eval import (
    HEADLINE_METRICS,
    evaluate,
    lidar_to_global,
    split_sample_tokens,
)
from distillbev.eval.results import ResultsError, detections_to_results, write_results
from distillbev.eval.tables import format_metrics_table, metrics_markdown
from distillbev.structures import CLASS_NAMES

NOISE = NoiseSpec(
    sigma_xy=0.3, size_frac=0.08, sigma_yaw=0.15, sigma_velocity=0.4, miss_rate=0.1,
    attribute_flip_rate=0.1, false_positives=3,
)
TP = ("mATE", "mASE", "mAOE", "mAVE", "mAAE")


def _run(world, results, tmp_path, name):
    path = write_results(results, tmp_path / f"{name}.json")
    return evaluate(world.dataroot, world.version, world.split, path, tmp_path / name, nusc=world.nusc)


def _scores(m):
    """Everything but the wall-clock times."""
    return {k: v for k, v in m.items() if not k.endswith("time_s")}


def test_perfect_predictions_score_one(eval_world, tmp_path):
    m = _run(eval_world, gt_predictions(eval_world.nusc, eval_world.split), tmp_path, "perfect")
    assert m["mAP"] == pytest.approx(1.0, abs=1e-9) and m["NDS"] == pytest.approx(1.0, abs=1e-9)
    for k in TP:
        assert abs(m[k]) < 1e-6, k
    for name in CLASS_NAMES:
        assert m[f"AP/{name}"] == pytest.approx(1.0, abs=1e-9), name
        for e in ("ATE", "ASE", "AOE", "AVE", "AAE"):
            assert m[f"{e}/{name}"] is None or abs(m[f"{e}/{name}"]) < 1e-6, (e, name)
    assert m["AOE/traffic_cone"] is None and m["AVE/barrier"] is None  # undefined by the devkit
    saved = json.loads((tmp_path / "perfect" / "metrics.json").read_text())
    assert saved == m
    present = [k for k in m if k.startswith("mAP_") and m[k] is not None]
    assert present and all(m[k] == pytest.approx(1.0) for k in present)
    assert sum(m[k] for k in m if k.startswith("num_gt_")) == m["num_gt"]  # bins cover every class range


def test_gt_predictions_skip_zero_point_and_non_detection_boxes(eval_world):
    nusc = eval_world.nusc
    res = gt_predictions(nusc, eval_world.split)
    for token in split_sample_tokens(nusc, eval_world.split):
        anns = [nusc.get("sample_annotation", a) for a in nusc.get("sample", token)["anns"]]
        expected = [
            a["token"] for a in anns
            if category_to_detection_name(a["category_name"]) and a["num_lidar_pts"] + a["num_radar_pts"] > 0
        ]
        assert len(res["results"][token]) == len(expected)
        assert all(np.isfinite(b["velocity"]).all() for b in res["results"][token])


def test_perturbed_predictions_lower_and_deterministic(eval_world, tmp_path):
    nusc = eval_world.nusc
    a = _run(eval_world, gt_predictions(nusc, eval_world.split, NOISE, seed=1), tmp_path, "a")
    b = _run(eval_world, gt_predictions(nusc, eval_world.split, NOISE, seed=1), tmp_path, "b")
    c = _run(eval_world, gt_predictions(nusc, eval_world.split, NOISE, seed=2), tmp_path, "c")
    assert _scores(a) == _scores(b)
    assert _scores(a) != _scores(c)
    assert 0.2 < a["mAP"] < 0.99 and 0.2 < a["NDS"] < 0.99
    for k in ("mATE", "mASE", "mAOE", "mAVE"):
        assert a[k] > 0.01, k


def _lidar_frame_gt(world):
    """GT of the split as detections in each key LIDAR_TOP frame, via the devkit's get_sample_data."""
    nusc, per, poses = world.nusc, {}, {}
    for token in split_sample_tokens(nusc, world.split):
        lidar = nusc.get("sample", token)["data"]["LIDAR_TOP"]
        poses[token] = lidar_to_global(nusc, token)
        global2lidar = np.linalg.inv(poses[token])
        rows, labels = [], []
        for box in nusc.get_sample_data(lidar)[1]:
            ann = nusc.get("sample_annotation", box.token)
            name = category_to_detection_name(box.name)
            if name is None or ann["num_lidar_pts"] + ann["num_radar_pts"] == 0:
                continue
            r = box.orientation.rotation_matrix
            v = global2lidar[:3, :3] @ np.nan_to_num(nusc.box_velocity(box.token), nan=0.0)
            w, l, h = box.wlh
            rows.append([*box.center, l, w, h, np.arctan2(r[1, 0], r[0, 0]), v[0], v[1]])
            labels.append(CLASS_NAMES.index(name))
        per[token] = (np.array(rows).reshape(-1, 9), np.ones(len(rows)), np.array(labels))
    return per, poses


def test_lidar_frame_detections_converted_score_one(eval_world, tmp_path):
    """Proves the LiDAR -> global conversion; the same boxes left unconverted score ~0."""
    per, poses = _lidar_frame_gt(eval_world)
    tokens = split_sample_tokens(eval_world.nusc, eval_world.split)
    good = _run(eval_world, detections_to_results(per, poses, tokens), tmp_path, "converted")
    assert good["mAP"] == pytest.approx(1.0, abs=1e-6)
    assert good["mATE"] < 1e-6 and good["mAOE"] < 1e-6 and good["mAVE"] < 1e-6
    identity = {t: np.eye(4) for t in tokens}
    bad = _run(eval_world, detections_to_results(per, identity, tokens), tmp_path, "unconverted")
    assert bad["mAP"] < 0.05


def test_missing_tokens_filled_and_unknown_class_named(eval_world, tmp_path):
    nusc, split = eval_world.nusc, eval_world.split
    tokens = split_sample_tokens(nusc, split)
    perfect = gt_predictions(nusc, split)
    half = {"meta": perfect["meta"], "results": dict(list(perfect["results"].items())[: len(tokens) // 2])}
    per, poses = _lidar_frame_gt(eval_world)
    kept = {t: per[t] for t in list(per)[: len(tokens) // 2]}
    filled = detections_to_results(kept, poses, tokens)
    assert set(filled["results"]) == set(tokens)
    assert all(filled["results"][t] == [] for t in tokens[len(tokens) // 2 :])
    m = _run(eval_world, filled, tmp_path, "half")
    assert 0.2 < m["mAP"] < 0.9  # the empty samples' GT count as misses
    path = tmp_path / "missing.json"
    path.write_text(json.dumps(half))
    first_missing = tokens[len(tokens) // 2]
    with pytest.raises(ResultsError, match=rf"split sample token\(s\) missing, e.g. {first_missing}"):
        evaluate(eval_world.dataroot, eval_world.version, split, path, tmp_path / "o", nusc=nusc)
    bad_token = tokens[0]
    perfect["results"][bad_token].append(dict(perfect["results"][bad_token][0], detection_name="vehicle.car"))
    path.write_text(json.dumps(perfect))
    expected = rf"sample {bad_token}: box \d+: unknown detection_name 'vehicle.car'"
    with pytest.raises(ResultsError, match=expected):
        evaluate(eval_world.dataroot, eval_world.version, split, path, tmp_path / "o", nusc=nusc)


def test_empty_predictions_score_zero(eval_world, tmp_path):
    tokens = split_sample_tokens(eval_world.nusc, eval_world.split)
    m = _run(eval_world, {"meta": {}, "results": {t: [] for t in tokens}}, tmp_path, "empty")
    assert m["mAP"] == 0.0 and m["NDS"] == 0.0 and m["num_pred"] == 0
    assert all(m[k] == 1.0 for k in TP)


def _hand_metrics():
    m = {k: 0.5 for k in HEADLINE_METRICS}
    m.update({"mAP": 0.25, "NDS": 0.375})
    for i, name in enumerate(CLASS_NAMES):
        m[f"AP/{name}"] = i / 10
        for e in ("ATE", "ASE", "AOE", "AVE", "AAE"):
            m[f"{e}/{name}"] = 0.123
    m["AOE/traffic_cone"] = None
    m["mAP_0-20m"], m["AP_0-20m/car"] = 0.75, 0.8
    return m


def test_tables_show_values_and_dashes():
    m = _hand_metrics()
    md = metrics_markdown(m, title="demo")
    assert "| 0.2500 | 0.3750 | 0.5000 |" in md
    assert "| truck | 0.100 | 0.123 |" in md
    assert "| traffic_cone | 0.900 | 0.123 | 0.123 | - | 0.123 | 0.123 |" in md
    assert "| car | 0.800 |" in md and "| mAP (classes present) | 0.750 |" in md
    table = format_metrics_table(m)
    assert table.row_count == len(CLASS_NAMES) + 1
    with pytest.raises(KeyError, match="NDS"):
        metrics_markdown({"mAP": 1.0})
