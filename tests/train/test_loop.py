"""The training loop's own mechanics on a model small enough to check by hand: gradient accumulation,
gradient clipping and the non-finite-loss stop.

``PointMean`` has no batch-dependent layer (no BatchNorm) and its loss is the mean of per-sample losses,
so the gradient of a batch of 2 is exactly the mean of the gradients of its two halves: the invariant
that accumulation (``optim.accumulate``) must keep. The real detectors normalise their losses per batch
(by the batch's objects) and use BatchNorm, so for them accumulation only approximates a larger batch.
What the optimiser sees is read with a global optimizer step pre-hook, i.e. after accumulation,
clipping and (fp16) unscaling, just before ``AdamW`` uses the gradients.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from distillbev.config import load_config
from distillbev.train.config import RunConfig
from distillbev.train.loop import train

ROOT = Path(__file__).resolve().parents[2]


class PointMean(nn.Module):
    """The mean of each sample's point columns through one ``Linear``, fitted to the sample's number of
    GT boxes; the loss is the mean of the per-sample squared errors."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 1)
        self.calls = 0  # forward passes (micro-batches) so far
        self.nan_at_call = -1  # this forward pass returns a NaN loss

    def forward(self, batch):
        x = torch.stack([p[:, :4].mean(0) for p in batch.points])  # (B, 4)
        self.calls += 1
        return {}, self.linear(x)[:, 0]  # no taps; predictions (B,)

    def loss(self, batch, taps, preds):
        target = torch.tensor([len(b) / 10 for b in batch.gt_boxes], dtype=preds.dtype)
        fit = ((preds - target) ** 2).mean()
        return {"fit": fit * math.nan if self.calls == self.nan_at_call else fit}


def _cfg(smoke_world, *overrides: str) -> RunConfig:
    """The tiny teacher's reader (points, no images) on 4 training samples, one epoch, no clipping."""
    over = [
        f"data.dataroot={smoke_world.dataroot}",
        "data.max_train_samples=4",
        "optim.epochs=1",
        "optim.grad_clip=0",
        "log_every_steps=1",
        *overrides,
    ]
    return load_config(RunConfig, [ROOT / "configs/teacher/centerpoint_pillar.yaml"], over)


def _train(cfg: RunConfig, run_dir: Path, model: PointMean | None = None) -> list[list[torch.Tensor]]:
    """Train ``model`` (a fresh ``PointMean`` by default); the gradients at every optimizer step."""
    seen: list[list[torch.Tensor]] = []

    def record(opt, args, kwargs):
        seen.append([p.grad.clone() for group in opt.param_groups for p in group["params"]])

    handle = register_optimizer_step_pre_hook(record)
    try:
        train(cfg, run_dir, model if model is not None else PointMean())
    finally:
        handle.remove()
    return seen


def test_accumulating_two_halves_equals_the_whole_batch(smoke_world, tmp_path):
    whole = _train(_cfg(smoke_world, "optim.batch_size=2"), tmp_path / "whole")
    halves = _train(_cfg(smoke_world, "optim.batch_size=1", "optim.accumulate=2"), tmp_path / "halves")
    assert len(whole) == len(halves) == 2  # 4 samples: 2 optimizer steps either way
    for step_whole, step_halves in zip(whole, halves, strict=True):
        for g_whole, g_halves in zip(step_whole, step_halves, strict=True):
            torch.testing.assert_close(g_halves, g_whole, rtol=1e-5, atol=1e-7)
    # and not by luck: one sample's gradient alone differs
    single = _train(_cfg(smoke_world, "optim.batch_size=1"), tmp_path / "single")
    assert not torch.allclose(single[0][0], whole[0][0], rtol=1e-3)


def test_clipping_scales_the_gradient_norm_down_to_the_maximum(smoke_world, tmp_path, monkeypatch):
    max_norm = 1e-3
    before: list[float] = []
    clip = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        total = clip(params, max_norm, *args, **kwargs)  # the norm before clipping
        before.append(float(total))
        return total

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    steps = _train(_cfg(smoke_world, "optim.batch_size=2", f"optim.grad_clip={max_norm}"), tmp_path)
    assert len(steps) == len(before) == 2
    for grads, norm_before in zip(steps, before, strict=True):
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        assert norm_before > 10 * max_norm  # clipping was active
        assert norm == pytest.approx(max_norm, rel=1e-4)  # ... and the optimiser saw the clipped norm


def test_a_non_finite_loss_stops_naming_the_step_and_batch(smoke_world, tmp_path):
    model = PointMean()
    model.nan_at_call = 3  # micro-batch 2 with accumulate=2: after one optimizer step, in the second
    cfg = _cfg(smoke_world, "optim.batch_size=1", "optim.accumulate=2")
    expected = r"non-finite loss at step 2 \(epoch 0, batch 2, samples \['"
    with pytest.raises(FloatingPointError, match=expected):
        _train(cfg, tmp_path, model)
    assert model.calls == 3  # stopped at once
    assert not (tmp_path / "checkpoint.pt").exists()  # nothing saved from a diverged run
