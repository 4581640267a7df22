"""The conv -> BatchNorm -> ReLU block shared by every BEV network."""

from __future__ import annotations

from torch import nn


class ConvBNReLU(nn.Sequential):
    """``k x k`` conv (padding ``k // 2``) + BatchNorm + ReLU, as children ``conv``, ``bn``, ``relu``."""

    def __init__(self, in_ch: int, out_ch: int, k: int = 3, stride: int = 1, bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=k // 2, bias=bias)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
