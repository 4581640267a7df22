"""Commands that read a checkpoint: ``eval --checkpoint`` scores the whole split as training scored its
samples, ``train --init-from`` loads its weights strictly and refuses one that does not fit, before any
output is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from robust_helpers import ROOT, cli, error_line, train_args

import distillbev.train.loop
from distillbev.train.checkpoint import read_checkpoint


def _answered(results: Path) -> int:
    """How many samples of a result file have at least one box."""
    return sum(1 for boxes in json.loads(results.read_text())["results"].values() if boxes)


def test_eval_checkpoint_scores_the_whole_split_as_training_scores_its_samples(
    smoke_world, finished_run, tmp_path
):
    """The run evaluated its first ``data.max_val_samples`` (2) val samples; ``eval --checkpoint``
    predicts the whole split, and on those first samples its boxes are the training run's."""
    ckpt = shutil.copy(finished_run / "checkpoint.pt", tmp_path / "checkpoint.pt")
    out = tmp_path / "scores" / "m.json"
    r = cli("eval", "--dataroot", smoke_world.dataroot, "--checkpoint", ckpt, "--out", out)
    assert r.exit_code == 0, r.output
    epoch = read_checkpoint(ckpt)["epoch"]
    trained = json.loads((finished_run / f"eval_epoch{epoch}" / "results.json").read_text())["results"]
    scored_file = out.parent / f"eval_{smoke_world.val_split}" / "results.json"
    scored = json.loads(scored_file.read_text())["results"]
    assert trained.keys() == scored.keys()  # every split token is in both files
    firsts = [t for t, boxes in trained.items() if boxes]
    assert 0 < len(firsts) <= 2 < _answered(scored_file)
    for token in firsts:  # the same boxes (an untrained head's tied scores may list them in another order)
        assert len(scored[token]) == len(trained[token])
        for b in trained[token]:
            assert any(
                abs(a["detection_score"] - b["detection_score"]) < 1e-5
                and a["translation"] == pytest.approx(b["translation"], abs=1e-3)
                for a in scored[token]
            ), b
    assert json.loads(out.read_text())["mAP"] >= 0.0
    # The devkit's files go beside --out, not beside the checkpoint (which may be a shipped one).
    assert (out.parent / f"eval_{smoke_world.val_split}" / "metrics.json").is_file()
    assert not (tmp_path / f"eval_{smoke_world.val_split}").exists()


def test_eval_of_a_file_that_is_no_checkpoint_is_one_line(smoke_world, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    line = error_line(cli("eval", "--dataroot", smoke_world.dataroot, "--checkpoint", bad))
    assert f"{bad}: not a readable checkpoint" in line


def test_init_from_loads_every_weight(smoke_world, finished_run, tmp_path, monkeypatch):
    got = {}

    def no_training(cfg, run_dir, model, *args, **kwargs):
        got.update(model.state_dict())
        return {}

    monkeypatch.setattr(distillbev.train.loop, "train", no_training)
    ckpt = finished_run / "checkpoint.pt"
    r = cli(*train_args(smoke_world.dataroot, tmp_path / "run"), "--init-from", ckpt)
    assert r.exit_code == 0, r.output
    stored = read_checkpoint(ckpt)["model"]
    assert got.keys() == stored.keys()
    assert all(torch.equal(got[k], v) for k, v in stored.items())


def test_init_from_a_foreign_checkpoint_is_refused_before_output(smoke_world, finished_run, tmp_path):
    ckpt = finished_run / "checkpoint.pt"  # the tiny teacher's
    student = [
        "train",
        ROOT / "configs/student/bevdet.yaml",
        ROOT / "configs/scale/smoke.yaml",
        "--set",
        f"data.dataroot={smoke_world.dataroot}",
    ]
    line = error_line(cli(*student, "--init-from", ckpt, "--out", tmp_path / "student"))
    assert f"checkpoint {ckpt} does not fit the model: missing keys" in line and "unexpected keys" in line
    # the same kind with other sizes: the shapes are listed
    wider = train_args(smoke_world.dataroot, tmp_path / "wider", "teacher.pfn_channels=8")
    line = error_line(cli(*wider, "--init-from", ckpt))
    assert "does not fit the model: shape mismatches" in line
    assert not (tmp_path / "student").exists() and not (tmp_path / "wider").exists()
