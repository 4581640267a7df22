"""The smoke world (seed 0, shared ``smoke_world`` fixture) loaded with the devkit, for the eval tests."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from distillbev.eval.nuscenes_eval import load_nuscenes


@pytest.fixture(scope="session")
def eval_world(smoke_world):
    """``dataroot``, ``version``, ``split`` (val) and the loaded ``nusc`` of the smoke world."""
    root, version = smoke_world.dataroot, smoke_world.version
    return SimpleNamespace(
        dataroot=root, version=version, split=smoke_world.val_split, nusc=load_nuscenes(root, version)
    )
