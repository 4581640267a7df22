"""The smoke world (seed 0) for the visualisation tests (shared fixture, or generated once here)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def viz_world(request, tmp_path_factory) -> Path:
    """Dataroot of the seed-0 smoke world; reuses the copy tests/eval may already have generated."""
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
