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


def test_without_gradients_the_values_are_the_same():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(400, 4, generator=g)
    index = torch.randint(0, 50, (400,), generator=g)
    with torch.no_grad():
        fast = scatter_max(x.clone().requires_grad_(), index, 60)
    plain = scatter_max(x, index, 60)  # no requires_grad: the same path outside no_grad
    tracked = scatter_max(x.clone().requires_grad_(), index, 60)
    assert tracked.grad_fn is not None and fast.grad_fn is None
    assert torch.equal(fast, _reference(x, index, 60)) and torch.equal(plain, fast)
    assert torch.equal(tracked.detach(), fast)


def _builtin(x: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """The same reduction with torch's own scatter_reduce (zero floor, built-in gradient)."""
    return x.new_zeros(size, x.shape[1]).scatter_reduce(
        0, index[:, None].expand_as(x), x, "amax", include_self=True
    )


def _value_and_grad(fn, x0: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``fn(x)`` and the gradient of ``sum(fn(x) * w)`` at ``x0``."""
    x = x0.clone().requires_grad_()
    out = fn(x)
    (out * w).sum().backward()
    return out.detach(), x.grad


def _random_case(seed: int, n: int, c: int, groups: int, positive: bool):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, c, generator=g) if positive else torch.randn(n, c, generator=g)
    return x0, torch.randint(0, groups, (n,), generator=g), torch.randn(groups, c, generator=g)


def test_gradient_equals_the_builtin_when_maxima_are_unique():
    x0, index, w = _random_case(1, 500, 6, 30, positive=True)
    _, grad = _value_and_grad(lambda x: scatter_max(x, index, 30), x0, w)
    ref, ref_grad = _value_and_grad(lambda x: _builtin(x, index, 30), x0, w)
    assert torch.allclose(grad, ref_grad)
    # exactly one point per non-empty (group, channel) receives that output's gradient
    assert int((grad != 0).sum()) == int((ref != 0).sum())


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
    x0, index, w = _random_case(3, 400, 4, 25, positive=False)
    out, grad = _value_and_grad(lambda x: scatter_max(x, index, 25), x0, w)
    _, ref_grad = _value_and_grad(lambda x: _builtin(torch.relu(x), index, 25), x0, w)
    assert torch.equal(out, _reference(torch.relu(x0), index, 25))
    assert torch.allclose(grad, ref_grad)
    assert bool((grad[x0 < 0] == 0).all())
