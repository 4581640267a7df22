"""BEV pooling against a slow reference: dense outer product, then an explicit loop over cells."""

from __future__ import annotations

import math

import pytest
import torch

from distillbev.ops.bev_pool import bev_pool, pool_index
from distillbev.structures import BEVGrid

GRID = BEVGrid(-4.0, 4.0, -3.0, 3.0, 1.0)  # 6 rows (y) x 8 columns (x)
Z_RANGE = (-1.0, 1.0)


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    b, n, d, h, w, c = 2, 2, 4, 3, 5, 3
    geometry = torch.rand(b, n, d, h, w, 3, generator=g) * 2 - 1
    geometry = geometry * torch.tensor([5.0, 4.0, 1.4])  # some points outside in x, y and z
    geometry[0, 0, 0, 0, 0] = torch.tensor([-3.0, 0.0, 0.0])  # exactly on a cell's lower x edge -> column 1
    geometry[1, 1, 3, 2, 4] = torch.tensor([4.0, 0.0, 0.0])  # x = x_max -> outside
    depth = torch.rand(b, n, d, h, w, generator=g).softmax(2)
    context = torch.randn(b, n, h, w, c, generator=g)
    return geometry, depth, context


def _reference(geometry, depth, context):
    """Dense ``(B, N, D, h, w, C)`` lift, then every cell sums the points whose floor index hits it."""
    b, n, d, h, w, _ = geometry.shape
    lifted = depth[..., None] * context[:, :, None]  # (B, N, D, h, w, C)
    pts, feats = geometry.reshape(b, -1, 3), lifted.reshape(b, -1, context.shape[-1])
    rows, cols = GRID.shape
    out = torch.zeros(b, context.shape[-1], rows, cols)
    for bi in range(b):
        ix = [math.floor((float(p[0]) - GRID.x_min) / GRID.cell) for p in pts[bi]]
        iy = [math.floor((float(p[1]) - GRID.y_min) / GRID.cell) for p in pts[bi]]
        zs = [float(p[2]) for p in pts[bi]]
        for r in range(rows):
            for col in range(cols):
                members = [
                    k
                    for k in range(len(ix))
                    if ix[k] == col and iy[k] == r and Z_RANGE[0] <= zs[k] < Z_RANGE[1]
                ]
                if members:
                    out[bi, :, r, col] = feats[bi, members].sum(0)
    return out


@pytest.mark.parametrize("method", ["index_add", "segment"])
def test_pooling_matches_the_reference_in_value_and_gradient(method):
    geometry, depth, context = _inputs()
    index = pool_index(geometry, GRID, Z_RANGE)
    d1, c1 = depth.clone().requires_grad_(True), context.clone().requires_grad_(True)
    d2, c2 = depth.clone().requires_grad_(True), context.clone().requires_grad_(True)
    out = bev_pool(d1, c1, index, method)
    ref = _reference(geometry, d2, c2)
    assert out.shape == (2, 3, 6, 8)
    assert torch.allclose(out, ref, atol=1e-6)
    assert ref.abs().sum() > 0 and (ref == 0).any()  # both occupied and empty cells are exercised
    upstream = torch.randn_like(ref)
    (out * upstream).sum().backward()
    (ref * upstream).sum().backward()
    assert torch.allclose(d1.grad, d2.grad, atol=1e-6)
    assert torch.allclose(c1.grad, c2.grad, atol=1e-6)


def test_index_is_sorted_by_cell_and_drops_out_of_range_points():
    geometry, _, _ = _inputs()
    index = pool_index(geometry, GRID, Z_RANGE)
    assert (index.cell_index[1:] >= index.cell_index[:-1]).all()
    assert int(index.run_lengths.sum()) == len(index.cell_index)
    xyz = geometry.reshape(-1, 3)[index.depth_index]
    assert ((xyz[:, 0] >= -4) & (xyz[:, 0] < 4) & (xyz[:, 1] >= -3) & (xyz[:, 1] < 3)).all()
    assert ((xyz[:, 2] >= -1) & (xyz[:, 2] < 1)).all()
    # the point on the lower x edge of column 1 (row 3) of sample 0 is kept in that cell
    assert 0 in index.depth_index.tolist()
    assert int(index.cell_index[index.depth_index == 0]) == 3 * 8 + 1
    # the point at x = x_max is dropped
    last = geometry[1, 1, 3, 2, 4]
    assert torch.equal(last, torch.tensor([4.0, 0.0, 0.0]))
    assert geometry[..., 0].numel() - 1 not in index.depth_index.tolist()


def test_unknown_method_is_refused():
    geometry, depth, context = _inputs()
    with pytest.raises(ValueError, match="unknown method"):
        bev_pool(depth, context, pool_index(geometry, GRID, Z_RANGE), "cumsum")  # type: ignore[arg-type]
