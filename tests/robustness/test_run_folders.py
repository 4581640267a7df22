"""Part 3 of issue 17: run folders and datasets are never silently replaced, and an interrupted
``make-data`` leaves nothing behind."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import pytest
from robust_helpers import ROOT, cli, error_line, snapshot, train_args


def test_train_refuses_an_existing_run_folder(smoke_world, finished_run, tmp_path):
    run = shutil.copytree(finished_run, tmp_path / "run")
    before = snapshot(run)
    line = error_line(cli(*train_args(smoke_world.dataroot, run)))
    assert str(run) in line and "--resume" in line and "--overwrite" in line
    assert snapshot(run) == before


def test_train_overwrite_replaces_a_run_folder_only(smoke_world, finished_run, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    line = error_line(cli(*train_args(smoke_world.dataroot, notes), "--overwrite"))
    assert f"refusing to overwrite {notes}: it is not a run folder (none of config.yaml" in line
    assert (notes / "todo.txt").read_text() == "keep me"

    run = shutil.copytree(finished_run, tmp_path / "run")
    (run / "log.jsonl").write_text(json.dumps({"step": 99, "old": True}) + "\n")
    r = cli(*train_args(smoke_world.dataroot, run), "--overwrite")
    assert r.exit_code == 0, r.output
    assert '"old"' not in (run / "log.jsonl").read_text()  # a fresh run, not appended to the old log


def test_make_data_overwrite_replaces_a_dataset_only(world, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    line = error_line(cli("make-data", "--preset", "smoke", "--out", notes, "--overwrite"))
    assert f"refusing to overwrite {notes}" in line and "world_config.yaml" in line
    assert (notes / "todo.txt").read_text() == "keep me"

    (world / "stale.txt").write_text("from the old dataset")
    small = ["--set", "num_scenes=2", "--set", "samples_per_scene=2"]
    r = cli("make-data", "--preset", "smoke", "--out", world, "--overwrite", *small)
    assert r.exit_code == 0, r.output
    assert not (world / "stale.txt").exists() and "num_scenes: 2" in (world / "world_config.yaml").read_text()


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_make_data_leaves_no_temporary_folder(tmp_path, sig):
    out = tmp_path / "world"
    cmd = [sys.executable, "-c", "from distillbev.cli import app; app()", "make-data", "--preset", "smoke"]
    proc = subprocess.Popen([*cmd, "--out", str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    for line in proc.stdout:  # interrupt while the second scene is being written
        if "scene 1/" in line:
            proc.send_signal(sig)
            break
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert _leftovers(tmp_path) == []  # neither the dataset nor the hidden .world.*.tmp folder


def test_failed_make_data_leaves_no_temporary_folder(tmp_path, monkeypatch):
    import distillbev.data.synthetic.generate as generate

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(generate, "write_scene", broken)
    assert "disk full" in error_line(cli("make-data", "--preset", "smoke", "--out", tmp_path / "world"))
    assert _leftovers(tmp_path) == []
