"""Commands that read a checkpoint: ``eval --checkpoint`` scores it as training did, ``train --init-from``
loads its weights strictly and refuses one that does not fit, before any output is written."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from robust_helpers import ROOT, cli, error_line, train_args

import distillbev.train.loop
from distillbev.train.checkpoint import read_checkpoint


def test_eval_checkpoint_reproduces_the_metrics_of_the_training_run(smoke_world, finished_run, tmp_path):
    ckpt = shutil.copy(finished_run / "checkpoint.pt", tmp_path / "checkpoint.pt")
    out = tmp_path / "scores" / "m.json"
    r = cli("eval", "--dataroot", smoke_world.dataroot, "--checkpoint", ckpt, "--out", out)
    assert r.exit_code == 0, r.output
    metrics = json.loads(out.read_text())
    stored = read_checkpoint(ckpt)["metrics"]  # the run's last evaluation, on the same val samples
    for key in ("mAP", "NDS", "mATE"):
        assert metrics[key] == pytest.approx(stored[key], abs=1e-6)
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
