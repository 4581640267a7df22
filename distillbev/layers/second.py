"""SECOND dense 2D backbone and SECONDFPN neck of the pillar teachers (docs/architectures.md).

All convolutions are bias-free and followed by BatchNorm (eps 1e-3, momentum 0.01) and ReLU.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import torch
from torch import nn


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """``kernel x kernel`` conv (no bias, "same" padding for odd kernels) + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            padding=kernel // 2 if kernel % 2 else 0,
            bias=False,
        ),
        _bn(out_channels),
        nn.ReLU(inplace=True),
    )


class SECOND(nn.Module):
    """Stages; stage ``i`` = one 3x3 conv with stride ``strides[i]`` + ``layer_nums[i]`` 3x3 convs."""

    def __init__(
        self,
        in_channels: int,
        out_channels: Sequence[int] = (64, 128, 256),
        layer_nums: Sequence[int] = (3, 5, 5),
        strides: Sequence[int] = (2, 2, 2),
    ) -> None:
        super().__init__()
        if not len(out_channels) == len(layer_nums) == len(strides):
            raise ValueError(
                f"SECOND: channels {out_channels}, layers {layer_nums} and strides {strides} "
                "must have the same length"
            )
        stages = []
        cin = in_channels
        for cout, n, s in zip(out_channels, layer_nums, strides, strict=True):
            blocks = [conv_bn_relu(cin, cout, 3, s)] + [conv_bn_relu(cout, cout) for _ in range(n)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Canvas ``(B, C_in, H, W)`` -> every stage's output ``(B, C_i, H / prod(strides[:i+1]), ...)``."""
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class SECONDFPN(nn.Module):
    """Resample every stage to one common map and concatenate them.

    ``scale_factors[i]`` is the resampling factor of stage ``i`` (output cells per input cell along one
    axis): > 1 -> transposed conv with kernel = stride = factor; 1 -> 1x1 conv; < 1 -> conv with
    kernel = stride = 1 / factor. Each is followed by BN + ReLU.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        scale_factors: Sequence[Fraction | float],
    ) -> None:
        super().__init__()
        if not len(in_channels) == len(out_channels) == len(scale_factors):
            raise ValueError(
                "SECONDFPN: in_channels, out_channels and scale_factors must have the same length"
            )
        blocks = []
        for cin, cout, f in zip(in_channels, out_channels, scale_factors, strict=True):
            f = Fraction(f).limit_denominator(64)
            if f > 1:
                if f.denominator != 1:
                    raise ValueError(f"SECONDFPN: up-sampling factor {f} is not an integer")
                k = int(f)
                conv: nn.Module = nn.ConvTranspose2d(cin, cout, k, stride=k, bias=False)
            elif f == 1:
                conv = nn.Conv2d(cin, cout, 1, bias=False)
            else:
                if f.numerator != 1:
                    raise ValueError(f"SECONDFPN: down-sampling factor {f} is not 1/integer")
                k = f.denominator
                conv = nn.Conv2d(cin, cout, k, stride=k, bias=False)
            blocks.append(nn.Sequential(conv, _bn(cout), nn.ReLU(inplace=True)))
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = sum(out_channels)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Stage outputs -> ``(B, sum(out_channels), H_out, W_out)``."""
        return torch.cat([block(x) for block, x in zip(self.blocks, feats, strict=True)], 1)
