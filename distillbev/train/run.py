"""Runs: resolve the config, build the model (and the frozen teacher + DistillLoss), train, evaluate."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distillbev.config import ConfigError, dump_config, load_config
from distillbev.paths import ROOT
from distillbev.train.checkpoint import check_resume_config, load_model, load_state_strict, read_checkpoint
from distillbev.train.config import RunConfig
from distillbev.train.data import make_loader, steps_per_epoch
from distillbev.train.inherit import inherit_head, inherited_line


@torch.no_grad()
def evaluate_model(
    model: nn.Module, cfg: RunConfig, out_dir: Path, max_samples: int | None = None
) -> dict[str, Any]:
    """Run ``model`` over the val split and score it with the official nuScenes metrics."""
    from distillbev.eval.nuscenes_eval import evaluate, load_nuscenes, split_sample_tokens
    from distillbev.eval.results import detections_to_results, write_results
    from distillbev.train.data import make_loader

    if max_samples is not None:
        cfg = replace(cfg, data=replace(cfg.data, max_val_samples=max_samples))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    per_sample, l2g = {}, {}
    for batch in make_loader(cfg, train=False):
        batch = batch.to(device)
        for token, det, m in zip(batch.sample_tokens, model.predict(batch), batch.lidar2global, strict=True):
            per_sample[token] = (det.boxes.cpu(), det.scores.cpu(), det.labels.cpu())
            l2g[token] = m.cpu().double().numpy()
    model.train(was_training)
    nusc = load_nuscenes(cfg.data.dataroot, cfg.data.version)
    tokens = split_sample_tokens(nusc, cfg.data.val_split)
    results = detections_to_results(per_sample, l2g, tokens, meta=_meta(cfg))
    path = Path(out_dir) / "results.json"
    write_results(results, path)
    return evaluate(cfg.data.dataroot, cfg.data.version, cfg.data.val_split, path, out_dir, nusc=nusc)


def _meta(cfg: RunConfig) -> dict[str, bool]:
    camera = not cfg.is_teacher or cfg.model == "mvp"
    return {
        "use_camera": camera,
        "use_lidar": cfg.is_teacher,
        "use_radar": False,
        "use_map": False,
        "use_external": False,
    }


def build_distillation(cfg: RunConfig, student: nn.Module, teacher: nn.Module) -> nn.Module:
    """A DistillLoss sized from one probe batch through both networks (adapters sized automatically)."""
    from distillbev.distill.loss import DistillLoss
    from distillbev.train.data import make_loader

    probe = replace(cfg, optim=replace(cfg.optim, batch_size=1), data=replace(cfg.data, num_workers=0))
    batch = next(iter(make_loader(probe, train=False)))
    was = student.training
    student.eval()
    teacher.eval()
    with torch.no_grad():
        s_taps = student.forward_bev(batch)
        t_taps = teacher.forward_bev(batch)
        student.forward_head(s_taps)  # adds "HS", the head's shared map
        teacher.forward_head(t_taps)
    student.train(was)
    for name in cfg.distill.layers:
        if name not in s_taps or name not in t_taps:
            raise ConfigError(f"distill.layers: tap {name!r} is not exposed by both networks")
    grid = cfg.student.bev_grid()
    grids = {n: grid.scaled(grid.shape[0] / t_taps[n].shape[-2]) for n in cfg.distill.layers}
    return DistillLoss(
        cfg.distill,
        student_channels={n: s_taps[n].shape[1] for n in cfg.distill.layers},
        teacher_channels={n: t_taps[n].shape[1] for n in cfg.distill.layers},
        student_sizes={n: tuple(s_taps[n].shape[-2:]) for n in cfg.distill.layers},
        teacher_sizes={n: tuple(t_taps[n].shape[-2:]) for n in cfg.distill.layers},
        grids=grids,
    )


def with_teacher_points(cfg: RunConfig, t_cfg: RunConfig) -> RunConfig:
    """The student's reader must feed the teacher the points it was trained on (sweeps; MVP: + virtual
    points from the same mask source)."""
    reader = replace(
        cfg.data.reader, num_sweeps=t_cfg.data.reader.num_sweeps, virtual_points=t_cfg.model == "mvp"
    )
    return replace(cfg, data=replace(cfg.data, reader=reader), mvp=t_cfg.mvp)


def load_teacher(path: Path) -> tuple[nn.Module, RunConfig]:
    """A LiDAR teacher and its config from a checkpoint; a student checkpoint is refused."""
    t_model, t_cfg, _ = load_model(path)
    if not t_cfg.is_teacher:
        raise ValueError(f"{path} is a {t_cfg.model!r} checkpoint, not a LiDAR teacher")
    return t_model, t_cfg


def head_source(cfg: RunConfig, teacher: Path | None, resume: Path | None) -> Path | None:
    """The teacher checkpoint whose head task branches initialise the student, or None.

    Distillation (``teacher`` given) uses ``distill.inherit_head``; a plain student uses
    ``inherit_head_from``. A resumed run inherits nothing: its checkpoint holds the student's own head.
    """
    wanted = Path(cfg.inherit_head_from) if cfg.inherit_head_from else None
    if wanted is not None and cfg.is_teacher:
        raise ConfigError(f"inherit_head_from: a {cfg.model!r} teacher run has no teacher to inherit from")
    if wanted is not None and not wanted.is_file():
        raise ConfigError(f"inherit_head_from: teacher checkpoint not found: {wanted}")
    if teacher is not None and wanted is not None:
        if not cfg.distill.inherit_head:
            raise ConfigError(
                f"inherit_head_from={wanted} is set but distill.inherit_head=false; distilling from "
                f"{teacher}, set distill.inherit_head=true (and drop inherit_head_from) to inherit its head"
            )
        if wanted.resolve() != Path(teacher).resolve():
            raise ConfigError(
                f"inherit_head_from={wanted} differs from the distillation teacher {teacher}; the head is "
                "inherited from the teacher (distill.inherit_head): drop inherit_head_from"
            )
    if resume is not None:
        return None
    if teacher is not None:
        return Path(teacher) if cfg.distill.inherit_head else None
    return wanted


def run_training(
    files: Sequence[Path],
    out: Path | None,
    overrides: Sequence[str],
    teacher: Path | None = None,
    resume: Path | None = None,
    init_from: Path | None = None,
    dry_run: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """``distillbev train`` / ``distillbev distill``: returns the final validation metrics.

    Everything that can be checked is checked before the run folder is touched: the config, the
    teacher and init checkpoints, the training split's size, and the run folder itself, which must be
    new or empty unless ``resume`` (its config must match the checkpoint's but for ``RESUME_SAFE_KEYS``;
    without ``out`` the run goes on in the checkpoint's folder) or ``overwrite`` (a run folder only).
    Resuming a finished run trains nothing and returns the checkpoint's metrics.
    """
    import yaml

    from distillbev.config import to_dict
    from distillbev.eval.tables import print_metrics
    from distillbev.models import build_model
    from distillbev.train.loop import train

    if resume is not None and overwrite:
        raise ConfigError("--resume continues a run folder and --overwrite replaces it: give one of them")
    cfg = load_config(RunConfig, list(files), list(overrides))
    t_model = t_cfg = None
    if teacher is not None:
        if cfg.is_teacher:
            raise ConfigError(
                f"{files[0]}: a teacher checkpoint was given but the config trains a {cfg.model!r}"
            )
        t_model, t_cfg = load_teacher(teacher)
        cfg = with_teacher_points(cfg, t_cfg)
    head_from = head_source(cfg, teacher, resume)
    name = Path(files[-1]).stem + (f"_from_{Path(teacher).parent.name}" if teacher else "")
    if out is not None:
        run_dir = Path(out)
    else:
        run_dir = Path(resume).parent if resume is not None else ROOT / "runs" / name
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip())
    print(f"run directory: {run_dir}")
    if dry_run:
        return {}
    # Under torchrun only rank 0 checks and writes the folder (the others would see its writes).
    main = int(os.environ.get("RANK", "0")) == 0
    replace_old = check_run_folder(run_dir, resume, overwrite) if main else False
    if resume is not None:
        blob = read_checkpoint(resume)
        check_resume_config(cfg, blob, resume)
        if blob["epoch"] >= cfg.optim.epochs:
            print(
                f"{resume}: the run is finished (epoch {blob['epoch']} of {cfg.optim.epochs}, step "
                f"{blob['step']}); nothing to train"
            )
            return dict(blob["metrics"])
    steps_per_epoch(cfg, make_loader(cfg, train=True))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    if init_from is not None:
        load_state_strict(model, read_checkpoint(init_from)["model"], f"checkpoint {init_from}")
    if head_from is not None:  # after init_from: the teacher's task branches replace the loaded ones
        inherit_head(model, t_model if teacher is not None else load_teacher(head_from)[0])
        print(inherited_line(head_from))
    distill_loss = build_distillation(cfg, model, t_model) if t_model is not None else None
    # All checks passed: only now is the run folder replaced (--overwrite) or written.
    if replace_old:
        shutil.rmtree(run_dir)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
    start = time.time()
    metrics = train(
        cfg,
        run_dir,
        model,
        t_model,
        distill_loss,
        resume=resume,
        evaluate_fn=lambda m, d: evaluate_model(m, cfg, d),
    )
    metrics["train_minutes"] = (time.time() - start) / 60
    if metrics.get("mAP") is not None:
        print_metrics(metrics, title=f"official nuScenes metrics: {name}")
    return metrics


def check_run_folder(run_dir: Path, resume: Path | None, overwrite: bool) -> bool:
    """Check that a run may write ``run_dir`` (nothing is written): a resumed run continues in its
    checkpoint's folder (or a new, empty one); a new run needs an absent or empty folder, or
    ``overwrite`` and a recognisable run folder. Returns True when the folder is to be replaced."""
    from distillbev.io import check_output_folder, check_writable

    check_writable(run_dir, folder=True)
    if resume is not None and Path(resume).parent.resolve() == run_dir.resolve():
        return False
    if resume is not None:
        hint = f"a resumed run goes on in its checkpoint's folder {Path(resume).parent}, or a new one"
    else:
        hint = f"pass --resume {run_dir / 'checkpoint.pt'} to continue it, or --overwrite to replace it"
    return check_output_folder(run_dir, overwrite, ("run",), hint)
