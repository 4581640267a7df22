"""Region decomposition: box rasterisation, false-positive region, background (docs/method.md)."""

import math

import numpy as np
import pytest
import torch

from distillbev.distill.regions import GAUSSIAN_SIGMA, background_mask, false_positive_mask, foreground_mask
from distillbev.structures import BEVGrid, box_corners_bev

GRID = BEVGrid(-6.4, 6.4, -6.4, 6.4, 0.8)  # 16 x 16 cells; cell j spans [-6.4 + 0.8 j, -6.4 + 0.8 (j+1))


def box(x, y, l, w, yaw=0.0):
    return [x, y, 0.5, l, w, 1.5, yaw, 0.0, 0.0]


def brute_force_mask(boxes, grid, cell_point):
    """Slow reference: point-in-convex-polygon (cross products) for every cell, lowest box index first."""
    corners = box_corners_bev(np.asarray(boxes, dtype=np.float64))  # (M, 4, 2), counter-clockwise
    off = 0.5 if cell_point == "center" else 0.0
    index = np.full(grid.shape, -1)
    min_margin = np.inf
    for i in range(grid.height):
        for j in range(grid.width):
            p = np.array([grid.x_min + (j + off) * grid.cell, grid.y_min + (i + off) * grid.cell])
            for k in range(len(boxes)):
                crosses = []
                for e in range(4):
                    a, b = corners[k, e], corners[k, (e + 1) % 4]
                    crosses.append(
                        ((b - a)[0] * (p - a)[1] - (b - a)[1] * (p - a)[0]) / np.linalg.norm(b - a)
                    )
                min_margin = min(min_margin, min(abs(c) for c in crosses))
                if all(c >= 0 for c in crosses):
                    index[i, j] = k
                    break
    return index, min_margin


def test_axis_aligned_box_covers_exactly_its_cells_center():
    # x in [-2.4, 1.6), y in [0, 1.6): cell edges, so the cell centres of columns 5..9, rows 8..9 lie inside.
    mask, index = foreground_mask([torch.tensor([box(-0.4, 0.8, 4.0, 1.6)])], GRID, "hard", "center")
    expected = torch.zeros(16, 16)
    expected[8:10, 5:10] = 1
    assert torch.equal(mask[0], expected)
    assert torch.equal(index[0], torch.where(expected > 0, 0, -1))


def test_axis_aligned_box_covers_exactly_its_cells_corner():
    # x in [-1.9, 1.9], y in [-0.3, 1.1]: lower-left corners x = -1.6..1.6 (columns 6..10),
    # y = 0, 0.8 (rows 8, 9).
    b = torch.tensor([box(0.0, 0.4, 3.8, 1.4)])
    mask, _ = foreground_mask([b], GRID, "hard", "corner")
    expected = torch.zeros(16, 16)
    expected[8:10, 6:11] = 1
    assert torch.equal(mask[0], expected)
    # The same box tested at cell centres: x = -1.2..1.2 -> columns 6..9, y = 0.4 -> row 8 only.
    mask_c, _ = foreground_mask([b], GRID, "hard", "center")
    expected_c = torch.zeros(16, 16)
    expected_c[8:9, 6:10] = 1
    assert torch.equal(mask_c[0], expected_c)


def test_box_rotated_90_degrees():
    # 4.0 x 1.6 box turned by 90 deg at (0.1, 0.3): covers x in [-0.7, 0.9], y in [-1.7, 2.3]
    # -> centre columns x = -0.4, 0.4 (7, 8) and rows y = -1.2..2.0 (6..10).
    b = box(0.1, 0.3, 4.0, 1.6, math.pi / 2)
    mask, _ = foreground_mask([torch.tensor([b])], GRID, "hard", "center")
    expected = torch.zeros(16, 16)
    expected[6:11, 7:9] = 1
    assert torch.equal(mask[0], expected)
    ref, margin = brute_force_mask([b], GRID, "center")
    assert margin > 1e-3
    assert torch.equal(mask[0], torch.from_numpy(ref >= 0).float())


@pytest.mark.parametrize("cell_point", ["center", "corner"])
def test_rotated_boxes_match_point_in_polygon(cell_point):
    boxes = [
        box(0.13, -0.21, 5.0, 2.0, math.pi / 4),
        box(-3.3, 2.9, 2.2, 1.1, -0.7),
        box(3.1, 3.2, 3.0, 3.0, 2.5),
    ]
    _, index = foreground_mask([torch.tensor(boxes)], GRID, "hard", cell_point)
    ref, margin = brute_force_mask(boxes, GRID, cell_point)
    assert margin > 1e-4  # no sample point sits on an edge (the test is unambiguous)
    assert torch.equal(index[0], torch.from_numpy(ref))
    # A 5 x 2 m box at 45 deg covers about its area in 0.64 m^2 cells.
    assert abs(int((index[0] == 0).sum()) - 10.0 / 0.64) <= 4


def test_overlapping_boxes_lowest_index_wins():
    a = box(-0.4, 0.8, 4.0, 1.6)  # columns 5..9, rows 8..9
    b = box(2.0, 0.8, 4.0, 1.6)  # columns 8..12, rows 8..9
    _, index = foreground_mask([torch.tensor([a, b]), torch.tensor([b, a])], GRID, "hard", "center")
    assert (index[0, 8:10, 5:10] == 0).all() and (index[0, 8:10, 10:13] == 1).all()
    assert (index[1, 8:10, 8:13] == 0).all() and (index[1, 8:10, 5:8] == 1).all()
    assert int((index >= 0).sum()) == 2 * 16


def test_gaussian_mode_values_and_support():
    b = box(0.4, 0.4, 4.0, 2.4)  # centre on the centre of cell (8, 8); x in [-1.6, 2.4], y in [-0.8, 1.6]
    hard, idx_h = foreground_mask([torch.tensor([b])], GRID, "hard", "center")
    soft, idx_s = foreground_mask([torch.tensor([b])], GRID, "gaussian", "center")
    assert torch.equal(idx_h, idx_s) and torch.equal(soft > 0, hard > 0)
    assert soft[0, 8, 8].item() == pytest.approx(1.0)
    # cell (9, 10): offset (1.6, 0.8) m -> normalised (1.6 / 2.0, 0.8 / 1.2)
    u, v = 1.6 / 2.0, 0.8 / 1.2
    assert soft[0, 9, 10].item() == pytest.approx(
        math.exp(-(u * u + v * v) / (2 * GAUSSIAN_SIGMA**2)), rel=1e-5
    )


def test_empty_sample_and_batch():
    mask, index = foreground_mask(
        [torch.zeros(0, 9), torch.tensor([box(-0.4, 0.8, 4.0, 1.6)])], GRID, "hard", "center"
    )
    assert mask.shape == (2, 16, 16) and mask[0].sum() == 0 and (index[0] == -1).all()
    assert mask[1].sum() == 10


def test_false_positive_region():
    car = torch.tensor([box(-0.4, 0.8, 4.0, 1.6)])
    fg, _ = foreground_mask([car], GRID, "hard", "center")  # rows 8..9, cols 5..9
    gt = torch.zeros(1, 1, 16, 16)
    gt[0, 0, 7:11, 4:11] = 0.5  # Gaussian-like GT blob around the box
    teacher = torch.full((1, 1, 16, 16), 1e-4)
    teacher[0, 0, 7:11, 5:10] = 0.9  # teacher fires on the GT object: not FP
    teacher[0, 0, 1:3, 12:14] = 0.6  # a blob far from every box: FP
    teacher[0, 0, 14, 0] = 0.05  # below fp_threshold: not FP
    fp = false_positive_mask(teacher, gt, fg, 0.1, 0.1)
    expected = torch.zeros(1, 16, 16)
    expected[0, 1:3, 12:14] = 1
    assert torch.equal(fp, expected)
    # A teacher blob inside a GT box is removed even where the GT score is low.
    fp2 = false_positive_mask(teacher, torch.zeros_like(gt), fg, 0.1, 0.1)
    assert fp2[0][fg[0] > 0].sum() == 0 and fp2[0, 7, 5] == 1 and fp2[0, 1, 12] == 1


def test_false_positive_resolution_reconciliation():
    fg = torch.zeros(1, 8, 8)
    fg[0, 0, 0] = 1
    teacher = torch.zeros(1, 1, 16, 16)
    teacher[0, 0, 5, 9] = 0.5  # one fine cell -> coarse cell (2, 4) by max-pooling
    teacher[0, 0, 1, 1] = 0.5  # falls in foreground coarse cell (0, 0)
    fp = false_positive_mask(teacher, torch.zeros_like(teacher), fg)
    expected = torch.zeros(1, 8, 8)
    expected[0, 2, 4] = 1
    assert torch.equal(fp, expected)
    coarse = torch.zeros(1, 1, 4, 4)
    coarse[0, 0, 1, 2] = 0.5  # -> fine cells rows 2..3, cols 4..5 by nearest repetition
    fp_up = false_positive_mask(coarse, torch.zeros_like(coarse), fg)
    expected_up = torch.zeros(1, 8, 8)
    expected_up[0, 2:4, 4:6] = 1
    assert torch.equal(fp_up, expected_up)


def test_background_is_the_complement():
    fg, _ = foreground_mask([torch.tensor([box(-0.4, 0.8, 4.0, 1.6)])], GRID, "gaussian", "center")
    fp = torch.zeros(1, 16, 16)
    fp[0, 0:2, 0:3] = 1
    bg = background_mask(fg, fp)
    support = (fg > 0).float() + fp + bg
    assert torch.equal(support, torch.ones_like(support))
    assert bg.sum() == 256 - 10 - 6
    assert torch.equal(background_mask(fg), (fg == 0).float())


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="mode"):
        foreground_mask([torch.zeros(0, 9)], GRID, "soft")
    with pytest.raises(ValueError, match="gt_score"):
        false_positive_mask(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4))
