"""Scatter-max with a zero floor and a cheap backward (the dynamic PillarFeatureNet's reduction).

``torch.Tensor.scatter_reduce(..., "amax")`` under autograd spends most of its time in the backward
(gathering the result back to every point, comparing, counting ties). ``scatter_max`` records, per
output element, one point that holds the maximum (the highest index among ties) during the forward, and
the backward is a single scatter of the output gradient to those points. Gradients equal the built-in's
wherever the maximum is unique; on ties the built-in splits the gradient evenly and this gives it all to
one point (in a PFN, ties only occur at 0 after the ReLU, where no gradient passes anyway).
When no gradient is wanted (a frozen teacher, evaluation) only the reduction itself runs: recording the
winners costs more than the reduction.
"""

from __future__ import annotations

import torch


def _reduce(x: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """The zero-floored scatter-max itself, ``(size, C)``."""
    idx = index[:, None].expand_as(x)
    return x.new_zeros((size, x.shape[1])).scatter_reduce_(0, idx, x, "amax", include_self=True)


class _ScatterMax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
        idx = index[:, None].expand_as(x)
        out = _reduce(x, index, size)
        holds_max = x == out.gather(0, idx)
        pos = torch.arange(x.shape[0], device=x.device, dtype=torch.int32)[:, None].expand_as(x)
        winner = torch.full((size, x.shape[1]), -1, dtype=torch.int32, device=x.device)
        winner.scatter_reduce_(0, idx, torch.where(holds_max, pos, -1), "amax", include_self=True)
        ctx.save_for_backward(winner)
        ctx.num_points = x.shape[0]
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (winner,) = ctx.saved_tensors
        gx = grad.new_zeros((ctx.num_points, grad.shape[1]))
        gx.scatter_add_(0, winner.clamp(min=0).long(), grad * (winner >= 0))
        return gx, None, None


def scatter_max(x: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """``out[k, c] = max(0, max_{i: index[i] = k} x[i, c])`` for ``x (N, C)``, ``index (N,)`` in
    ``[0, size)`` -> ``(size, C)`` (0 where no point lands); differentiable in ``x``. The zero floor
    makes it the max of ``relu(x)``, gradient included (none where every point is negative), so a
    PFN passes its pre-activation and skips the ReLU pass."""
    if x.dim() != 2 or index.shape != x.shape[:1]:
        raise ValueError(
            f"scatter_max: x must be (N, C) and index (N,), got {tuple(x.shape)}, {tuple(index.shape)}"
        )
    if x.shape[0] >= 2**31:
        raise ValueError(f"scatter_max: {x.shape[0]} points exceed the int32 winner index")
    if not (torch.is_grad_enabled() and x.requires_grad):
        return _reduce(x, index, size)
    return _ScatterMax.apply(x, index, size)
