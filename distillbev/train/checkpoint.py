"""Checkpoints that say what they are: weights + resolved config + its hash + step + metrics.

``resume`` restores optimizer, scheduler, step and RNG; ``init-from`` loads weights only. Loading is
strict: missing/unexpected keys and shape mismatches are listed; a checkpoint of another model kind is
refused with both kinds named.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distillbev.config import ConfigError, config_from_dict, config_hash, load_config, to_dict
from distillbev.io import atomic_path
from distillbev.train.config import RunConfig

FORMAT = "distillbev-checkpoint-v1"


def git_sha() -> str:
    """The repository commit this code runs from ('' outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def model_kind(cfg: RunConfig) -> str:
    """A human-readable model identity, e.g. 'centerpoint', 'mvp', 'bevdepth4d'."""
    if cfg.is_teacher:
        return cfg.model
    return cfg.student.kind + ("4d" if cfg.student.temporal else "")


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` saved."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(
    path: Path,
    model: nn.Module,
    cfg: RunConfig,
    step: int,
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    extra_modules: dict[str, nn.Module] | None = None,
    metrics: dict[str, Any] | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Atomically write a checkpoint. ``extra_modules`` (e.g. distillation adapters) are saved apart
    from the model so that a distilled checkpoint loads into the plain student; ``scaler`` is fp16's
    loss scale (None when off), restored on resume."""
    blob = {
        "format": FORMAT,
        "kind": model_kind(cfg),
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
        "git_sha": git_sha(),
        "step": step,
        "epoch": epoch,
        "model": model.state_dict(),
        "extra_modules": {k: m.state_dict() for k, m in (extra_modules or {}).items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": rng_state(),
        "metrics": metrics or {},
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint file and check it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path}: not a distillbev checkpoint (no '{FORMAT}' marker)")
    return blob


def checkpoint_config(blob: dict[str, Any], path: Path | str = "") -> RunConfig:
    """The RunConfig stored in a checkpoint."""
    return config_from_dict(RunConfig, blob["config"], f"{path} (stored config)")


#: Keys a resumed run may change: they decide how often the run evaluates and logs and how many
#: threads / loader workers it uses, never the optimisation itself (augmentation draws depend on
#: (seed, epoch, sample) only). Any other difference from the checkpoint's config refuses to resume.
RESUME_SAFE_KEYS = ("eval_every_epochs", "log_every_steps", "threads", "tune_malloc", "data.num_workers")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resume_config(cfg: RunConfig, blob: dict[str, Any], path: Path | str) -> None:
    """Refuse to resume the checkpoint ``blob`` (read from ``path``) with a config that differs from its
    own in anything but ``RESUME_SAFE_KEYS``: the run would silently mix two configs."""
    old, new = _flat(to_dict(checkpoint_config(blob, path))), _flat(to_dict(cfg))
    changed = [
        k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k) and k not in RESUME_SAFE_KEYS
    ]
    if changed:
        shown = ", ".join(f"{k} ({old.get(k)!r} in the checkpoint, {new.get(k)!r} now)" for k in changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise ConfigError(
            f"--resume {path}: the config differs from the checkpoint's in {shown}{more}; only "
            f"{', '.join(RESUME_SAFE_KEYS)} may change on resume (start a new run for other changes)"
        )


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists what does not fit."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:8])}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:8])}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes[:8])}")
        raise ValueError(f"{what} does not fit the model: " + " | ".join(parts))
    module.load_state_dict(state, strict=True)


def load_model(
    path: Path, expected_kind: str | None = None, overrides: Sequence[str] = ()
) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights (strict). ``overrides`` (``key=value``)
    change the checkpoint's config before the model is built, so that they reach the model (decoding
    settings such as ``student.head.max_per_task``); one that changes a parameter's shape fails the
    strict load, naming the parameter."""
    from distillbev.models import build_model

    blob = read_checkpoint(path)
    if expected_kind is not None and blob["kind"] != expected_kind:
        raise ValueError(f"{path} holds a {blob['kind']!r} model, expected {expected_kind!r}")
    cfg = checkpoint_config(blob, path)
    if overrides:
        cfg = load_config(RunConfig, [], list(overrides), base=cfg)
    # The checkpoint holds every weight: the pretrained image weights the run started from are not
    # read again (their file may be on another machine); the returned config still names them.
    model = build_model(replace(cfg, student=replace(cfg.student, pretrained="", image_pretrained="")))
    load_state_strict(model, blob["model"], f"checkpoint {path}")
    return model, cfg, blob
