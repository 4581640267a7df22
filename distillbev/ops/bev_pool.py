"""Lift-splat BEV pooling in pure PyTorch (the camera students' view transformer, docs/architectures.md).

Every frustum point ``(b, n, d, y, x)`` with metric position inside the grid contributes
``depth[b, n, d, y, x] * context[b, n, y, x, :]`` to its BEV cell; cells sum their contributions.
The work splits in two:

1. ``pool_index(geometry, grid, z_range)`` -> ``PoolIndex``: the kept (depth index, pixel index, cell)
   triples, sorted by cell. It depends only on the camera matrices, so it can be reused while they do
   not change (fixed cameras at inference, or the previous frame of a 4D student lifted with the
   current extrinsics).
2. ``bev_pool(depth, context, index, method)``: gather, multiply, sum per cell. Two methods:
   ``"index_add"`` (a custom autograd function: ``index_add_`` over flat cell ids; backward recomputes
   instead of saving the ``(P, C)`` product, as the BEVPoolv2 kernel does, with one dense gather and a
   batched matmul per pixel) and ``"segment"`` (the triples are sorted, so ``segment_reduce`` sums each
   cell's run; autograd backward).
   ``benchmarks/bev_pool.py`` measures both; ``"index_add"`` was faster on CPU (see DEFAULT_METHOD).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from distillbev.structures import BEVGrid

PoolMethod = Literal["index_add", "segment"]
#: Faster in ``benchmarks/bev_pool.py`` on CPU (1 thread): segment/index_add = 2.2x forward and
#: 1.2x (tiny S-A, B=8) / 2.0x (full R50, B=1) forward+backward.
DEFAULT_METHOD: PoolMethod = "index_add"


@dataclass
class PoolIndex:
    """Splat triples of one camera geometry, sorted by cell (ascending)."""

    depth_index: torch.Tensor  # (P,) long, into depth.flatten() of (B, N, D, h, w)
    feat_index: torch.Tensor  # (P,) long, into context rows (B * N * h * w)
    cell_index: torch.Tensor  # (P,) long, into output rows (B * G_y * G_x), ascending
    run_cells: torch.Tensor  # (U,) long, the distinct occupied cells, ascending
    run_lengths: torch.Tensor  # (U,) long, number of triples of each occupied cell
    point_cell: torch.Tensor  # (B*N*h*w*D,) long, every point's cell, pixel-major (num_cells = dropped)
    batch_size: int
    grid_shape: tuple[int, int]  # (G_y, G_x)

    @property
    def num_cells(self) -> int:
        """Output rows ``B * G_y * G_x``."""
        return self.batch_size * self.grid_shape[0] * self.grid_shape[1]


def pool_index(
    geometry: torch.Tensor, grid: BEVGrid, z_range: tuple[float, float] = (-10.0, 10.0)
) -> PoolIndex:
    """Triples of the frustum points ``geometry`` (B, N, D, h, w, 3) (x, y, z in metres) inside ``grid``
    and ``z_min <= z < z_max``; cell ``(iy, ix)`` = floor of the offset from the grid's lower corner."""
    b, n, d, h, w, _ = geometry.shape
    xyz = geometry.reshape(-1, 3)  # (B*N*D*h*w, 3)
    ix = torch.floor((xyz[:, 0] - grid.x_min) / grid.cell).long()
    iy = torch.floor((xyz[:, 1] - grid.y_min) / grid.cell).long()
    gy, gx = grid.shape
    keep = (
        (ix >= 0) & (ix < gx) & (iy >= 0) & (iy < gy) & (xyz[:, 2] >= z_range[0]) & (xyz[:, 2] < z_range[1])
    )
    point = torch.nonzero(keep).squeeze(1)  # (P,) flat frustum index = depth index
    image = point // (d * h * w)  # b * N + n
    pixel = point % (h * w)
    cell_of_point = (image // n) * (gy * gx) + iy[point] * gx + ix[point]
    order = torch.argsort(cell_of_point, stable=True)
    cell = cell_of_point[order]
    run_cells, run_lengths = torch.unique_consecutive(cell, return_counts=True)
    point_cell = torch.full((b * n * d * h * w,), b * gy * gx, dtype=torch.long, device=geometry.device)
    point_cell[point] = cell_of_point
    point_cell = point_cell.view(b * n, d, h * w).transpose(1, 2).reshape(-1)  # (B*N, h*w, D) order
    return PoolIndex(
        depth_index=point[order],
        feat_index=(image * (h * w) + pixel)[order],
        cell_index=cell,
        run_cells=run_cells,
        run_lengths=run_lengths,
        point_cell=point_cell,
        batch_size=b,
        grid_shape=(gy, gx),
    )


class _IndexAddPool(torch.autograd.Function):
    """out[cell] += depth[i] * feat[j] over the kept triples (i, j, cell).

    Backward recomputes instead of saving the ``(P, C)`` product: it gathers the output gradient of
    every frustum point in pixel-major order (dropped points read a zero row), then one batched matmul
    per pixel gives both ``grad_depth[j, d] = <g[j, d], feat[j]>`` and ``grad_feat[j] = sum_d depth[j, d]
    g[j, d]`` (contiguous, faster than scattering ``P`` rows back with ``index_add_``).
    """

    @staticmethod
    def forward(ctx, depth, feat, index):  # type: ignore[override]
        # depth (B*N, D, h*w), feat (B*N*h*w, C)
        flat = depth.reshape(-1)
        prod = feat.index_select(0, index.feat_index).mul_(flat.index_select(0, index.depth_index)[:, None])
        out = feat.new_zeros(index.num_cells, feat.shape[1]).index_add_(0, index.cell_index, prod)
        ctx.save_for_backward(depth, feat)
        ctx.index = index
        return out  # (B*G_y*G_x, C)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        depth, feat = ctx.saved_tensors
        index: PoolIndex = ctx.index
        bn, d, hw = depth.shape
        c = feat.shape[1]
        padded = torch.cat([grad_out, grad_out.new_zeros(1, c)])  # row num_cells = dropped points
        g = padded.index_select(0, index.point_cell).view(bn * hw, d, c)  # (pixels, D, C)
        grad_depth = grad_feat = None
        if ctx.needs_input_grad[0]:
            gd = torch.bmm(g, feat[:, :, None]).view(bn, hw, d)  # (B*N, h*w, D)
            grad_depth = gd.transpose(1, 2).contiguous()
        if ctx.needs_input_grad[1]:
            depth_pm = depth.transpose(1, 2).reshape(bn * hw, 1, d)  # pixel-major
            grad_feat = torch.bmm(depth_pm, g).view(bn * hw, c)
        return grad_depth, grad_feat, None


def bev_pool(
    depth: torch.Tensor, context: torch.Tensor, index: PoolIndex, method: PoolMethod = DEFAULT_METHOD
) -> torch.Tensor:
    """Splat: ``depth`` (B, N, D, h, w) weights, ``context`` (B, N, h, w, C) -> BEV ``(B, C, G_y, G_x)``."""
    c = context.shape[-1]
    flat_depth = depth.reshape(-1)  # (B*N*D*h*w,)
    feat = context.reshape(-1, c)  # (B*N*h*w, C)
    if flat_depth.dtype != feat.dtype:
        raise ValueError(f"bev_pool: depth is {flat_depth.dtype} but context is {feat.dtype}")
    match method:
        case "index_add":
            b, n, d, h, w = depth.shape
            out = _IndexAddPool.apply(depth.reshape(b * n, d, h * w), feat, index)
        case "segment":
            prod = flat_depth[index.depth_index, None] * feat[index.feat_index]  # (P, C), sorted by cell
            sums = torch.segment_reduce(prod, "sum", lengths=index.run_lengths, axis=0)  # (U, C)
            out = feat.new_zeros(index.num_cells, c).index_copy(0, index.run_cells, sums)
        case _:
            raise ValueError(f"bev_pool: unknown method {method!r}; expected 'index_add' or 'segment'")
    gy, gx = index.grid_shape
    return out.view(index.batch_size, gy, gx, c).permute(0, 3, 1, 2).contiguous()  # (B, C, G_y, G_x)
