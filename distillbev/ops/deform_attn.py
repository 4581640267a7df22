"""Multi-scale deformable attention in pure PyTorch (Deformable DETR; BEVFormer's TSA and SCA).

Every query reads, per head, ``L x P`` bilinear samples of the value maps at learned locations and sums
them with attention weights (softmaxed over ``L x P`` by the caller). The sampling is
``F.grid_sample`` (bilinear, zeros outside, ``align_corners=False``): a location ``(x, y)`` in ``[0, 1]``
is measured in units of the map's width and height, so the centre of value cell ``(i, j)`` of an
``H x W`` level sits at ``((j + 0.5) / W, (i + 0.5) / H)``.

Memory: the samples of one level are a ``(B * heads, C_h, Q, P)`` tensor, and autograd keeps them for
the weighted sum's backward. When ``B x C x Q x L x P`` exceeds ``max_elements`` the queries are split
into chunks, and with gradients on each chunk is checkpointed (recomputed in backward), so that only
one chunk's samples are alive at a time (docs/bevformer.md, "Memory").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

#: Samples (batch x channels x queries x levels x points) above which the queries are chunked:
#: 2^26 fp32 values = 256 MiB per chunk.
MAX_ELEMENTS = 1 << 26


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    max_elements: int = MAX_ELEMENTS,
) -> torch.Tensor:
    """Deformable attention over ``L`` levels: ``(B, Q, heads * C_h)``.

    ``value`` (B, S, heads, C_h): the levels' cells, flattened row-major and concatenated
    (``S = sum H_l W_l``); ``spatial_shapes``: ``(H_l, W_l)`` per level; ``sampling_locations``
    (B, Q, heads, L, P, 2): ``(x, y)`` in ``[0, 1]`` (outside reads zeros); ``attention_weights``
    (B, Q, heads, L, P).
    """
    b, s, heads, ch = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    sizes = [h * w for h, w in spatial_shapes]
    if len(sizes) != levels or sum(sizes) != s:
        raise ValueError(
            f"ms_deform_attn: value has {s} cells but spatial_shapes {list(spatial_shapes)} give "
            f"{sum(sizes)} over {len(sizes)} levels (sampling locations have {levels})"
        )
    if attention_weights.shape != sampling_locations.shape[:-1]:
        raise ValueError(
            f"ms_deform_attn: attention weights {tuple(attention_weights.shape)} do not match the "
            f"sampling locations {tuple(sampling_locations.shape)}"
        )
    maps = [
        v.permute(0, 2, 3, 1).reshape(b * heads, ch, h, w)  # (B*heads, C_h, H_l, W_l)
        for v, (h, w) in zip(value.split(sizes, 1), spatial_shapes, strict=True)
    ]
    grids = (2 * sampling_locations - 1).transpose(1, 2).flatten(0, 1)  # (B*heads, Q, L, P, 2)
    weights = attention_weights.transpose(1, 2).flatten(0, 1)  # (B*heads, Q, L, P)
    chunk = max(1, max_elements // max(1, b * heads * ch * levels * points))
    if q <= chunk:
        out = _sample(maps, grids, weights)
    else:
        recompute = torch.is_grad_enabled()
        parts = []
        for g, w in zip(grids.split(chunk, 1), weights.split(chunk, 1), strict=True):
            if recompute:
                parts.append(checkpoint(_sample, maps, g, w, use_reentrant=False))
            else:
                parts.append(_sample(maps, g, w))
        out = torch.cat(parts, -1)
    return out.view(b, heads * ch, q).transpose(1, 2)  # (B, Q, heads*C_h)


def _sample(maps: list[torch.Tensor], grids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum of the bilinear samples, level by level (only one level's samples alive at once):
    ``(B*heads, C_h, Q)``."""
    out = None
    for level, m in enumerate(maps):
        sampled = F.grid_sample(
            m, grids[:, :, level], mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (B*heads, C_h, Q, P)
        part = (sampled * weights[:, None, :, level].to(sampled.dtype)).sum(-1)  # (B*heads, C_h, Q)
        out = part if out is None else out + part
    assert out is not None
    return out
