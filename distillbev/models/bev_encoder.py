"""``ResNetForBEVDet``: the BEV encoder of the lift-splat students (docs/architectures.md).

Stages of BasicBlocks; the first block of every stage carries the stage's stride and uses a **plain
3x3 conv with bias and no BatchNorm** as its shortcut, even when the shape does not change, as
the reference BEVDet does. The same module is the 4D "pre-process" (one stage of 2 blocks at stride 1)
and BEVDepth's ``extra_depthnet`` (one stage of 3 blocks at stride 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from distillbev.layers.resnet import BasicBlock


class ResNetForBEVDet(nn.Module):
    """``forward`` returns every stage's output (taps B0, B1, B2 of the BEV encoder)."""

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (128, 256, 512),
        strides: Sequence[int] = (2, 2, 2),
        blocks: Sequence[int] = (2, 2, 2),
    ) -> None:
        super().__init__()
        if not len(channels) == len(strides) == len(blocks) or not channels:
            raise ValueError(
                f"ResNetForBEVDet: channels {tuple(channels)}, strides {tuple(strides)} and blocks "
                f"{tuple(blocks)} must be non-empty and of the same length"
            )
        stages = []
        cin = in_channels
        for cout, stride, n in zip(channels, strides, blocks, strict=True):
            if n < 1 or stride < 1:
                raise ValueError(f"ResNetForBEVDet: blocks and strides must be >= 1, got {n} and {stride}")
            shortcut = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)  # bias, no BN (the reference's)
            layers = [BasicBlock(cin, cout, stride, shortcut)] + [
                BasicBlock(cout, cout) for _ in range(n - 1)
            ]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x`` (B, C_in, H, W) -> stage ``i`` output ``(B, channels[i], H / prod(strides[:i+1]), ...)``."""
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs
