"""Adaptive scaling: 1/sqrt(n_k) inside boxes, 1/N_bg on background, 1/N_fp on FP cells (docs/method.md)."""

import math

import pytest
import torch

from distillbev.distill.regions import background_mask, foreground_mask
from distillbev.distill.scaling import background_scale, false_positive_scale, foreground_scale
from distillbev.structures import BEVGrid

GRID = BEVGrid(-6.4, 6.4, -6.4, 6.4, 0.8)  # 16 x 16 cells of 0.64 m^2


def box(x, y, l, w, yaw=0.0):
    return [x, y, 0.5, l, w, 1.5, yaw, 0.0, 0.0]


def test_object_scales_follow_inverse_sqrt_of_area_in_cells():
    car = box(-0.4, 0.8, 4.0, 1.6)  # 6.4 m^2 = 10 cells -> 1/sqrt(10); covers rows 8..9, cols 5..9
    cone = box(-4.4, -4.4, 0.4, 0.4)  # 0.16 m^2 = 0.25 cells -> 2.0; centred on the centre of cell (2, 2)
    bus = box(2.0, -4.0, 6.4, 3.2, 0.3)  # 20.48 m^2 = 32 cells -> 1/sqrt(32)
    boxes = [torch.tensor([car, cone, bus])]
    _, index = foreground_mask(boxes, GRID, "hard", "center")
    scale = foreground_scale(index, boxes, GRID)
    assert torch.allclose(scale[0, 8:10, 5:10], torch.full((2, 5), 1 / math.sqrt(10)))
    assert scale[0, 2, 2].item() == pytest.approx(2.0)
    assert int((index[0] == 2).sum()) >= 28  # about its 32 cells of area
    assert torch.allclose(scale[0][index[0] == 2], torch.tensor(1 / math.sqrt(32)))
    assert (scale[0][index[0] < 0] == 0).all()
    # the same objects on a grid twice as coarse: n is 4x smaller, the scale 2x larger
    coarse = GRID.scaled(2)
    _, index2 = foreground_mask(boxes, coarse, "hard", "center")
    scale2 = foreground_scale(index2, boxes, coarse)
    assert int((index2[0] == 2).sum()) >= 5
    assert torch.allclose(scale2[0][index2[0] == 2], torch.tensor(2 / math.sqrt(32)))


def test_overlap_uses_lowest_index_scale():
    small = box(-0.4, 0.8, 4.0, 1.6)
    big = box(0.0, 0.8, 6.4, 3.2)
    boxes = [torch.tensor([small, big])]
    _, index = foreground_mask(boxes, GRID, "hard", "center")
    scale = foreground_scale(index, boxes, GRID)
    assert scale[0, 8, 7].item() == pytest.approx(1 / math.sqrt(10))  # in both: the first box's scale
    assert scale[0, 7, 7].item() == pytest.approx(1 / math.sqrt(32))  # only in the big one


def test_background_and_fp_scales_sum_to_one():
    boxes = [torch.tensor([box(-0.4, 0.8, 4.0, 1.6)]), torch.zeros(0, 9)]
    fg, _ = foreground_mask(boxes, GRID, "hard", "center")
    fp = torch.zeros(2, 16, 16)
    fp[0, 0:3, 0:3] = 1
    fp[1, 5, 5] = 1
    bg = background_mask(fg, fp)
    s_bg = background_scale(bg)
    s_fp = false_positive_scale(fp)
    assert torch.allclose(s_bg.sum((1, 2)), torch.ones(2))
    assert torch.allclose(s_fp.sum((1, 2)), torch.ones(2))
    assert s_bg[0, 15, 15].item() == pytest.approx(1 / (256 - 10 - 9))
    assert s_bg[1, 15, 15].item() == pytest.approx(1 / 255)
    assert s_fp[0, 0, 0].item() == pytest.approx(1 / 9)
    assert (s_bg[bg == 0] == 0).all() and (s_fp[fp == 0] == 0).all()


def test_empty_region_has_zero_scale():
    assert background_scale(torch.zeros(1, 4, 4)).sum() == 0
    assert false_positive_scale(torch.zeros(1, 4, 4)).sum() == 0
