"""Learning-rate schedules as plain ``LambdaLR`` multipliers."""

from __future__ import annotations

import math

import torch

from distillbev.train.config import OptimConfig


def lr_multiplier(step: int, total: int, cfg: OptimConfig, steps_per_epoch: int) -> float:
    """The factor applied to ``cfg.lr`` at optimizer step ``step`` of ``total``."""
    total = max(total, 1)
    t = min(step / total, 1.0)
    warm = cfg.warmup_fraction
    match cfg.schedule:
        case "onecycle":
            # mmdet3d "cyclic": from lr/10 up to lr over `warm`, then cosine down to lr * 1e-4.
            if t < warm:
                return 0.1 + 0.9 * (1 - math.cos(math.pi * t / warm)) / 2
            u = (t - warm) / max(1 - warm, 1e-8)
            return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * u)) / 2
        case "cosine":
            if t < warm:
                return 1e-3 + (1 - 1e-3) * t / warm
            u = (t - warm) / max(1 - warm, 1e-8)
            return 1e-3 + (1 - 1e-3) * (1 + math.cos(math.pi * u)) / 2
        case "step":
            warm_mult = min(1.0, 1e-3 + t / warm) if warm > 0 else 1.0
            epoch = step // max(steps_per_epoch, 1)
            return warm_mult * 0.1 ** sum(epoch >= e for e in cfg.step_epochs)
        case "constant":
            return 1.0
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def build_scheduler(
    opt: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following ``lr_multiplier``."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_multiplier(s, total_steps, cfg, steps_per_epoch)
    )
