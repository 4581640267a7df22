"""The two necks of the lift-splat students (docs/architectures.md, Camera students).

``FPNForBEVDet``: the image neck; two backbone levels (stride 16 and 32) -> one stride-16 map.
``FPN_LSS``: the BEV neck; BEV-encoder stages 0 and 2 -> the pre-head map "H" on the LSS grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distillbev.layers.conv import ConvBNReLU


class FPNForBEVDet(nn.Module):
    """1x1 lateral convs (bias, no norm) on both levels, nearest-upsample the coarse one to the fine one
    and add, then one 3x3 conv (bias) on the fine level only."""

    def __init__(self, in_channels: tuple[int, int], out_channels: int) -> None:
        super().__init__()
        self.lateral_fine = nn.Conv2d(in_channels[0], out_channels, 1)
        self.lateral_coarse = nn.Conv2d(in_channels[1], out_channels, 1)
        self.fpn_conv = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.out_channels = out_channels

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """``[(B, C3, h, w) stride 16, (B, C4, h', w') stride 32]`` -> ``(B, out_channels, h, w)``."""
        fine, coarse = feats
        x = self.lateral_fine(fine)
        x = x + F.interpolate(self.lateral_coarse(coarse), size=x.shape[-2:], mode="nearest")
        return self.fpn_conv(x)


class FPN_LSS(nn.Module):  # noqa: N801 - the reference's name
    """BEV neck: upsample stage 2 to stage 0 (bilinear, align_corners=True), concat [stage 0, stage 2],
    two 3x3 ConvBNReLU to ``mid_channels``, upsample by ``final_scale`` back to the LSS grid, 3x3
    ConvBNReLU to ``out_channels``, 1x1 conv (bias), and with ``extra_norm_act`` BN + ReLU (DistillBEV).

    Stage 1 is not used, as in the reference BEVDet (only stages 0 and 2 reach the neck). ``final_scale``
    = cumulative stride of stage 0 (1 = no upsampling).
    """

    def __init__(
        self,
        in_channels: tuple[int, int],
        out_channels: int,
        mid_channels: int,
        final_scale: int = 2,
        extra_norm_act: bool = True,
    ) -> None:
        super().__init__()
        self.final_scale = final_scale
        self.conv = nn.Sequential(
            ConvBNReLU(in_channels[0] + in_channels[1], mid_channels),
            ConvBNReLU(mid_channels, mid_channels),
        )
        layers: list[nn.Module] = [
            ConvBNReLU(mid_channels, out_channels),
            nn.Conv2d(out_channels, out_channels, 1),
        ]
        if extra_norm_act:
            layers += [nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
        self.up2 = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, stage0: torch.Tensor, stage2: torch.Tensor) -> torch.Tensor:
        """``(B, C0, h0, w0)``, ``(B, C2, h2, w2)`` -> ``(B, out, h0 * final_scale, w0 * final_scale)``."""
        up = F.interpolate(stage2, size=stage0.shape[-2:], mode="bilinear", align_corners=True)
        x = self.conv(torch.cat([stage0, up], 1))  # (B, mid, h0, w0)
        if self.final_scale != 1:
            x = F.interpolate(x, scale_factor=self.final_scale, mode="bilinear", align_corners=True)
        return self.up2(x)
