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
