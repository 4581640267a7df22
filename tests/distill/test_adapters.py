"""Student-side adapters (docs/method.md): 1x1 conv on the same grid, upsample + 3x(1x1 conv+BN+ReLU)."""

import pytest
import torch
from torch import nn

from distillbev.distill.adapters import build_adapter


def test_same_grid_is_a_1x1_conv_with_bias():
    torch.manual_seed(0)
    adapter = build_adapter(8, 12, 1)
    assert isinstance(adapter, nn.Conv2d) and adapter.kernel_size == (1, 1) and adapter.bias is not None
    x = torch.randn(2, 8, 16, 16)
    y = adapter(x)
    # a 1x1 conv is the same linear map at every cell
    ref = torch.einsum("oc,bchw->bohw", adapter.weight[:, :, 0, 0], x) + adapter.bias[None, :, None, None]
    assert torch.allclose(y, ref, atol=1e-5)


def test_coarse_student_is_upsampled_then_three_conv_bn_relu():
    torch.manual_seed(0)
    adapter = build_adapter(8, 6, 4)
    convs = [m for m in adapter.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (8, 8, (1, 1)),
        (8, 8, (1, 1)),
        (8, 6, (1, 1)),
    ]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in adapter.modules()) == 3
    y = adapter(torch.randn(2, 8, 4, 4))
    assert y.shape == (2, 6, 16, 16) and (y >= 0).all()


@pytest.mark.parametrize("align_corners", [False, True])
def test_align_corners_choice_is_honoured(align_corners):
    adapter = build_adapter(1, 1, 4, align_corners=align_corners)
    upsample = adapter[0]
    x = torch.arange(4.0).reshape(1, 1, 1, 4).expand(1, 1, 4, 4).contiguous()
    y = upsample(x)
    # align_corners=True keeps the corner samples; False keeps cell centres, so the first fine cell
    # (a quarter cell from the coarse cell's centre, clamped at the border) equals the first coarse value
    assert y[0, 0, 0, 0].item() == 0.0 and y.shape[-1] == 16
    if align_corners:
        assert y[0, 0, 0, -1].item() == 3.0 and y[0, 0, 0, 1].item() == pytest.approx(3 / 15)
    else:
        assert y[0, 0, 0, 2].item() == pytest.approx(0.125) and y[0, 0, 0, -1].item() == 3.0


def test_bad_scale_factor_raises():
    with pytest.raises(ValueError, match="scale factor"):
        build_adapter(8, 8, 0.5)
    with pytest.raises(ValueError, match="scale factor"):
        build_adapter(8, 8, 1.5)
