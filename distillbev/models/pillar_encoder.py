"""PillarFeatureNet: one PFN layer turning the points of each pillar into one vector (docs/architectures.md).

Per point the network sees its raw features (x, y, z, intensity, time lag [, MVP channels]), its offset
from the mean xyz of the points in its pillar (3) and the x, y offset from the pillar centre (2); then
Linear (no bias) + BatchNorm1d (eps 1e-3, momentum 0.01, statistics over the points of the whole batch)
+ ReLU, and the max over the pillar's points. The Linear and the BN run as one affine map whose BN
statistics come from the inputs' moments (``affine_points``), and the ReLU is the zero floor of the max.

Optionally each input column is multiplied by a fixed ``input_scale`` (folded into the linear layer's
weight columns, so the per-point cost does not change) (``CenterPointConfig.
normalize_inputs``: metres over the point range, intensity over 255, time lag over 0.5 s, the offsets
over the pillar size). Raw, the absolute x, y (tens of metres) and the intensity (0-255) swamp the time
lag (<= 0.5 s) and the offsets (< one pillar) in the linear layer, and a short schedule never grows the
weights that would let motion (velocity) and fine shape (heading) through.

Two variants with the same weights:
- dynamic (the released teacher): no caps, the max is a scatter-max (``ops.scatter_max``) straight into a
  zero canvas (valid because post-ReLU features are >= 0, so the zero of an empty cell never wins over
  a real point), which makes the pillar scatter implicit;
- hard (PointPillars): capped pillars from ``hard_voxelize``, reduced per pillar, then
  ``pillar_scatter``. Unlike mmdet3d, padding slots are excluded from the BN statistics and from the
  max, so both variants give the same canvas when no cap is hit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from distillbev.ops.pillar_scatter import pillar_scatter
from distillbev.ops.scatter_max import scatter_max
from distillbev.ops.voxelize import DynamicPillars, HardPillars, PillarGrid, scatter_mean

#: Extra per-point inputs added by the PFN: offset to the pillar's mean xyz (3) + to its centre xy (2).
PFN_EXTRA_FEATURES = 5


class PillarFeatureNet(nn.Module):
    """Points of a pillar -> one ``out_channels`` vector, written to the ``(B, C, H, W)`` canvas."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        grid: PillarGrid,
        input_scale: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        n_inputs = in_channels + PFN_EXTRA_FEATURES
        scale = (
            torch.ones(n_inputs) if input_scale is None else torch.tensor(input_scale, dtype=torch.float32)
        )
        if scale.shape != (n_inputs,) or not bool((scale > 0).all()):
            raise ValueError(
                f"PillarFeatureNet: input_scale needs {n_inputs} positive values, got {input_scale}"
            )
        # Derived from the config, so not saved: checkpoints stay loadable whatever the scale.
        self.register_buffer("input_scale", scale, persistent=False)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.grid = grid
        self.linear = nn.Linear(n_inputs, out_channels, bias=False)
        self.norm = nn.BatchNorm1d(out_channels, eps=1e-3, momentum=0.01)

    def point_features(
        self, points: torch.Tensor, pillar_mean: torch.Tensor, iy: torch.Tensor, ix: torch.Tensor
    ) -> torch.Tensor:
        """The PFN input ``(N, in_channels + 5)`` of points ``(N, in_channels)`` with their pillar's mean
        xyz ``(N, 3)`` and pillar indices ``iy, ix`` ``(N,)`` (unscaled)."""
        centre = self.grid.pillar_centers(iy, ix).to(points.dtype)  # (N, 2)
        return torch.cat([points, points[:, :3] - pillar_mean, points[:, :2] - centre], 1)

    def affine_points(self, features: torch.Tensor) -> torch.Tensor:
        """Linear (on the inputs times ``input_scale``) + BN, no ReLU, as one affine map of the per-point
        inputs ``(N, F)`` -> ``(N, out_channels)``.

        BN after a bias-free linear ``y = W x`` is itself affine in ``x``: ``gamma (W x - mu) / sigma +
        beta``. In training its batch statistics follow from the inputs' moments, ``mu = W mean(x)`` and
        ``sigma^2 = diag(W Cov(x) W^T)`` (biased, as BN normalises; the running variance takes the
        unbiased one), computed on the ``(N, F)`` inputs (F = 10 or 22) instead of the ``(N, C)`` outputs.
        So the per-point work is one ``addmm``, forward and backward, with BatchNorm1d's exact result
        and gradients (to rounding) and its running statistics updated the same way.
        """
        weight = self.linear.weight * self.input_scale  # (C, F): scaling columns = scaling inputs
        bn = self.norm
        if isinstance(bn, nn.SyncBatchNorm):  # DDP: keep the statistics synchronised across processes
            return bn(F.linear(features, weight))
        if bn.training or not bn.track_running_stats:
            n = features.shape[0]
            if n < 2:
                raise ValueError(
                    f"PillarFeatureNet: BatchNorm needs more than one point in training, got {n}"
                )
            with torch.autocast(features.device.type, enabled=False):
                x = features.float()
                x_mean = x.mean(0)  # (F,)
                xc = x - x_mean
                cov = xc.T @ xc / n  # (F, F)
                w = weight.float()
                mean = w @ x_mean  # (C,)
                var = ((w @ cov) * w).sum(1).clamp(min=0)  # (C,) biased
            if bn.training and bn.track_running_stats:
                if bn.momentum is None:
                    raise ValueError(
                        "PillarFeatureNet: BatchNorm1d momentum=None (cumulative) is not supported"
                    )
                with torch.no_grad():
                    bn.num_batches_tracked.add_(1)
                    bn.running_mean.lerp_(mean.detach(), bn.momentum)
                    bn.running_var.lerp_(var.detach() * n / (n - 1), bn.momentum)
        else:
            mean, var = bn.running_mean, bn.running_var
        scale = bn.weight * torch.rsqrt(var + bn.eps)  # (C,)
        return F.linear(features, weight * scale[:, None], bn.bias - mean * scale)

    def _check(self, points: torch.Tensor) -> None:
        if points.shape[-1] != self.in_channels:
            raise ValueError(
                f"PillarFeatureNet expects {self.in_channels} point features, got {points.shape[-1]}"
            )

    def forward_dynamic(self, pillars: DynamicPillars) -> torch.Tensor:
        """Uncapped pillars -> canvas ``(B, C, H, W)`` by a scatter-max over cell ids."""
        self._check(pillars.points)
        h, w = self.grid.height, self.grid.width
        n_cells = pillars.batch_size * h * w
        pts, cell = pillars.points, pillars.cell
        if len(pts) == 0:
            return pts.new_zeros((pillars.batch_size, self.out_channels, h, w))
        mean = scatter_mean(pts[:, :3], cell, n_cells)[cell]  # (N, 3)
        x = self.affine_points(self.point_features(pts, mean, pillars.coords[:, 1], pillars.coords[:, 2]))
        canvas = scatter_max(x, cell, n_cells)  # max(0, max over the pillar) = max of the ReLU
        return canvas.view(pillars.batch_size, h, w, -1).permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)

    def forward_hard(self, pillars: HardPillars) -> torch.Tensor:
        """Capped pillars -> per-pillar max -> canvas ``(B, C, H, W)``."""
        p, m, _ = pillars.voxels.shape
        self._check(pillars.voxels)
        valid = torch.arange(m, device=pillars.voxels.device)[None] < pillars.num_points[:, None]  # (P, M)
        pts = pillars.voxels[valid]  # (N, C) real points, pillar by pillar
        pillar = valid.nonzero()[:, 0]  # (N,) pillar of each point
        if len(pts) == 0:
            feats = pts.new_zeros((p, self.out_channels))
        else:
            mean = scatter_mean(pts[:, :3], pillar, p)[pillar]  # (N, 3)
            coords = pillars.coords[pillar]  # (N, 3)
            x = self.affine_points(self.point_features(pts, mean, coords[:, 1], coords[:, 2]))  # (N, C)
            feats = scatter_max(x, pillar, p)  # (P, C), = the max of the ReLU
        return pillar_scatter(feats, pillars.coords, pillars.batch_size, self.grid.height, self.grid.width)

    def forward(self, pillars: DynamicPillars | HardPillars) -> torch.Tensor:
        """Canvas ``(B, out_channels, H, W)`` from dynamic or hard pillars."""
        if isinstance(pillars, HardPillars):
            return self.forward_hard(pillars)
        return self.forward_dynamic(pillars)
