"""Spatial (and channel) attention of BEV maps, and the L1 attention-imitation term (docs/method.md).

Spatial attention ``P = HW * softmax_{ij}(mean_c |F| / tau)`` (mean 1 per sample) is a *weighting* of
the imitation error: it is always detached. The attention-imitation term is a separate loss on
channel-averaged signed features through a learnable 3x3 conv.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


def spatial_attention(feat: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """``(B, 1, H, W)``: ``HW * softmax over cells of mean_c |F| / temperature`` (sums to HW per sample)."""
    b, _, h, w = feat.shape
    logits = feat.abs().mean(1).reshape(b, h * w) / temperature  # (B, HW)
    return (h * w * torch.softmax(logits.float(), dim=1)).reshape(b, 1, h, w)


def channel_attention(feat: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """``(B, C, 1, 1)``: ``C * softmax over channels of mean_hw |F| / temperature`` (FGD-style, sums to C)."""
    b, c = feat.shape[:2]
    logits = feat.abs().mean((2, 3)) / temperature  # (B, C)
    return (c * torch.softmax(logits.float(), dim=1)).reshape(b, c, 1, 1)


@torch.no_grad()
def combined_attention(
    teacher: torch.Tensor, student: torch.Tensor, temperature: float = 0.5, student_ratio: float = 1.0
) -> torch.Tensor:
    """``(B, 1, H, W)`` detached: ``(P_T + r P_S) / (1 + r)``; ``r = 0`` gives the teacher's map only.

    ``student`` is the *adapted* student map (same shape as ``teacher``).
    """
    p_t = spatial_attention(teacher.detach(), temperature)
    if student_ratio == 0:
        return p_t
    p_s = spatial_attention(student.detach(), temperature)
    return (p_t + student_ratio * p_s) / (1.0 + student_ratio)


def build_attention_conv(init: Literal["default", "identity"] = "default") -> nn.Conv2d:
    """The learnable 1->1 channel 3x3 conv (padding 1, bias) of the attention-imitation term.

    ``init="default"`` keeps PyTorch's Conv2d initialisation (the released code); ``"identity"`` sets
    the centre tap to 1 and the bias to 0, so that at initialisation the term is a plain L1 between
    channel means and vanishes when the adapted student equals the teacher.
    """
    if init not in ("default", "identity"):
        raise ValueError(f"build_attention_conv: init must be 'default' or 'identity', got {init!r}")
    conv = nn.Conv2d(1, 1, kernel_size=3, padding=1, bias=True)
    if init == "identity":
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
            conv.bias.zero_()
    return conv


def attention_imitation_loss(teacher: torch.Tensor, student: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """``(1/B) sum_{b,i,j} |mean_c F_T - conv3x3(mean_c G)|`` on signed channel means (scalar).

    ``teacher`` ``(B, C, H, W)`` is detached here; ``student`` is the adapted map ``G``.
    """
    t_mean = teacher.detach().float().mean(1, keepdim=True)  # (B, 1, H, W)
    s_mean = conv(student.float().mean(1, keepdim=True))  # (B, 1, H, W)
    return (t_mean - s_mean).abs().sum() / teacher.shape[0]
