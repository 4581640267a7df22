"""Circle and rotated BEV NMS against slow references (Python double loops, shapely polygons)."""

import math

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

from distillbev.ops.nms import bev_corners, circle_nms, rotated_iou_bev, rotated_iou_pairs, rotated_nms
from distillbev.structures import box_corners_bev


def _random_boxes(n: int, extent: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g, dtype=torch.float64) * extent
    size = torch.rand(n, 2, generator=g, dtype=torch.float64) * 4 + 0.3
    yaw = (torch.rand(n, 1, generator=g, dtype=torch.float64) - 0.5) * 2 * math.pi
    return torch.cat([centre, size, yaw], 1)  # (n, 5) x, y, l, w, yaw


def _shapely_iou(a: np.ndarray, b: np.ndarray) -> float:
    pa, pb = Polygon(a), Polygon(b)
    return pa.intersection(pb).area / pa.union(pb).area


def test_bev_corners_match_structures():
    boxes = _random_boxes(20, 10.0, seed=0)
    nine = torch.zeros(20, 9, dtype=torch.float64)
    nine[:, [0, 1, 3, 4, 6]] = boxes
    np.testing.assert_allclose(bev_corners(boxes).numpy(), box_corners_bev(nine.numpy()), atol=1e-12)


def test_rotated_iou_matches_shapely_on_random_pairs():
    a, b = _random_boxes(400, 4.0, seed=1), _random_boxes(400, 4.0, seed=2)
    # Special cases: identical boxes, the same box rotated by 180 deg, a concentric box of half the size.
    b[:10] = a[:10]
    b[10:20] = a[10:20] + torch.tensor([0.0, 0, 0, 0, math.pi], dtype=torch.float64)
    b[20:30] = a[20:30] * torch.tensor([1.0, 1, 0.5, 0.5, 1], dtype=torch.float64)
    iou = rotated_iou_pairs(a, b).numpy()
    ca, cb = bev_corners(a).numpy(), bev_corners(b).numpy()
    ref = np.array([_shapely_iou(ca[i], cb[i]) for i in range(len(a))])
    assert (ref > 0).sum() > 100 and (
        ref == 0
    ).sum() > 20  # both overlapping and disjoint pairs are exercised
    np.testing.assert_allclose(iou, ref, atol=1e-9)
    np.testing.assert_allclose(iou[:20], 1.0, atol=1e-9)
    np.testing.assert_allclose(iou[20:30], 0.25, atol=1e-9)


def test_rotated_iou_hand_cases():
    # Two unit squares offset by half a side: intersection 0.5, union 1.5.
    a = torch.tensor([[0.0, 0, 1, 1, 0], [0, 0, 2, 2, 0]])
    b = torch.tensor([[0.5, 0, 1, 1, 0], [0, 0, 2, 2, math.pi / 4]])
    iou = rotated_iou_pairs(a, b)
    # A 2x2 square and itself rotated by 45 deg: a regular octagon of area 8 (sqrt 2 - 1), union 8 - that.
    octagon = 8 * (math.sqrt(2) - 1)
    assert iou[0].item() == pytest.approx(1 / 3, abs=1e-6)
    assert iou[1].item() == pytest.approx(octagon / (8 - octagon), abs=1e-6)


def test_rotated_iou_matrix_is_symmetric_and_matches_pairs():
    boxes = _random_boxes(40, 8.0, seed=3)
    m = rotated_iou_bev(boxes, boxes)
    np.testing.assert_allclose(m.numpy(), m.T.numpy(), atol=1e-12)
    np.testing.assert_allclose(torch.diagonal(m).numpy(), 1.0, atol=1e-9)
    i, j = torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij")
    np.testing.assert_allclose(
        m.flatten().numpy(), rotated_iou_pairs(boxes[i.flatten()], boxes[j.flatten()]).numpy(), atol=1e-12
    )


def _greedy_reference(n: int, order: list[int], suppresses, max_keep: int | None) -> list[int]:
    keep, removed = [], set()
    for a_pos, a in enumerate(order):
        if a in removed:
            continue
        keep.append(a)
        for b in order[a_pos + 1 :]:
            if suppresses(a, b):
                removed.add(b)
    return keep if max_keep is None else keep[:max_keep]


@pytest.mark.parametrize("radius_sq,max_keep", [(4.0, None), (12.0, None), (0.175, 30), (1.0, 5)])
def test_circle_nms_matches_double_loop(radius_sq, max_keep):
    g = torch.Generator().manual_seed(4)
    centers = torch.rand(200, 2, generator=g) * 20
    scores = torch.rand(200, generator=g)
    keep = circle_nms(centers, scores, radius_sq, max_keep).tolist()
    c, order = centers.double().numpy(), torch.argsort(scores, descending=True).tolist()
    ref = _greedy_reference(
        200, order, lambda a, b: (c[a, 0] - c[b, 0]) ** 2 + (c[a, 1] - c[b, 1]) ** 2 <= radius_sq, max_keep
    )
    assert keep == ref
    assert 1 < len(keep) < 200


def test_circle_nms_compares_squared_distance():
    # Car task radius 4 -> effective 2 m: a box 1.9 m away is suppressed, 2.1 m and 3 m away are kept.
    centers = torch.tensor([[0.0, 0.0], [1.9, 0.0], [0.0, 10.0], [2.1, 10.0], [0.0, 20.0], [3.0, 20.0]])
    scores = torch.tensor([0.9, 0.8, 0.9, 0.8, 0.9, 0.8])
    keep = set(circle_nms(centers, scores, 4.0).tolist())
    assert keep == {0, 2, 3, 4, 5}


@pytest.mark.parametrize("threshold,pre_max,max_keep", [(0.2, None, None), (0.5, None, 10), (0.1, 40, None)])
def test_rotated_nms_matches_shapely_double_loop(threshold, pre_max, max_keep):
    boxes = _random_boxes(60, 12.0, seed=5)
    scores = torch.rand(60, generator=torch.Generator().manual_seed(6))
    keep = rotated_nms(boxes, scores, threshold, pre_max, max_keep).tolist()
    corners = bev_corners(boxes).numpy()
    order = torch.argsort(scores, descending=True).tolist()
    order = order if pre_max is None else order[:pre_max]
    ref = _greedy_reference(
        60, order, lambda a, b: _shapely_iou(corners[a], corners[b]) > threshold, max_keep
    )
    assert keep == ref
    assert len(keep) < len(order)
