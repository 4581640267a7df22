"""BEVFormer's two attentions and the geometry of their reference points (docs/bevformer.md).

- ``TemporalSelfAttention``: every BEV query samples the aligned previous BEV and the current queries
  around its own cell (deformable, one level), the two results averaged.
- ``SpatialCrossAttention``: every BEV query owns a pillar of reference points at several heights
  (``pillar_points``); projected into each camera (``project_to_cameras``) they give, per camera, the
  image locations it samples around and whether it sees the camera at all (the hit mask). A camera's
  visible queries are gathered into one padded batch (per-camera rebatching), attend to that camera's
  image tokens, and are scattered back; a query's result is the mean over the cameras it hits.

Both use ``distillbev.ops.deform_attn.ms_deform_attn`` with Deformable DETR's initialisation: offsets
start on rings around the reference point, attention uniform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from distillbev.models.image_aux import to_image
from distillbev.models.lss import CameraGeometry
from distillbev.ops.deform_attn import ms_deform_attn
from distillbev.structures import BEVGrid


def init_ring_offsets(linear: nn.Linear, heads: int, groups: int, points: int) -> None:
    """Zero weight; the bias puts point ``k`` of head ``h`` at ``(k + 1)`` cells along direction
    ``2 pi h / heads`` (scaled so its larger component is 1), in every one of ``groups``.

    ``linear``'s outputs are laid out as ``(heads, groups, points, 2)``.
    """
    angle = torch.arange(heads, dtype=torch.float32) * (2 * math.pi / heads)
    ring = torch.stack([angle.cos(), angle.sin()], -1)  # (heads, 2)
    ring = ring / ring.abs().max(-1, keepdim=True).values
    ring = ring[:, None, None, :].repeat(1, groups, points, 1)
    ring = ring * torch.arange(1, points + 1, dtype=torch.float32)[None, None, :, None]
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(ring.flatten())


def _init_attention(weights: nn.Linear, projections: Sequence[nn.Linear]) -> None:
    """Uniform attention at the start (zero logits); Xavier value and output projections."""
    nn.init.zeros_(weights.weight)
    nn.init.zeros_(weights.bias)
    for p in projections:
        nn.init.xavier_uniform_(p.weight)
        nn.init.zeros_(p.bias)


class TemporalSelfAttention(nn.Module):
    """Deformable self-attention over ``[previous BEV, current queries]`` (BEVFormer's TSA).

    Offsets and weights come from ``[previous ‖ query + pos]`` (``2C`` inputs); each of the two maps is
    sampled at ``points`` locations per head around the query's own cell (offsets in cells); the two
    outputs are averaged, projected, and added to the query (residual).
    """

    def __init__(self, dims: int, heads: int, points: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.points = heads, points
        self.sampling_offsets = nn.Linear(2 * dims, heads * 2 * points * 2)
        self.attention_weights = nn.Linear(2 * dims, heads * 2 * points)
        self.value_proj = nn.Linear(dims, dims)
        self.output_proj = nn.Linear(dims, dims)
        self.dropout = nn.Dropout(dropout)
        init_ring_offsets(self.sampling_offsets, heads, 2, points)
        _init_attention(self.attention_weights, (self.value_proj, self.output_proj))

    def forward(
        self,
        query: torch.Tensor,
        query_pos: torch.Tensor,
        prev_bev: torch.Tensor,
        reference: torch.Tensor,
        shape: tuple[int, int],
    ) -> torch.Tensor:
        """``query`` (B, Q, C), ``query_pos`` (Q, C), ``prev_bev`` (B, Q, C) aligned with the current
        frame (the queries themselves where there is no previous frame), ``reference`` (Q, 2)
        normalised cell centres of the ``shape = (H, W)`` query grid -> (B, Q, C)."""
        b, q, c = query.shape
        h, w = shape
        heads, points = self.heads, self.points
        x = torch.cat([prev_bev, query + query_pos], -1)  # (B, Q, 2C)
        value = self.value_proj(torch.stack([prev_bev, query], 1))  # (B, 2, Q, C)
        value = value.reshape(b * 2, q, heads, c // heads)
        offsets = self.sampling_offsets(x).view(b, q, heads, 2, points, 2)
        normalizer = torch.tensor([w, h], dtype=offsets.dtype, device=offsets.device)
        loc = reference[None, :, None, None, None, :] + offsets / normalizer  # (B, Q, heads, 2, P, 2)
        weights = self.attention_weights(x).view(b, q, heads, 2, points).softmax(-1)
        # the frame axis joins the batch: (B*2, Q, heads, L=1, P, ...)
        loc = loc.permute(0, 3, 1, 2, 4, 5).reshape(b * 2, q, heads, 1, points, 2)
        weights = weights.permute(0, 3, 1, 2, 4).reshape(b * 2, q, heads, 1, points)
        out = ms_deform_attn(value, [shape], loc, weights).view(b, 2, q, c).mean(1)  # (B, Q, C)
        return query + self.dropout(self.output_proj(out))


class SpatialCrossAttention(nn.Module):
    """Deformable cross-attention of the BEV queries into the cameras they hit (BEVFormer's SCA).

    ``points`` per head and level are split evenly over the ``pillar_points`` heights: point
    ``k * pillar_points + d`` samples around the projection of height ``d`` (offsets in cells of each
    level). Weights are softmaxed over levels x points per head.
    """

    def __init__(
        self, dims: int, heads: int, levels: int, points: int, pillar_points: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if points % pillar_points:
            raise ValueError(f"SCA: {points} points do not split evenly over {pillar_points} heights")
        self.heads, self.levels, self.points, self.pillar_points = heads, levels, points, pillar_points
        self.sampling_offsets = nn.Linear(dims, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dims, heads * levels * points)
        self.value_proj = nn.Linear(dims, dims)
        self.output_proj = nn.Linear(dims, dims)
        self.dropout = nn.Dropout(dropout)
        init_ring_offsets(self.sampling_offsets, heads, levels, points)
        _init_attention(self.attention_weights, (self.value_proj, self.output_proj))

    def forward(
        self,
        query: torch.Tensor,
        query_pos: torch.Tensor,
        tokens: torch.Tensor,
        token_shapes: Sequence[tuple[int, int]],
        reference_cam: torch.Tensor,
        hit: torch.Tensor,
    ) -> torch.Tensor:
        """``query`` (B, Q, C), ``query_pos`` (Q, C), ``tokens`` (B, N, S, C) image tokens of the levels
        ``token_shapes``, ``reference_cam`` (B, N, Q, D, 2) normalised image locations of the pillar
        points, ``hit`` (B, N, Q) bool -> (B, Q, C)."""
        b, n, s, c = tokens.shape
        q = query.shape[1]
        heads, levels, points, d = self.heads, self.levels, self.points, self.pillar_points
        hit = hit.flatten(0, 1)  # (B*N, Q)
        counts = hit.sum(1)  # (B*N,) queries seen by each (sample, camera)
        longest = int(counts.max())
        slots = query.new_zeros(b * q, c)
        if longest > 0:
            # per (sample, camera): the indices of its hit queries first, in order, padded to `longest`
            order = torch.argsort((~hit).to(torch.uint8), dim=1, stable=True)[:, :longest]  # (B*N, M)
            valid = torch.arange(longest, device=hit.device)[None] < counts[:, None]  # (B*N, M)
            rows = torch.arange(b * n, device=hit.device)[:, None] // n * q + order  # rows of (B*Q, C)
            x = (query + query_pos).reshape(b * q, c)[rows]  # (B*N, M, C)
            ref = reference_cam.flatten(0, 1)[torch.arange(b * n, device=hit.device)[:, None], order]
            value = self.value_proj(tokens).view(b * n, s, heads, c // heads)
            offsets = self.sampling_offsets(x).view(b * n, longest, heads, levels, points // d, d, 2)
            normalizer = torch.tensor([[w, h] for h, w in token_shapes], dtype=offsets.dtype, device=x.device)
            loc = ref[:, :, None, None, None] + offsets / normalizer[:, None, None, :]
            loc = loc.flatten(4, 5)  # (B*N, M, heads, L, P, 2)
            weights = self.attention_weights(x).view(b * n, longest, heads, levels * points).softmax(-1)
            weights = weights.view(b * n, longest, heads, levels, points)
            out = ms_deform_attn(value, token_shapes, loc, weights)  # (B*N, M, C)
            slots = slots.index_add(0, rows[valid], out[valid].to(slots.dtype))
        seen_by = hit.view(b, n, q).sum(1).clamp(min=1)  # (B, Q) cameras per query
        out = slots.view(b, q, c) / seen_by[..., None].to(slots.dtype)
        return query + self.dropout(self.output_proj(out))


def pillar_heights(z_range: tuple[float, float], count: int) -> torch.Tensor:
    """``(count,)`` reference heights (m): evenly from half a metre above ``z_min`` to half a metre
    below ``z_max`` (BEVFormer: -4.5, -2.17, 0.17, 2.5 over [-5, 3])."""
    z_min, z_max = z_range
    return torch.linspace(z_min + 0.5, z_max - 0.5, count)


def pillar_points(grid: BEVGrid, heights: torch.Tensor) -> torch.Tensor:
    """``(H*W, D, 3)`` LiDAR-frame pillar points: every cell centre of ``grid`` (query ``i * W + j`` =
    row ``i`` along y, column ``j`` along x) at each of the ``D`` heights."""
    h, w = grid.shape
    xs = grid.x_min + (torch.arange(w, dtype=torch.float32) + 0.5) * grid.cell
    ys = grid.y_min + (torch.arange(h, dtype=torch.float32) + 0.5) * grid.cell
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W)
    xy = torch.stack([gx, gy], -1).reshape(h * w, 1, 2).expand(h * w, len(heights), 2)
    z = heights.to(xy)[None, :, None].expand(h * w, len(heights), 1)
    return torch.cat([xy, z], -1)


def project_to_cameras(
    points: torch.Tensor, cams: CameraGeometry, image_size: tuple[int, int], min_depth: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillar points ``(Q, D, 3)`` -> normalised image locations ``(B, N, Q, D, 2)`` and the mask
    ``(B, N, Q, D)`` of points in front of the camera and strictly inside its (augmented) image.

    Pixels follow ``distillbev.data.batch`` (image and BEV augmentation included) and
    ``distillbev.data.augment`` (pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``), so pixel position
    ``(u, v)`` is at ``(u / W, v / H)`` of the image, the convention of ``ms_deform_attn`` on a feature
    map of any stride (as BEVFormer's normalisation by the image size).
    """
    img_h, img_w = image_size
    scale = torch.tensor([img_w, img_h], dtype=torch.float32, device=points.device)
    locs, masks = [], []
    with torch.autocast(points.device.type, enabled=False):  # geometry in fp32
        for k, r, t, c in zip(cams.intrinsics, cams.post_rot, cams.post_tran, cams.cam2lidar, strict=True):
            uv, z = to_image(points.float(), k.float(), c.float(), r.float(), t.float())  # (N, Q, D, 2)
            loc = uv / scale
            inside = (loc > 0).all(-1) & (loc < 1).all(-1)
            locs.append(loc)
            masks.append(inside & (z > min_depth))
    return torch.stack(locs), torch.stack(masks)
