"""Scatter per-pillar feature vectors onto the dense BEV canvas (PointPillars' "pseudo image")."""

from __future__ import annotations

import torch


def pillar_scatter(
    features: torch.Tensor, coords: torch.Tensor, batch_size: int, height: int, width: int
) -> torch.Tensor:
    """Write pillar ``p``'s features ``(P, C)`` to ``canvas[b, :, iy, ix]`` of a zero ``(B, C, H, W)`` canvas.

    ``coords`` is ``(P, 3)`` long ``(batch index, iy, ix)``; each pillar must appear once (a repeated
    pillar keeps one of its vectors, unspecified which). Differentiable with respect to ``features``.
    """
    if features.ndim != 2 or coords.shape != (features.shape[0], 3):
        raise ValueError(
            f"pillar_scatter: features (P, C) and coords (P, 3), got {tuple(features.shape)} "
            f"and {tuple(coords.shape)}"
        )
    c = features.shape[1]
    if len(coords):
        limits = torch.tensor([batch_size, height, width], device=coords.device)
        if bool(((coords < 0) | (coords >= limits)).any()):
            raise ValueError(f"pillar_scatter: coords outside the ({batch_size}, {height}, {width}) canvas")
    cell = (coords[:, 0] * height + coords[:, 1]) * width + coords[:, 2]  # (P,)
    canvas = features.new_zeros((batch_size * height * width, c))
    canvas = canvas.index_copy(0, cell, features)  # (B*H*W, C)
    return canvas.view(batch_size, height, width, c).permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)
