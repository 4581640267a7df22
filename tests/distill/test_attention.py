"""Spatial / channel attention and the L1 attention-imitation term (docs/method.md, Spatial attention)."""

import math

import pytest
import torch

from distillbev.distill.attention import (
    attention_imitation_loss,
    build_attention_conv,
    channel_attention,
    combined_attention,
    spatial_attention,
)


def test_spatial_attention_hand_computed():
    # one sample, 2 channels, 1 x 2 cells: mean |F| per cell = 1.0 and 0.5 -> 2 * softmax([2, 1])
    feat = torch.tensor([[[[1.0, -0.5]], [[-1.0, 0.5]]]])
    p = spatial_attention(feat, temperature=0.5)
    e1, e2 = math.exp(2.0), math.exp(1.0)
    assert p.shape == (1, 1, 1, 2)
    assert torch.allclose(p[0, 0, 0], torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)]))


def test_spatial_attention_mean_is_one_and_peaks_on_activity():
    torch.manual_seed(0)
    feat = torch.randn(3, 8, 16, 16) * 0.1
    feat[1, :, 4, 7] = 3.0
    p = spatial_attention(feat, 0.5)
    assert torch.allclose(p.sum((1, 2, 3)), torch.full((3,), 256.0))
    assert p[1, 0].argmax().item() == 4 * 16 + 7
    # a lower temperature sharpens the map
    assert spatial_attention(feat, 0.1)[1, 0, 4, 7] > p[1, 0, 4, 7]


def test_channel_attention_sums_to_channels():
    feat = torch.zeros(2, 4, 3, 3)
    feat[:, 2] = 1.0
    q = channel_attention(feat, 0.5)
    assert q.shape == (2, 4, 1, 1)
    assert torch.allclose(q.sum(1).flatten(), torch.full((2,), 4.0))
    e = math.exp(2.0)
    assert q[0, 2].item() == pytest.approx(4 * e / (e + 3))


def test_combined_attention_average_and_teacher_only():
    torch.manual_seed(0)
    t = torch.randn(2, 8, 16, 16, requires_grad=True)
    s = torch.randn(2, 8, 16, 16, requires_grad=True)
    p_t, p_s = spatial_attention(t, 0.5), spatial_attention(s, 0.5)
    both = combined_attention(t, s, 0.5, 1.0)
    assert torch.allclose(both, (p_t + p_s) / 2)
    assert torch.allclose(combined_attention(t, s, 0.5, 0.0), p_t)
    assert torch.allclose(combined_attention(t, s, 0.5, 3.0), (p_t + 3 * p_s) / 4)
    assert not both.requires_grad  # a weighting only: detached
    assert torch.allclose(both.mean((1, 2, 3)), torch.ones(2))


def test_attention_imitation_term():
    torch.manual_seed(0)
    t = torch.randn(2, 8, 16, 16, requires_grad=True)
    s = torch.randn(2, 8, 16, 16, requires_grad=True)
    conv = build_attention_conv("identity")
    # identity-initialised conv: a plain L1 between signed channel means, divided by the batch size
    expected = (t.mean(1) - s.mean(1)).abs().sum() / 2
    loss = attention_imitation_loss(t, s, conv)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert attention_imitation_loss(t, t.detach().clone(), conv).item() == 0.0
    loss.backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert conv.weight.grad is not None and conv.bias.grad is not None


def test_attention_conv_default_init_is_pytorchs():
    """``default`` (the released code) is Conv2d's own initialisation: the same draw for the same seed,
    not the identity; ``identity`` is centre tap 1, bias 0; anything else is refused."""
    torch.manual_seed(3)
    conv = build_attention_conv()
    torch.manual_seed(3)
    plain = torch.nn.Conv2d(1, 1, kernel_size=3, padding=1, bias=True)
    assert torch.equal(conv.weight, plain.weight) and torch.equal(conv.bias, plain.bias)
    ident = build_attention_conv("identity")
    expected = torch.zeros(1, 1, 3, 3)
    expected[0, 0, 1, 1] = 1.0
    assert torch.equal(ident.weight, expected) and torch.equal(ident.bias, torch.zeros(1))
    with pytest.raises(ValueError, match="identity"):
        build_attention_conv("zeros")
