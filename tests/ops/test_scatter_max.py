"""scatter_max against a Python loop and against the built-in scatter_reduce's gradients."""

import pytest
import torch

from distillbev.ops.scatter_max import scatter_max


def _reference(x: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    out = torch.zeros(size, x.shape[1])
    for i in range(len(x)):
        out[index[i]] = torch.maximum(out[index[i]], x[i])
    return out


def test_values_equal_a_python_loop_and_empty_groups_are_zero():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 5, generator=g)
    index = torch.randint(0, 40, (300,), generator=g)
    index[index == 7] = 8  # group 7 is empty
    out = scatter_max(x, index, 45)
    assert torch.equal(out, _reference(x, index, 45))
    assert torch.equal(out[7], torch.zeros(5)) and torch.equal(out[40:], torch.zeros(5, 5))


def test_gradient_equals_the_builtin_when_maxima_are_unique():
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(500, 6, generator=g)
    index = torch.randint(0, 30, (500,), generator=g)
    w = torch.randn(30, 6, generator=g)
    x1 = x0.clone().requires_grad_()
    (scatter_max(x1, index, 30) * w).sum().backward()
    x2 = x0.clone().requires_grad_()
    ref = x2.new_zeros(30, 6).scatter_reduce(0, index[:, None].expand_as(x2), x2, "amax", include_self=True)
    (ref * w).sum().backward()
    assert torch.allclose(x1.grad, x2.grad)
    # exactly one point per non-empty (group, channel) receives that output's gradient
    assert int((x1.grad != 0).sum()) == int((ref != 0).sum())


def test_a_tie_sends_the_whole_gradient_to_one_point():
    x = torch.tensor([[2.0], [2.0], [1.0]], requires_grad=True)
    out = scatter_max(x, torch.tensor([0, 0, 0]), 1)
    out.sum().backward()
    assert out.item() == 2.0
    assert x.grad.flatten().tolist() == [0.0, 1.0, 0.0]  # the highest index among the tied maxima


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="scatter_max"):
        scatter_max(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long), 2)


def test_negative_inputs_give_the_max_of_the_relu_and_its_gradient():
    """A PFN passes its pre-activation: scatter_max(x) == scatter_max(relu(x)), gradients included."""
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(400, 4, generator=g)
    index = torch.randint(0, 25, (400,), generator=g)
    w = torch.randn(25, 4, generator=g)
    x1 = x0.clone().requires_grad_()
    out = scatter_max(x1, index, 25)
    (out * w).sum().backward()
    x2 = x0.clone().requires_grad_()
    ref = (
        torch.relu(x2)
        .new_zeros(25, 4)
        .scatter_reduce(0, index[:, None].expand(-1, 4), torch.relu(x2), "amax", include_self=True)
    )
    (ref * w).sum().backward()
    assert torch.equal(out, _reference(torch.relu(x0), index, 25))
    assert torch.allclose(x1.grad, x2.grad)
    assert bool((x1.grad[x0 < 0] == 0).all())
