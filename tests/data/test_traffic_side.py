import math

import numpy as np
import pytest

from distillbev.data.geometry import transform_boxes
from distillbev.data.traffic_side import side_table
from distillbev.structures import class_index

CAR = class_index("car")


def _road(rng: np.random.Generator, n: int = 200) -> np.ndarray:
    """Right-hand traffic along y: oncoming cars on the left (x in [-6, -2), heading -y, 8 m/s), cars
    going the ego's way on the right (x in [0, 4), heading +y), plus parked ones (0 m/s) on both curbs
    facing their side's traffic."""
    x = np.concatenate([rng.uniform(-6, -2, n), rng.uniform(0, 4, n)])
    ahead = x >= 0
    yaw = np.where(ahead, math.pi / 2, -math.pi / 2) + rng.normal(0, 0.05, 2 * n)
    speed = np.where(np.arange(2 * n) % 4 == 0, 0.0, 8.0)
    boxes = np.zeros((2 * n, 9))
    boxes[:, 0], boxes[:, 1] = x, rng.uniform(-30, 30, 2 * n)
    boxes[:, 3:6] = (4.5, 1.9, 1.6)
    boxes[:, 6] = yaw
    boxes[:, 7], boxes[:, 8] = speed * np.cos(yaw), speed * np.sin(yaw)
    return boxes


def test_side_table_reads_right_hand_traffic_and_a_mirror_flips_it():
    rng = np.random.default_rng(0)
    boxes = _road(rng)
    labels = np.full(len(boxes), CAR)
    rows = side_table(boxes, labels, "car", bin_width=2.0, x_limit=8.0)
    assert [r.x_low for r in rows] == [-6.0, -4.0, 0.0, 2.0]
    assert sum(r.n for r in rows) == len(boxes)
    assert [r.ahead for r in rows] == [0.0, 0.0, 1.0, 1.0]
    moving = side_table(boxes, labels, "car", x_limit=8.0, min_speed=0.5)
    assert sum(r.n for r in moving) == int((np.linalg.norm(boxes[:, 7:9], axis=1) > 0.5).sum())
    # A y-flip (a mirror) turns the rule around on the same side: left-hand traffic.
    mirrored = side_table(transform_boxes(boxes, np.diag([1.0, -1.0, 1.0, 1.0])), labels, "car", x_limit=8.0)
    assert [r.ahead for r in mirrored] == [1.0, 1.0, 0.0, 0.0]
    # A half turn (the ego now faces -y) puts the oncoming lane at x > 0 heading +y: still oncoming and
    # still on the ego's left, so the rule keeps its handedness.
    turned = side_table(transform_boxes(boxes, np.diag([-1.0, -1.0, 1.0, 1.0])), labels, "car", x_limit=8.0)
    assert [(r.x_low, r.ahead) for r in turned] == [(-4.0, 0.0), (-2.0, 0.0), (2.0, 1.0), (4.0, 1.0)]


def test_side_table_errors_and_filters():
    boxes = np.zeros((2, 9))
    boxes[:, 6] = [0.3, -0.3]
    labels = np.array([CAR, class_index("pedestrian")])
    assert side_table(boxes, labels, "car", min_count=2) == []
    assert [r.n for r in side_table(boxes, labels, "pedestrian")] == [1]
    with pytest.raises(ValueError, match="unknown detection class"):
        side_table(boxes, labels, "tram")
    with pytest.raises(ValueError, match="boxes must be"):
        side_table(boxes[:, :7], labels, "car")
