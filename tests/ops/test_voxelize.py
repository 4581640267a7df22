"""Voxelisation against slow Python-loop references."""

from __future__ import annotations

import math

import pytest
import torch

from distillbev.ops.voxelize import PillarGrid, dynamic_voxelize, hard_voxelize, scatter_mean

GRID = PillarGrid((-4.0, -3.0, -1.0, 4.0, 3.0, 1.0), 1.0)  # 6 rows (y) x 8 columns (x)


def _random_points(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=g) * torch.tensor([10.0, 8.0, 3.0]) - torch.tensor(
        [5.0, 4.0, 1.5]
    )  # some out
    extra = torch.rand(n, 2, generator=g)
    return torch.cat([xyz, extra], 1)


def _loop_cell(p: list[float]) -> tuple[int, int] | None:
    """(iy, ix) of one point by hand, or None outside the range."""
    x0, y0, z0, x1, y1, z1 = GRID.point_range
    if not (x0 <= p[0] < x1 and y0 <= p[1] < y1 and z0 <= p[2] < z1):
        return None
    return math.floor((p[1] - y0) / GRID.pillar_size), math.floor((p[0] - x0) / GRID.pillar_size)


def test_grid_rejects_non_multiple_extent():
    with pytest.raises(ValueError, match="multiple of pillar_size"):
        PillarGrid((-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), 0.3)


def test_dynamic_voxelize_matches_loop():
    batch = [_random_points(300, 0), _random_points(120, 1)]
    out = dynamic_voxelize(batch, GRID)
    ref_points, ref_coords = [], []
    for b, pts in enumerate(batch):
        for p in pts.tolist():
            cell = _loop_cell(p)
            if cell is not None:
                ref_points.append(p)
                ref_coords.append((b, *cell))
    assert len(ref_points) > 100  # the random cloud really straddles the range
    torch.testing.assert_close(out.points, torch.tensor(ref_points))
    assert out.coords.tolist() == [list(c) for c in ref_coords]
    h, w = GRID.height, GRID.width
    assert out.cell.tolist() == [(b * h + y) * w + x for b, y, x in ref_coords]

    # Per-pillar mean xyz via scatter_mean equals a dictionary-of-lists reference.
    means = scatter_mean(out.points[:, :3], out.cell, 2 * h * w)
    groups: dict[int, list[list[float]]] = {}
    for c, p in zip(out.cell.tolist(), ref_points, strict=True):
        groups.setdefault(c, []).append(p[:3])
    for c in range(2 * h * w):
        expect = torch.tensor(groups[c]).mean(0) if c in groups else torch.zeros(3)
        torch.testing.assert_close(means[c], expect, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("max_points,max_pillars", [(3, 1000), (2, 7), (100, 1000)])
def test_hard_voxelize_matches_loop(max_points, max_pillars):
    batch = [_random_points(300, 2), _random_points(80, 3)]
    out = hard_voxelize(batch, GRID, max_points, max_pillars)
    ref_vox, ref_coords = [], []
    for b, pts in enumerate(batch):
        pillars: dict[tuple[int, int], list[list[float]]] = {}  # insertion order = first point order
        for p in pts.tolist():
            cell = _loop_cell(p)
            if cell is None:
                continue
            if cell not in pillars and len(pillars) >= max_pillars:
                continue
            pillars.setdefault(cell, [])
            if len(pillars[cell]) < max_points:
                pillars[cell].append(p)
        for cell, plist in pillars.items():
            ref_coords.append([b, *cell])
            ref_vox.append(plist)
    assert out.coords.tolist() == ref_coords
    assert out.num_points.tolist() == [len(v) for v in ref_vox]
    assert out.voxels.shape[1] == max_points
    for i, plist in enumerate(ref_vox):
        torch.testing.assert_close(out.voxels[i, : len(plist)], torch.tensor(plist))
        assert torch.all(out.voxels[i, len(plist) :] == 0)
    per_sample = torch.bincount(out.coords[:, 0], minlength=2)
    assert per_sample.max() <= max_pillars
    if max_points == 2:
        assert out.num_points.max() == 2 and per_sample[0] == max_pillars  # both caps actually bite


def test_hard_voxelize_empty_sample():
    out = hard_voxelize([torch.zeros(0, 5), _random_points(50, 4)], GRID, 4, 100)
    assert (out.coords[:, 0] == 1).all() and len(out.coords) > 0
