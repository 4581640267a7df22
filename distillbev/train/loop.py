"""The training loop, on one screen: student (or teacher) forward, frozen-teacher forward under
no_grad, detection + depth + distillation losses, AMP, accumulation, clipping, step, periodic
evaluation and checkpoints. DDP comes from ``torchrun``'s environment (``train.distributed``): one
DDP wraps the student together with the distillation adapters (``Trainable``), so every gradient the
optimiser sees is all-reduced; the frozen teacher stays outside.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distillbev.config import ConfigError
from distillbev.data.batch import Batch
from distillbev.train import distributed
from distillbev.train.checkpoint import (
    check_resume_config,
    load_state_strict,
    read_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from distillbev.train.config import RunConfig
from distillbev.train.data import make_loader, steps_per_epoch
from distillbev.train.logging import RunLogger
from distillbev.train.malloc import tune_malloc
from distillbev.train.schedule import build_scheduler

#: The frozen teacher's taps, its score map (B, 1, H, W) and the GT score map (B, 1, H, W).
TeacherOutputs = tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]


def _autocast(cfg: RunConfig, device: torch.device):
    """bf16 or fp16 autocast (fp16 goes with a GradScaler, see ``train``); bf16 on a GPU needs
    hardware support (Ampere or newer)."""
    if cfg.optim.amp == "off":
        return nullcontext()
    if cfg.optim.amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"optim.amp=bf16: {torch.cuda.get_device_name(device)} has no bf16; use fp16")
    dtype = torch.bfloat16 if cfg.optim.amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _clock(seconds: float) -> str:
    """``h:mm:ss`` of a duration."""
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, head: nn.Module, batch: Batch) -> TeacherOutputs:
    """What distillation needs from the frozen teacher (it sees the same augmented sample as the
    student): its taps, its score map, and the GT score map on the student ``head``'s grid."""
    t_taps = teacher.forward_bev(batch)
    t_score = teacher.head.score_map(teacher.forward_head(t_taps))
    gt_score = head.gt_score_map(head.build_targets(batch.gt_boxes, batch.gt_labels))
    return t_taps, t_score, gt_score


class Trainable(nn.Module):
    """Everything the optimiser updates, as one module so that one DDP wraps it all: the model and,
    when distilling, ``DistillLoss`` (its adapters and attention convs). Under DDP a parameter used
    outside the wrapped module's forward gets no all-reduce, and the ranks' adapters drift apart.
    ``forward`` returns the named losses (detection, depth, ``kd_*``)."""

    def __init__(self, model: nn.Module, distill_loss: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.distill = distill_loss

    def forward(
        self, batch: Batch, teacher_out: TeacherOutputs | None = None, step: int = 0
    ) -> dict[str, torch.Tensor]:
        """Named losses of ``batch``; ``teacher_out`` (from ``teacher_outputs``) when distilling."""
        taps, preds = self.model(batch)
        losses = self.model.loss(batch, taps, preds)
        if self.distill is not None and teacher_out is not None:
            t_taps, t_score, gt_score = teacher_out
            losses |= self.distill(taps, t_taps, batch.gt_boxes, t_score, gt_score, step=step)
        elif self.distill is not None:  # past distill.stop_step: no imitation, the teacher is not run
            # A zero that touches every adapter weight, so that DDP sees each parameter used.
            losses["kd_stopped"] = sum(p.sum() for p in self.distill.parameters()) * 0.0
        return losses


def train(
    cfg: RunConfig,
    run_dir: Path,
    model: nn.Module,
    teacher: nn.Module | None = None,
    distill_loss: nn.Module | None = None,
    resume: Path | None = None,
    evaluate_fn: Any = None,
    stop_after_epochs: int | None = None,
) -> dict[str, Any]:
    """Train ``model`` (distilling ``teacher`` through ``distill_loss`` when given); returns metrics."""
    info = distributed.setup()
    device = distributed.device_for(info)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.tune_malloc and device.type == "cpu":
        tune_malloc()
    torch.manual_seed(cfg.seed + info.rank)
    model.to(device)
    if cfg.optim.channels_last:
        model.to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher.to(device).eval().requires_grad_(False)  # frozen: eval-mode BN, no grads, not optimised
        distill_loss.to(device)
    trainee = Trainable(model, distill_loss)
    ddp = distributed.wrap(trainee, info)  # student + adapters in one DDP (SyncBatchNorm on GPUs)
    trainable = [p for p in trainee.parameters() if p.requires_grad]
    fused = cfg.optim.fused_adamw and device.type in ("cuda", "cpu")
    opt = torch.optim.AdamW(
        trainable, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, fused=fused or None
    )
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.optim.amp == "fp16")  # off: pass-through
    loader = make_loader(cfg, train=True, info=info)
    epoch_steps = steps_per_epoch(cfg, loader)
    total = epoch_steps * cfg.optim.epochs
    sched = build_scheduler(opt, cfg.optim, total, epoch_steps)
    step, start_epoch = 0, 0
    if resume is not None:
        blob = read_checkpoint(resume)
        check_resume_config(cfg, blob, resume)
        load_state_strict(model, blob["model"], f"checkpoint {resume}")
        if distill_loss is not None and "distill" in blob["extra_modules"]:
            load_state_strict(
                distill_loss, blob["extra_modules"]["distill"], f"distillation state in {resume}"
            )
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        if scaler.is_enabled() and blob.get("scaler"):
            scaler.load_state_dict(blob["scaler"])
        set_rng_state(blob["rng"])
        step, start_epoch = blob["step"], blob["epoch"]
    logger = RunLogger(run_dir, enabled=info.is_main, resume_step=step if resume is not None else None)
    extra = {"distill": distill_loss} if distill_loss is not None else {}
    metrics: dict[str, Any] = {}
    t_last = t_start = time.time()
    start_step = step
    for epoch in range(start_epoch, cfg.optim.epochs):
        if stop_after_epochs is not None and epoch >= stop_after_epochs:
            break  # as if the run were killed here (tests resume from the last checkpoint)
        trainee.train()
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        if loader.generator is not None:
            loader.generator.manual_seed(
                cfg.seed * 1000 + epoch
            )  # the epoch's order depends on the epoch only
        base = getattr(loader.dataset, "dataset", loader.dataset)
        if hasattr(base, "set_epoch"):
            base.set_epoch(epoch)  # a new augmentation draw per epoch
        for i, batch in enumerate(loader):
            batch = batch.to(device)
            update = (i + 1) % cfg.optim.accumulate == 0
            # Accumulation steps skip DDP's all-reduce; the update step's backward reduces the sum.
            with nullcontext() if update or ddp is trainee else ddp.no_sync():
                with _autocast(cfg, device):
                    distilling = teacher is not None and distill_loss.cfg.active(step)
                    t_out = teacher_outputs(teacher, model.head, batch) if distilling else None
                    losses = ddp(batch, t_out, step)
                loss = sum(losses.values())
                if not torch.isfinite(loss):
                    bad = {k: float(v.detach()) for k, v in losses.items()}
                    raise FloatingPointError(  # step + 1: the log numbers steps after the update
                        f"non-finite loss at step {step + 1} (epoch {epoch}, batch {i}, "
                        f"samples {batch.sample_tokens}): {bad}"
                    )
                scaler.scale(loss / cfg.optim.accumulate).backward()
            if not update:
                continue
            if cfg.optim.grad_clip > 0:
                scaler.unscale_(opt)  # fp16: the threshold applies to the true, unscaled gradients
                torch.nn.utils.clip_grad_norm_(trainable, cfg.optim.grad_clip)
            scaler.step(opt)  # fp16: skipped when a gradient is inf/NaN, and the scale backs off
            scaler.update()
            opt.zero_grad(set_to_none=True)
            sched.step()
            step += 1
            if step % cfg.log_every_steps == 0 or step == 1:
                now = time.time()
                scalars = {
                    f"loss/{k}": float(distributed.all_reduce_mean(v.detach(), info))
                    for k, v in losses.items()
                }
                scalars["loss/total"] = float(distributed.all_reduce_mean(loss.detach(), info))
                scalars["lr"] = sched.get_last_lr()[0]
                scalars["sec_per_step"] = (now - t_last) / (1 if step == 1 else cfg.log_every_steps)
                t_last = now
                logger.log(step, scalars, epoch=epoch)
                if info.is_main:
                    done = step - start_step
                    left = (time.time() - t_start) / max(done, 1) * (total - step)
                    print(
                        f"epoch {epoch} step {step}/{total} loss {scalars['loss/total']:.4f} "
                        f"({scalars['sec_per_step']:.2f} s/step, {_clock(left)} left)",
                        flush=True,
                    )
        last = epoch + 1 == cfg.optim.epochs
        if (
            evaluate_fn is not None
            and info.is_main
            and (last or (cfg.eval_every_epochs and (epoch + 1) % cfg.eval_every_epochs == 0))
        ):
            metrics = evaluate_fn(model, run_dir / f"eval_epoch{epoch + 1}")
            logger.log(
                step,
                {f"val/{k}": v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)},
                epoch=epoch,
            )
        if info.is_main:
            save_checkpoint(
                run_dir / "checkpoint.pt", model, cfg, step, epoch + 1, opt, sched, extra, metrics, scaler
            )
    logger.close()
    distributed.cleanup(info)
    return metrics
