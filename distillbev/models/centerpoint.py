"""CenterPoint with pillars: the LiDAR teacher (docs/architectures.md).

points -> pillars (dynamic or hard) -> PillarFeatureNet -> canvas -> SECOND (3 stages = taps B0, B1, B2)
-> SECONDFPN (tap H) -> CenterHead. The head grid is the point range at the SECONDFPN resolution,
i.e. cells of ``pillar_size * fpn_stride`` metres.

Defaults are the tiny CPU teacher's network (``configs/teacher/centerpoint_pillar.yaml`` states every
value, with its head and sweep split); the full-scale values of the paper's
0.2 m teacher are given in each field's comment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import torch
from torch import nn

from distillbev.data.batch import Batch
from distillbev.layers.second import SECOND, SECONDFPN
from distillbev.models.base import BEVDetector
from distillbev.models.heads import CenterHead, HeadConfig
from distillbev.models.pillar_encoder import PillarFeatureNet
from distillbev.ops.voxelize import PillarGrid, dynamic_voxelize, hard_voxelize
from distillbev.structures import POINT_RANGE, BEVGrid

#: Point columns of a plain LiDAR teacher: x, y, z (m), intensity, time lag (s).
LIDAR_POINT_FEATURES = 5


@dataclass(frozen=True)
class CenterPointConfig:
    """CenterPoint-pillar teacher; lengths, sizes and ranges in metres."""

    point_range: tuple[float, ...] = POINT_RANGE  # pillar canvas: x, y, z min then x, y, z max
    pillar_size: float = 0.8  # pillar edge (m); full scale 0.2 (512^2 canvas)
    point_features: int = LIDAR_POINT_FEATURES  # columns of each input point; 5 (CenterPoint), 17 (MVP)
    voxelization: Literal["dynamic", "hard"] = "dynamic"  # dynamic = no caps (released teacher)
    max_points_per_pillar: int = 20  # hard voxelization only: later points of a pillar are dropped
    max_pillars: int = 30000  # hard voxelization only: per sample (the first pillars to receive a point)
    pfn_channels: int = 32  # PillarFeatureNet output = canvas channels; full 64
    backbone_layers: tuple[int, ...] = (1, 2, 2)  # extra 3x3 convs per SECOND stage; full (3, 5, 5)
    backbone_strides: tuple[int, ...] = (2, 2, 2)  # first-conv stride per stage; full (2, 2, 2)
    backbone_channels: tuple[int, ...] = (32, 64, 128)  # per stage; full (64, 128, 256)
    fpn_channels: tuple[int, ...] = (64, 64, 64)  # SECONDFPN output per stage (H = their sum); full (128,)*3
    fpn_stride: int = 2  # stride of the SECONDFPN map (and head) w.r.t. the pillar canvas; full 4 (0.8 m)
    normalize_inputs: bool = True  # scale the PFN inputs to order 1 (see ``pfn_input_scale``)
    # 0: one canvas from all sweeps (CenterPoint). > 0: points with time lag < split and >= split go
    # through the same PFN into two canvases, stacked on channels (2 x pfn_channels into SECOND), so
    # the convolutions see where the old points lie against the new ones (motion) directly.
    temporal_split_lag: float = 0.0
    head: HeadConfig = field(default_factory=HeadConfig)  # CenterHead settings

    def __post_init__(self) -> None:
        if len(self.point_range) != 6:
            raise ValueError(
                f"point_range needs 6 values (x_min, y_min, z_min, x_max, y_max, z_max), "
                f"got {self.point_range}"
            )
        if (
            len(self.backbone_channels) != 3
            or len(self.backbone_layers) != 3
            or len(self.backbone_strides) != 3
            or len(self.fpn_channels) != 3
        ):
            raise ValueError(
                "backbone_layers, backbone_strides, backbone_channels and fpn_channels need 3 "
                f"entries (stages B0, B1, B2), got {self.backbone_layers}, {self.backbone_strides}, "
                f"{self.backbone_channels}, {self.fpn_channels}"
            )
        if self.temporal_split_lag < 0 or (self.temporal_split_lag > 0 and self.point_features < 5):
            raise ValueError(
                f"temporal_split_lag must be >= 0 and needs the time-lag column (point_features >= 5), "
                f"got {self.temporal_split_lag} with point_features={self.point_features}"
            )
        if self.point_features < 3:
            raise ValueError(f"point_features must be >= 3 (x, y, z first), got {self.point_features}")
        if min(self.backbone_strides) < 1 or self.fpn_stride < 1:
            raise ValueError("backbone_strides and fpn_stride must be >= 1")
        if self.max_points_per_pillar < 1 or self.max_pillars < 1 or self.pfn_channels < 1:
            raise ValueError("max_points_per_pillar, max_pillars and pfn_channels must be >= 1")
        grid = self.pillar_grid()  # validates range and pillar size
        total = 1
        for s in self.backbone_strides:
            total *= s
        for size in (grid.height, grid.width):
            if size % total or size % self.fpn_stride:
                raise ValueError(
                    f"the {grid.height}x{grid.width} pillar canvas is not divisible by the backbone "
                    f"strides {self.backbone_strides} and fpn_stride {self.fpn_stride}"
                )
        for f in self.fpn_scale_factors():
            if not (f.denominator == 1 or f.numerator == 1):
                raise ValueError(
                    f"fpn_stride {self.fpn_stride} cannot be reached from the SECOND stage strides "
                    f"{self.stage_strides()} by integer up/down-sampling"
                )

    def canvas_channels(self) -> int:
        """Channels of the canvas SECOND reads: ``pfn_channels``, doubled with ``temporal_split_lag``."""
        return self.pfn_channels * (2 if self.temporal_split_lag > 0 else 1)

    def pillar_grid(self) -> PillarGrid:
        """The pillar canvas geometry."""
        return PillarGrid(self.point_range, self.pillar_size)

    def time_lag_column(self) -> int:
        """Column of the time lag (s) in a point: the last one, in the plain (4 of 5) and MVP (16 of 17)
        layouts alike."""
        return self.point_features - 1

    def pfn_input_scale(self) -> tuple[float, ...] | None:
        """Per-column factor of the PFN inputs, or ``None`` (``normalize_inputs: false``): x, y, z over the
        point range's largest half-extent per axis, intensity / 255, time lag / 0.5 s, other point
        columns (MVP's one-hot, score and flag) as they are, offsets from the pillar mean and centre
        / pillar size."""
        if not self.normalize_inputs:
            return None
        x0, y0, z0, x1, y1, z1 = self.point_range
        extent = [max(abs(x0), abs(x1)), max(abs(y0), abs(y1)), max(abs(z0), abs(z1))]
        cols = [1 / e for e in extent] + [1.0] * (self.point_features - 3)
        if self.point_features >= 4:
            cols[3] = 1 / 255.0
        if self.point_features >= 5:
            cols[self.time_lag_column()] = 1 / 0.5
        return tuple(cols) + (1 / self.pillar_size,) * 5

    def stage_strides(self) -> tuple[int, ...]:
        """Cumulative stride of each SECOND stage w.r.t. the canvas (full scale: 2, 4, 8)."""
        out, s = [], 1
        for st in self.backbone_strides:
            s *= st
            out.append(s)
        return tuple(out)

    def fpn_scale_factors(self) -> tuple[Fraction, ...]:
        """SECONDFPN resampling factor per stage (full scale: 1/2, 1, 2)."""
        return tuple(Fraction(s, self.fpn_stride) for s in self.stage_strides())

    def head_grid(self) -> BEVGrid:
        """The CenterHead grid = point range at the SECONDFPN resolution."""
        return self.pillar_grid().bev.scaled(self.fpn_stride)


class CenterPoint(BEVDetector):
    """Pillar teacher; ``forward_bev`` returns the SECOND stages ``B0, B1, B2`` and the SECONDFPN ``H``."""

    def __init__(
        self,
        cfg: CenterPointConfig,
        pfn: PillarFeatureNet,
        backbone: SECOND,
        neck: SECONDFPN,
        head: nn.Module,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.grid = cfg.pillar_grid()
        self.pfn = pfn
        self.backbone = backbone
        self.neck = neck
        self.head = head

    def canvas(self, points: list[torch.Tensor]) -> torch.Tensor:
        """Pillar canvas ``(B, canvas_channels, H, W)`` of the samples' points ``(P_b, point_features)``."""
        for b, p in enumerate(points):
            if p.ndim != 2 or p.shape[1] != self.cfg.point_features:
                raise ValueError(
                    f"batch.points[{b}] has shape {tuple(p.shape)} but the teacher expects "
                    f"point_features={self.cfg.point_features} columns"
                )
        split, lag = self.cfg.temporal_split_lag, self.cfg.time_lag_column()
        if split > 0:  # new points of every sample, then old ones: one PFN pass over 2B "samples"
            points = [p[p[:, lag] < split] for p in points] + [p[p[:, lag] >= split] for p in points]
        match self.cfg.voxelization:
            case "dynamic":
                pillars = dynamic_voxelize(points, self.grid)
            case "hard":
                pillars = hard_voxelize(
                    points, self.grid, self.cfg.max_points_per_pillar, self.cfg.max_pillars
                )
        canvas = self.pfn(pillars)  # (B or 2B, C, H, W)
        if split > 0:
            new, old = canvas.chunk(2)
            canvas = torch.cat([new, old], 1)  # (B, 2C, H, W)
        return canvas

    def forward_bev(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Taps ``B0, B1, B2`` (SECOND stages) and ``H`` (SECONDFPN output), each ``(B, C, H, W)``."""
        canvas = self.canvas(batch.points)  # (B, C_pfn, H_c, W_c)
        stages = self.backbone(canvas)  # 3 x (B, C_i, H_c / s_i, W_c / s_i)
        taps = {f"B{i}": x for i, x in enumerate(stages)}
        taps["H"] = self.neck(stages)  # (B, sum(fpn_channels), H_c / fpn_stride, W_c / fpn_stride)
        return taps


def build_centerpoint(cfg: CenterPointConfig) -> CenterPoint:
    """A CenterPoint-pillar teacher as ``cfg`` describes."""
    pfn = PillarFeatureNet(cfg.point_features, cfg.pfn_channels, cfg.pillar_grid(), cfg.pfn_input_scale())
    backbone = SECOND(cfg.canvas_channels(), cfg.backbone_channels, cfg.backbone_layers, cfg.backbone_strides)
    neck = SECONDFPN(cfg.backbone_channels, cfg.fpn_channels, cfg.fpn_scale_factors())
    head = CenterHead(neck.out_channels, cfg.head_grid(), cfg.head)
    return CenterPoint(cfg, pfn, backbone, neck, head)
