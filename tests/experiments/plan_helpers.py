"""Fake run folders and teacher checkpoints for the reproduce tests: the files a finished, interrupted or
new run leaves behind (config.yaml, checkpoint.pt with its epoch, eval_epochN/metrics.json), no training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from distillbev.config import dump_config, load_config, to_dict
from distillbev.experiments.plan import Run, resolve_run_config
from distillbev.train.checkpoint import FORMAT
from distillbev.train.config import RunConfig

ROOT = Path(__file__).resolve().parents[2]
METRIC_KEYS = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")


def metrics(mAP: float, NDS: float, err: float = 0.5) -> dict[str, Any]:  # noqa: N803 - the metric names
    """A metrics dict with the seven headline values (the five errors all ``err``)."""
    return {"mAP": mAP, "NDS": NDS, **{k: err for k in METRIC_KEYS[2:]}}


def fake_teacher(path: Path, kind: str = "centerpoint", teacher_metrics: dict | None = None) -> Path:
    """A checkpoint file holding only what the plan reads of a teacher: its config and metrics."""
    preset = "centerpoint_pillar.yaml" if kind == "centerpoint" else "mvp.yaml"
    cfg = load_config(RunConfig, [ROOT / "configs" / "teacher" / preset])
    blob = {"format": FORMAT, "kind": kind, "config": to_dict(cfg), "epoch": cfg.optim.epochs, "step": 1}
    blob["metrics"] = teacher_metrics or {"mAP": 0.6, "NDS": 0.55}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, path)
    return path


def fake_run(
    run: Run,
    teacher_cfg: Any = None,
    epoch: int | None = None,
    final: dict[str, Any] | None = None,
    sets: tuple[str, ...] = (),
) -> Path:
    """Write the run folder of ``run`` as training would: config.yaml (the plan's config, plus ``sets``),
    checkpoint.pt at ``epoch`` (None: no checkpoint) and, with ``final``, the last epoch's metrics."""
    cfg = resolve_run_config(run, teacher_cfg)
    if sets:
        cfg = load_config(RunConfig, [], list(sets), base=cfg)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run.run_dir / "config.yaml")
    (run.run_dir / "log.jsonl").write_text(json.dumps({"step": 1, "loss/total": 1.0}) + "\n")
    if epoch is not None:
        torch.save({"format": FORMAT, "epoch": epoch, "config": to_dict(cfg)}, run.run_dir / "checkpoint.pt")
    if final is not None:
        out = run.run_dir / f"eval_epoch{cfg.optim.epochs}"
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(final))
    return run.run_dir


def finish(run: Run, teacher_cfg: Any, final: dict[str, Any]) -> Path:
    """A finished run: checkpoint at the config's last epoch and its metrics."""
    epochs = resolve_run_config(run, teacher_cfg).optim.epochs
    return fake_run(run, teacher_cfg, epoch=epochs, final=final)
