"""The weights shipped in ``checkpoints/``: each matches its record (sha256) and loads strictly into
every tiny student that names it."""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from distillbev.config import load_config
from distillbev.models import build_model
from distillbev.train.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints"
RECORDS = sorted(SHIPPED.glob("*.json"))
STUDENTS = ["bevdet", "bevdet4d", "bevdepth", "bevdepth4d", "bevformer"]


def _record(stem: str) -> dict:
    return json.loads((SHIPPED / f"{stem}.json").read_text())


def test_every_shipped_file_matches_its_record():
    weights = sorted(SHIPPED.glob("*.pt"))
    assert {p.stem for p in weights} == {p.stem for p in RECORDS}, "every .pt needs its .json record"
    assert "image_encoder_small" in {p.stem for p in weights}
    for path in weights:
        record = _record(path.stem)
        assert record["file"] == path.name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"], path
        assert record["git_sha"] and record["command"].startswith("distillbev ")


@pytest.mark.parametrize("student", STUDENTS)
def test_tiny_students_load_the_shipped_image_encoder(student):
    cfg = load_config(RunConfig, [ROOT / "configs" / "student" / f"{student}.yaml"])
    assert Path(cfg.student.image_pretrained).name == "image_encoder_small.pt"
    model = build_model(cfg)  # raises on any missing / unexpected / mis-shaped key
    blob = torch.load(SHIPPED / "image_encoder_small.pt", weights_only=False)
    for name, module in (("backbone", model.backbone), ("neck", model.neck)):
        state = module.state_dict()
        assert state.keys() == blob[name].keys()
        assert all(torch.equal(state[k], blob[name][k]) for k in state)


def test_shipped_teacher_scores_what_it_recorded(tmp_path):
    """The shipped CenterPoint loads strictly and, on the val scenes regenerated from its record's world
    config and seed, scores the official mAP / NDS it recorded (the demo reuses it instead of training)."""
    from distillbev.data.synthetic.config import WorldConfig
    from distillbev.data.synthetic.generate import generate_world
    from distillbev.train.checkpoint import load_model
    from distillbev.workflows import score_checkpoint

    record = _record("centerpoint_small")
    assert record["kind"] == "centerpoint" and record["epochs"] == 32
    world = WorldConfig(**{**record["world"]["config"], "workers": 2})
    val = list(range(world.num_scenes - world.num_val_scenes, world.num_scenes))
    generate_world(world, tmp_path / "val", seed=record["world"]["seed"], scenes=val)
    model, cfg, _ = load_model(SHIPPED / "centerpoint_small.pt")  # strict: any key mismatch raises
    assert cfg.model == "centerpoint" and sum(p.numel() for p in model.parameters()) > 0
    metrics = score_checkpoint(
        SHIPPED / "centerpoint_small.pt", tmp_path / "val", "", "", None, [], tmp_path / "eval"
    )
    for key in ("mAP", "NDS", "mATE"):
        assert metrics[key] == pytest.approx(record["metrics"][key], abs=2e-3), key
    assert metrics["mAP"] > 0.5  # a teacher worth distilling from, not a checkpoint that merely loads
