"""Pillar scatter and the PillarFeatureNet max against hand-built references."""

from __future__ import annotations

import pytest
import torch

from distillbev.models.pillar_encoder import PillarFeatureNet
from distillbev.ops.pillar_scatter import pillar_scatter
from distillbev.ops.voxelize import PillarGrid, dynamic_voxelize, hard_voxelize

GRID = PillarGrid((-4.0, -3.0, -1.0, 4.0, 3.0, 1.0), 1.0)  # 6 rows (y) x 8 columns (x)


def test_scatter_places_features_and_zeros_elsewhere():
    feats = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], requires_grad=True)
    coords = torch.tensor([[0, 1, 2], [1, 5, 7], [0, 0, 0]])
    canvas = pillar_scatter(feats, coords, batch_size=2, height=6, width=8)
    assert canvas.shape == (2, 2, 6, 8)
    expect = torch.zeros(2, 2, 6, 8)
    expect[0, :, 1, 2] = torch.tensor([1.0, 2.0])
    expect[1, :, 5, 7] = torch.tensor([3.0, 4.0])
    expect[0, :, 0, 0] = torch.tensor([5.0, 6.0])
    assert torch.equal(canvas, expect)
    (canvas * torch.arange(2 * 2 * 6 * 8).view(2, 2, 6, 8)).sum().backward()
    assert feats.grad[0, 1].item() == 0 * 96 + 1 * 48 + 1 * 8 + 2  # flat index of canvas[0, 1, 1, 2]


def test_scatter_rejects_out_of_canvas():
    with pytest.raises(ValueError, match="outside"):
        pillar_scatter(torch.ones(1, 2), torch.tensor([[0, 6, 0]]), 1, 6, 8)


def _points(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=g) * torch.tensor([8.0, 6.0, 2.0]) - torch.tensor([4.0, 3.0, 1.0])
    xyz[: n // 2, :2] = xyz[: n // 2, :2] * 0.3  # crowd some pillars
    return torch.cat([xyz, torch.rand(n, 2, generator=g)], 1)


def _loop_canvas(pfn: PillarFeatureNet, batch: list[torch.Tensor]) -> torch.Tensor:
    """Reference: for each pillar, build each point's 10 inputs by hand, Linear+BN(eval)+ReLU, max."""
    out = torch.zeros(len(batch), pfn.out_channels, GRID.height, GRID.width)
    for b, pts in enumerate(batch):
        pillars: dict[tuple[int, int], list[torch.Tensor]] = {}
        for p in pts:
            ix = int(torch.floor((p[0] + 4.0) / 1.0))
            iy = int(torch.floor((p[1] + 3.0) / 1.0))
            pillars.setdefault((iy, ix), []).append(p)
        for (iy, ix), plist in pillars.items():
            stack = torch.stack(plist)
            mean = stack[:, :3].mean(0)
            centre = torch.tensor([-4.0 + ix + 0.5, -3.0 + iy + 0.5])
            best = torch.zeros(pfn.out_channels)
            for p in plist:
                f = torch.cat([p, p[:3] - mean, p[:2] - centre])
                y = pfn.linear.weight @ f
                y = (y - pfn.norm.running_mean) / torch.sqrt(pfn.norm.running_var + pfn.norm.eps)
                y = torch.relu(y * pfn.norm.weight + pfn.norm.bias)
                best = torch.maximum(best, y)
            out[b, :, iy, ix] = best
    return out


def test_pfn_max_matches_loop_and_hard_equals_dynamic_without_caps():
    torch.manual_seed(0)
    pfn = PillarFeatureNet(5, 8, GRID)
    with torch.no_grad():  # non-trivial BN statistics so the eval-mode reference exercises them
        pfn.norm.running_mean.uniform_(-0.3, 0.3)
        pfn.norm.running_var.uniform_(0.5, 2.0)
        pfn.norm.weight.uniform_(0.5, 1.5)
        pfn.norm.bias.uniform_(-0.2, 0.2)
    pfn.eval()
    batch = [_points(60, 0), _points(40, 1)]
    ref = _loop_canvas(pfn, batch)
    dyn = pfn(dynamic_voxelize(batch, GRID))
    torch.testing.assert_close(dyn, ref, atol=1e-5, rtol=1e-5)
    assert (ref > 0).any() and (ref == 0).any()
    hard = pfn(hard_voxelize(batch, GRID, max_points=100, max_pillars=1000))
    torch.testing.assert_close(hard, ref, atol=1e-5, rtol=1e-5)


def test_pfn_hard_cap_uses_only_kept_points():
    torch.manual_seed(1)
    pfn = PillarFeatureNet(5, 8, GRID).eval()
    batch = [_points(60, 2)]
    capped = hard_voxelize(batch, GRID, max_points=2, max_pillars=1000)
    kept = [capped.voxels[i, :n] for i, n in enumerate(capped.num_points.tolist())]
    ref = _loop_canvas(pfn, [torch.cat(kept)])  # the loop reference on only the kept points
    torch.testing.assert_close(pfn(capped), ref, atol=1e-5, rtol=1e-5)


def test_pfn_train_mode_gradients_reach_weights():
    pfn = PillarFeatureNet(5, 4, GRID).train()
    canvas = pfn(dynamic_voxelize([_points(50, 3)], GRID))
    canvas.sum().backward()
    assert pfn.linear.weight.grad.abs().sum() > 0 and pfn.norm.weight.grad.abs().sum() > 0


def test_pfn_input_scale_equals_scaling_the_linear_weights():
    """Scaling the inputs by s is the same network as an unscaled PFN whose weight columns are times s."""
    torch.manual_seed(2)
    scale = [0.5, 0.25, 2.0, 1 / 255, 2.0, 1.0, 1.0, 1.0, 3.0, 3.0]
    scaled = PillarFeatureNet(5, 6, GRID, input_scale=scale).eval()
    plain = PillarFeatureNet(5, 6, GRID).eval()
    plain.load_state_dict(scaled.state_dict())
    with torch.no_grad():
        plain.linear.weight.mul_(torch.tensor(scale))
    batch = [_points(50, 4)]
    out = scaled(dynamic_voxelize(batch, GRID))
    torch.testing.assert_close(out, plain(dynamic_voxelize(batch, GRID)), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, PillarFeatureNet(5, 6, GRID).eval()(dynamic_voxelize(batch, GRID)))
    with pytest.raises(ValueError, match="input_scale needs 10 positive"):
        PillarFeatureNet(5, 6, GRID, input_scale=[1.0] * 9)


def test_pfn_affine_equals_linear_then_batchnorm_values_grads_and_running_stats():
    """The folded Linear + BN (statistics from the inputs' moments) against nn.Linear -> nn.BatchNorm1d,
    on raw-scale inputs (tens of metres, intensity to 255), in training and in eval mode."""
    torch.manual_seed(4)
    pfn = PillarFeatureNet(5, 8, GRID, input_scale=[0.1] * 10)
    with torch.no_grad():
        pfn.norm.weight.uniform_(0.5, 1.5)
        pfn.norm.bias.uniform_(-0.3, 0.3)
    ref_bn = torch.nn.BatchNorm1d(8, eps=1e-3, momentum=0.01)
    ref_bn.load_state_dict(pfn.norm.state_dict())
    ref_w = (pfn.linear.weight.detach() * 0.1).clone().requires_grad_()
    x = torch.cat(
        [torch.rand(500, 2) * 60 - 30, torch.rand(500, 1) * 2, torch.rand(500, 1) * 255, torch.rand(500, 6)],
        1,
    )
    for _ in range(2):  # two steps: the running statistics move twice
        pfn.train(), ref_bn.train()
        out = pfn.affine_points(x)
        ref = ref_bn(x @ ref_w.T)
        torch.testing.assert_close(out, ref, atol=2e-4, rtol=1e-4)
        g = torch.randn_like(out)
        grads = torch.autograd.grad((out * g).sum(), [pfn.linear.weight, pfn.norm.weight, pfn.norm.bias])
        ref_grads = torch.autograd.grad((ref * g).sum(), [ref_w, ref_bn.weight, ref_bn.bias])
        torch.testing.assert_close(grads[0] / 0.1, ref_grads[0], atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(grads[1:], ref_grads[1:], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(pfn.norm.running_mean, ref_bn.running_mean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pfn.norm.running_var, ref_bn.running_var, atol=1e-3, rtol=1e-4)
    assert int(pfn.norm.num_batches_tracked) == 2
    pfn.eval(), ref_bn.eval()
    torch.testing.assert_close(pfn.affine_points(x), ref_bn(x @ ref_w.T), atol=2e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="more than one point"):
        pfn.train().affine_points(x[:1])


def test_pfn_affine_uses_a_synced_batchnorm_as_it_is():
    """Under DDP (SyncBatchNorm) the PFN calls the module, so its statistics stay synchronised across
    processes (without a process group the module computes plain batch statistics: same values)."""
    torch.manual_seed(5)
    pfn = PillarFeatureNet(5, 4, GRID).train()
    x = torch.randn(100, 10) * 3
    plain = pfn.affine_points(x)
    pfn.norm = torch.nn.SyncBatchNorm.convert_sync_batchnorm(pfn.norm)
    calls = []
    pfn.norm.register_forward_hook(lambda *_: calls.append(1))
    torch.testing.assert_close(pfn.affine_points(x), plain, atol=1e-4, rtol=1e-4)
    assert calls == [1]
