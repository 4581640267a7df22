"""Temporal fusion: the previous BEV warped into the current frame, and the ego motion between them."""

from __future__ import annotations

import math

import pytest
import torch

from distillbev.models.temporal import prev_to_current, warp_bev
from distillbev.structures import BEVGrid

#: A camera at (1, 2, 1.5) looking along +x: camera x (right) = -y, y (down) = -z, z (forward) = +x.
FORWARD = torch.tensor(
    [[0.0, 0.0, 1.0, 1.0], [-1.0, 0.0, 0.0, 2.0], [0.0, -1.0, 0.0, 1.5], [0.0, 0.0, 0.0, 1.0]]
)

GRID8 = BEVGrid(-4.0, 4.0, -4.0, 4.0, 1.0)


def _rigid(theta: float, tx: float, ty: float) -> torch.Tensor:
    m = torch.eye(4)
    m[:2, :2] = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    m[0, 3], m[1, 3] = tx, ty
    return m


def _marked(row: int, col: int) -> torch.Tensor:
    bev = torch.zeros(1, 2, 8, 8)
    bev[0, :, row, col] = torch.tensor([1.0, 3.0])
    return bev


def _cell_of(x: float, y: float) -> tuple[int, int]:
    return math.floor((y - GRID8.y_min) / GRID8.cell), math.floor((x - GRID8.x_min) / GRID8.cell)


@pytest.mark.parametrize(
    "theta,target",
    [(0.0, None), (math.pi / 2, None), (0.3, (-1.5, 2.5)), (-2.0, (0.5, -2.5))],
)
def test_warp_moves_a_marked_cell_to_the_predicted_cell(theta, target):
    # the marked previous cell: row 4, column 5 -> centre (1.5, 0.5) m in the previous frame
    m = torch.tensor([1.5, 0.5])
    if target is None:
        transform = _rigid(theta, -2.0, 0.0)  # ego drove 2 m forward (and maybe turned 90 deg)
    else:  # choose the translation so that the mark lands on the centre of a chosen cell
        rot = _rigid(theta, 0.0, 0.0)[:2, :2]
        t = torch.tensor(target) - rot @ m
        transform = _rigid(theta, float(t[0]), float(t[1]))
    predicted = transform[:2, :2] @ m + transform[:2, 3]
    row, col = _cell_of(float(predicted[0]), float(predicted[1]))
    warped = warp_bev(_marked(4, 5), transform[None], GRID8)
    assert warped.shape == (1, 2, 8, 8)
    flat = int(warped[0, 0].argmax())
    assert (flat // 8, flat % 8) == (row, col)
    assert torch.allclose(warped[0, :, row, col], torch.tensor([1.0, 3.0]), atol=1e-5)


def test_warp_of_a_pure_translation_shifts_the_whole_map_and_zero_fills():
    prev = torch.arange(64.0).view(1, 1, 8, 8)
    warped = warp_bev(prev, _rigid(0.0, -2.0, 1.0)[None], GRID8)  # content moves 2 cells left, 1 cell up (+y)
    assert torch.allclose(warped[0, 0, 1:, :6], prev[0, 0, :7, 2:])
    assert warped[0, 0, 0].abs().max() < 1e-4 and warped[0, 0, :, 6:].abs().max() < 1e-4  # zero-filled
    assert torch.allclose(warp_bev(prev, torch.eye(4)[None], GRID8), prev)


def test_prev_to_current_recovers_the_ego_motion_in_the_augmented_frame():
    cam2ego = FORWARD
    motion = _rigid(0.2, 3.0, -1.0)  # previous LiDAR frame -> current
    bev_aug = _rigid(-0.35, 0.0, 0.0) @ torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0]))  # rotation, y-flip
    bev_aug[:3, :3] *= 1.04  # BEV scale folded in
    cam2lidar = (bev_aug @ cam2ego)[None, None]
    prev_cam2lidar = (bev_aug @ motion @ cam2ego)[None, None]
    got = prev_to_current(cam2lidar, prev_cam2lidar)[0]
    # a static world point at p (previous LiDAR frame) sits at bev_aug p in the previous BEV and at
    # bev_aug motion p in the current one
    p = torch.tensor([2.0, 1.0, 0.0, 1.0])
    assert torch.allclose(got @ (bev_aug @ p), bev_aug @ motion @ p, atol=1e-5)
