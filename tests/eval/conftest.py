"""The smoke world (seed 0) loaded with the devkit, for the evaluation tests.

Uses the shared ``smoke_world`` fixture of tests/conftest.py when it exists; otherwise generates the
world once per session under pytest's base temp folder (shared with tests/viz).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from distillbev.eval.nuscenes_eval import load_nuscenes


def smoke_dataroot(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dataroot of the seed-0 smoke world (the shared fixture's, or generated here once)."""
    try:
        world = request.getfixturevalue("smoke_world")
        return Path(getattr(world, "dataroot", getattr(world, "root", world)))
    except pytest.FixtureLookupError:
        pass
    from distillbev.config import load_config
    from distillbev.data.synthetic.config import WorldConfig
    from distillbev.data.synthetic.generate import generate_world

    root = tmp_path_factory.getbasetemp() / "smoke_world_seed0"
    if not (root / "world_config.yaml").is_file():
        preset = Path(__file__).resolve().parents[2] / "configs" / "data" / "smoke.yaml"
        generate_world(load_config(WorldConfig, [preset]), root, seed=0)
    return root


@pytest.fixture(scope="session")
def eval_world(request, tmp_path_factory):
    """``dataroot``, ``version``, ``split`` (val) and the loaded ``nusc`` of the smoke world."""
    root = smoke_dataroot(request, tmp_path_factory)
    (version,) = [p.name for p in root.iterdir() if p.name.startswith("v1.0-")]
    (split,) = [k for k in json.loads((root / version / "splits.json").read_text()) if k.endswith("val")]
    return SimpleNamespace(dataroot=root, version=version, split=split, nusc=load_nuscenes(root, version))
