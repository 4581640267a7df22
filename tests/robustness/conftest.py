"""Robustness suite fixtures: a private copy of the smoke world to corrupt, a tiny teacher run to resume,
and an unwritable folder (the CLI helpers are in robust_helpers.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from robust_helpers import TEACHER, cli, train_args


@pytest.fixture
def world(smoke_world, tmp_path) -> Path:
    """A private copy of the smoke world (tests corrupt it)."""
    return Path(shutil.copytree(smoke_world.dataroot, tmp_path / "world"))


@pytest.fixture(scope="session")
def finished_run(smoke_world, tmp_path_factory) -> Path:
    """A finished 2-epoch tiny teacher run (4 steps); copy it before changing it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    r = cli(*train_args(smoke_world.dataroot, out))
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="session")
def half_run(smoke_world, tmp_path_factory) -> Path:
    """The same run stopped after its first epoch (checkpoint at step 2), as if killed then."""
    from distillbev.config import dump_config, load_config
    from distillbev.models import build_model
    from distillbev.train.config import RunConfig
    from distillbev.train.loop import train

    out = tmp_path_factory.mktemp("half") / "run"
    cfg = load_config(RunConfig, TEACHER, [f"data.dataroot={smoke_world.dataroot}"])
    out.mkdir()
    dump_config(cfg, out / "config.yaml")
    torch.manual_seed(cfg.seed)  # as run_training does, so the weights match finished_run's
    train(cfg, out, build_model(cfg), stop_after_epochs=1)
    return out


@pytest.fixture
def unwritable_dir(tmp_path) -> Path:
    """A folder nobody can create files in (a read-only tmp folder, or /sys when running as root)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    candidates = [folder, Path("/sys")]
    try:
        for c in candidates:
            try:
                fd, probe = tempfile.mkstemp(dir=c)
            except OSError:
                yield c
                return
            os.close(fd)
            os.remove(probe)
        pytest.skip("no unwritable folder on this machine")
    finally:
        folder.chmod(0o755)
