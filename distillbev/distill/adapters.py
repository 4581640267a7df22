"""Student-side adapters that map a student BEV tap onto the teacher's channels and grid (docs/method.md,
Multi-scale imitation).

- Same grid: a 1x1 conv with bias (``C_S -> C_T``), the pre-head layer H.
- Student ``F`` times coarser (BEV-encoder stages): bilinear upsampling by ``F``, then three
  ``1x1 conv + BN + ReLU`` blocks ``C_S -> C_S -> C_S -> C_T``.

Adapters are trained with the student and discarded at test time. The teacher side is never resampled.
"""

from __future__ import annotations

from torch import nn


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def build_adapter(
    student_channels: int, teacher_channels: int, scale_factor: int, align_corners: bool = True
) -> nn.Module:
    """Adapter for one layer: ``(B, C_S, h, w) -> (B, C_T, h * scale_factor, w * scale_factor)``.

    ``scale_factor`` = teacher size / student size (an integer >= 1). ``align_corners`` is that of the
    bilinear upsampling (True, the default, is the released code; see ``DistillConfig.align_corners``).
    """
    if student_channels < 1 or teacher_channels < 1:
        raise ValueError(
            f"build_adapter: channels must be positive, got {student_channels} -> {teacher_channels}"
        )
    if scale_factor == 1:
        return nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=True)
    if scale_factor < 1 or int(scale_factor) != scale_factor:
        raise ValueError(
            f"build_adapter: the student map must be as fine as the teacher's or an integer factor coarser; "
            f"got scale factor {scale_factor}"
        )
    return nn.Sequential(
        nn.Upsample(scale_factor=int(scale_factor), mode="bilinear", align_corners=align_corners),
        _conv_bn_relu(student_channels, student_channels),
        _conv_bn_relu(student_channels, student_channels),
        _conv_bn_relu(student_channels, teacher_channels),
    )
