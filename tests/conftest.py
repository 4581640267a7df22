"""Shared fixtures: one smoke-preset synthetic world per test session; single-threaded torch."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from distillbev.config import load_config
from distillbev.data.synthetic.config import WorldConfig
from distillbev.data.synthetic.generate import generate_world

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    # Tests are tiny; one thread avoids oversubscribing a 2-core machine (and makes timings stable).
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smoke_world(tmp_path_factory) -> SimpleNamespace:
    """The smoke world (seed 0): ``dataroot``, ``version``, ``train_split``, ``val_split``, ``config``."""
    cfg = load_config(WorldConfig, [ROOT / "configs" / "data" / "smoke.yaml"])
    root = tmp_path_factory.mktemp("smoke") / "world"
    generate_world(cfg, root, seed=0)
    return SimpleNamespace(
        dataroot=root,
        version=cfg.version,
        train_split=cfg.train_split,
        val_split=cfg.val_split,
        split=cfg.val_split,
        config=cfg,
    )


@pytest.fixture(scope="session")
def smoke_nusc(smoke_world):
    """The devkit's NuScenes object of the smoke world."""
    from nuscenes import NuScenes

    return NuScenes(version=smoke_world.version, dataroot=str(smoke_world.dataroot), verbose=False)
