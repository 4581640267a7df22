"""Result-JSON building, validation and atomic writing (no dataset needed)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from nuscenes.utils.data_classes import Box
from nuscenes.utils.geometry_utils import transform_matrix
from pyquaternion import Quaternion

from distillbev.eval.results import (
    ResultsError,
    boxes_to_global,
    detections_to_results,
    load_results,
    matrix_to_quaternion,
    results_to_detections,
    write_results,
)

Q_CS, T_CS = Quaternion(axis=[0.1, 0.2, 1.0], angle=0.7), [0.9, 0.1, 1.8]  # lidar -> ego
Q_EP, T_EP = Quaternion(axis=[0.01, -0.02, 1.0], angle=2.5), [300.0, 1200.0, 0.0]  # ego -> global
LIDAR2GLOBAL = transform_matrix(T_EP, Q_EP) @ transform_matrix(T_CS, Q_CS)


def _boxes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre, size = rng.uniform(-40, 40, (n, 3)), rng.uniform(0.5, 5, (n, 3))
    return np.c_[centre, size, rng.uniform(-3, 3, n), rng.normal(0, 3, (n, 2))]  # (n, 9)


def test_boxes_to_global_matches_devkit_box_transforms():
    """Reference: the devkit's Box.rotate/translate chain lidar -> ego -> global."""
    boxes = _boxes(7)
    g = boxes_to_global(boxes, LIDAR2GLOBAL.astype(np.float32))
    for i, b in enumerate(boxes):
        yaw = Quaternion(axis=[0, 0, 1], angle=b[6])
        box = Box(b[:3], [b[4], b[3], b[5]], yaw, velocity=(b[7], b[8], 0.0))
        box.rotate(Q_CS)
        box.translate(T_CS)
        box.rotate(Q_EP)
        box.translate(T_EP)
        q = np.array(box.orientation.elements)
        np.testing.assert_allclose(g["translation"][i], box.center, atol=1e-3)
        np.testing.assert_allclose(g["rotation"][i], q * np.sign(q[0]), atol=1e-5)
        np.testing.assert_allclose(g["velocity"][i], box.velocity[:2], atol=1e-4)
        np.testing.assert_allclose(g["size"][i], box.wlh)


def test_matrix_to_quaternion_round_trips_all_branches():
    """Rotations near 0 and near pi about each axis exercise all four branches of Shepperd's method."""
    quats = [Quaternion(axis=a, angle=t) for a in np.eye(3) for t in (0.1, 3.1)] + [Quaternion.random()]
    got = matrix_to_quaternion(np.stack([q.rotation_matrix for q in quats]))
    for q, g in zip(quats, got, strict=True):
        e = np.array(q.elements) * np.sign(q.elements[0])
        np.testing.assert_allclose(g, e, atol=1e-9)


def test_every_split_token_present_and_fields_converted():
    boxes = _boxes(3)
    boxes[1, 7:9] = np.nan  # NaN velocity must become 0, never NaN (the devkit refuses NaN)
    dets = {"s1": (torch.tensor(boxes), torch.tensor([0.2, 0.9, 0.0]), torch.tensor([0, 8, 9]))}
    out = detections_to_results(dets, {"s1": LIDAR2GLOBAL}, ["s0", "s1", "s2"])
    assert set(out["results"]) == {"s0", "s1", "s2"}
    assert out["results"]["s0"] == [] and out["results"]["s2"] == []
    assert "meta" in out
    entries = out["results"]["s1"]
    # sorted by score; the zero score is floored above 0 (a 0 score makes every TP error 1)
    assert [e["detection_name"] for e in entries] == ["pedestrian", "car", "traffic_cone"]
    assert all(e["detection_score"] > 0 for e in entries)
    assert entries[0]["velocity"] == [0.0, 0.0]
    assert entries[0]["attribute_name"] == "pedestrian.standing"  # speed 0 -> standing
    assert entries[2]["attribute_name"] == ""  # cones carry no attribute
    ref = boxes_to_global(boxes[[1, 0, 2]], LIDAR2GLOBAL)
    np.testing.assert_allclose([e["size"] for e in entries], ref["size"])
    json.dumps(out, allow_nan=False)  # strictly valid JSON


def test_unknown_class_index_and_name_are_named():
    boxes = _boxes(2)
    with pytest.raises(ResultsError, match=r"sample s1: box 1: unknown class index 12"):
        detections_to_results({"s1": (boxes, np.ones(2), np.array([0, 12]))}, {"s1": LIDAR2GLOBAL}, ["s1"])
    with pytest.raises(ResultsError, match=r"sample s1: box 0: unknown detection_name 'vehicle.car'"):
        detections_to_results({"s1": (boxes, [1, 1], ["vehicle.car", "car"])}, {"s1": LIDAR2GLOBAL}, ["s1"])


@pytest.mark.parametrize(
    ("col", "value", "message"),
    [(4, 0.0, r"box 1: size field w = 0"), (0, np.nan, r"box 1: field x is nan"), (6, np.inf, r"field yaw")],
)
def test_bad_geometry_is_named(col, value, message):
    boxes = _boxes(2)
    boxes[1, col] = value
    with pytest.raises(ResultsError, match=message):
        detections_to_results({"tok": (boxes, np.ones(2), [0, 1])}, {"tok": LIDAR2GLOBAL}, ["tok"])


def test_tokens_outside_split_and_missing_pose_are_errors():
    boxes = _boxes(1)
    with pytest.raises(ResultsError, match="not in the split, e.g. other"):
        detections_to_results({"other": (boxes, [1.0], [0])}, {"other": LIDAR2GLOBAL}, ["tok"])
    with pytest.raises(ResultsError, match="sample tok: no lidar2global"):
        detections_to_results({"tok": (boxes, [1.0], [0])}, {}, ["tok"])


def test_at_most_500_boxes_keeping_the_best():
    boxes = _boxes(600)
    scores = np.linspace(0.01, 1.0, 600)
    out = detections_to_results({"t": (boxes, scores, np.zeros(600))}, {"t": np.eye(4)}, ["t"])
    kept = out["results"]["t"]
    assert len(kept) == 500
    assert min(e["detection_score"] for e in kept) == pytest.approx(scores[100])


def _valid(tmp_path):
    out = detections_to_results({"t": (_boxes(2), [0.5, 0.7], [0, 3])}, {"t": np.eye(4)}, ["t", "u"])
    return out, tmp_path / "results.json"


def test_write_and_load_round_trip(tmp_path):
    out, path = _valid(tmp_path)
    write_results(out, path)
    assert load_results(path, tokens=["t", "u"]) == out
    with pytest.raises(ResultsError, match=r"split sample token\(s\) missing, e.g. v"):
        load_results(path, tokens=["t", "v"])


def test_load_names_file_token_and_unknown_detection_name(tmp_path):
    out, path = _valid(tmp_path)
    out["results"]["t"][1]["detection_name"] = "vehicle.bus.rigid"
    path.write_text(json.dumps(out))
    expected = re.escape(f"{path}: sample t: box 1: unknown detection_name 'vehicle.bus.rigid'")
    with pytest.raises(ResultsError, match=expected):
        load_results(path)
    del out["meta"]
    path.write_text(json.dumps(out))
    with pytest.raises(ResultsError, match="missing top-level key 'meta'"):
        load_results(path)
    path.write_text('{"meta": {}, "results": {"t": [')
    with pytest.raises(ResultsError, match="not valid JSON"):
        load_results(path)


def test_write_is_atomic(tmp_path):
    out, path = _valid(tmp_path)
    write_results(out, path)
    before = path.read_bytes()
    bad = json.loads(json.dumps(out))
    bad["results"]["t"][0]["size"][0] = -1.0
    with pytest.raises(ResultsError, match="sizes must be > 0"):
        write_results(bad, path)
    unserialisable = json.loads(json.dumps(out))
    unserialisable["meta"]["extra"] = object()  # passes validation, fails while serialising
    with pytest.raises(TypeError):
        write_results(unserialisable, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    fresh = tmp_path / "new.json"
    with pytest.raises(TypeError):
        write_results(unserialisable, fresh)
    assert not fresh.exists()


def test_results_to_detections_inverts_the_conversion():
    """Exact round trip for an upright LiDAR (a tilted one loses the global vz the format drops)."""
    level = transform_matrix([5.0, -3.0, 1.8], Quaternion(axis=[0, 0, 1], angle=2.0))
    boxes = _boxes(5)
    boxes[:, 6] = np.array([-3.0, -1.0, 0.0, 1.5, 3.1])  # yaw inside (-pi, pi] to compare directly
    labels = np.array([0, 3, 5, 8, 9])
    out = detections_to_results({"t": (boxes, np.linspace(0.9, 0.5, 5), labels)}, {"t": level}, ["t"])
    back, scores, back_labels = results_to_detections(out["results"]["t"], level)
    np.testing.assert_allclose(back, boxes, atol=1e-9)
    np.testing.assert_allclose(scores, np.linspace(0.9, 0.5, 5))
    np.testing.assert_array_equal(back_labels, labels)
