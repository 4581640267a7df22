"""Part 2 of issue 17: ``--resume`` compares configs, goes on in the checkpoint's folder, says when a
run is already finished, and leaves ``log.jsonl`` without repeated steps."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from robust_helpers import cli, error_line, snapshot, train_args


def _steps(run) -> list[int]:
    """The training-loss rows' steps of a run's log (validation rows share the last step)."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "loss/total" in r]


@pytest.mark.parametrize(
    ("override", "shown"),
    [
        ("optim.lr=0.02", "optim.lr (0.002 in the checkpoint, 0.02 now)"),
        ("optim.epochs=3", "optim.epochs (2 in the checkpoint, 3 now)"),  # would re-lay the schedule
    ],
)
def test_resume_with_a_changed_config_is_refused_and_touches_nothing(
    smoke_world, half_run, tmp_path, override, shown
):
    run = shutil.copytree(half_run, tmp_path / "run")
    before = snapshot(run)
    r = cli(*train_args(smoke_world.dataroot, None, override), "--resume", run / "checkpoint.pt")
    line = error_line(r)
    assert shown in line and "eval_every_epochs" in line  # names the key and the keys that may change
    assert snapshot(run) == before  # config.yaml, checkpoint and log untouched


def test_resume_goes_on_in_the_checkpoint_folder_with_a_safe_change(
    smoke_world, finished_run, half_run, tmp_path
):
    run = shutil.copytree(half_run, tmp_path / "run")
    r = cli(*train_args(smoke_world.dataroot, None, "eval_every_epochs=1"), "--resume", run / "checkpoint.pt")
    assert r.exit_code == 0, r.output
    assert f"run directory: {run}" in r.output
    blob = torch.load(run / "checkpoint.pt", weights_only=False)
    assert blob["step"] == 4 and blob["epoch"] == 2 and blob["config"]["eval_every_epochs"] == 1
    assert "eval_every_epochs: 1" in (run / "config.yaml").read_text()
    done = torch.load(finished_run / "checkpoint.pt", weights_only=False)  # the uninterrupted run
    for k, v in done["model"].items():
        torch.testing.assert_close(blob["model"][k], v, rtol=1e-4, atol=1e-5)


def test_resume_after_a_kill_logs_each_step_once(smoke_world, half_run, tmp_path):
    run = shutil.copytree(half_run, tmp_path / "run")
    assert _steps(run) == [1, 2]
    with open(run / "log.jsonl", "a") as f:  # what the killed process logged after its checkpoint
        f.write(json.dumps({"step": 3, "time": 9.0, "epoch": 1, "loss/total": 1.0}) + "\n")
        f.write('{"step": 4, "time": 9.5, "ep')  # cut short by the kill
    r = cli(*train_args(smoke_world.dataroot, None), "--resume", run / "checkpoint.pt")
    assert r.exit_code == 0, r.output
    assert _steps(run) == [1, 2, 3, 4]
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]  # all rows parse
    assert rows[-1]["step"] == 4 and "val/mAP" in rows[-1]


def test_resume_of_a_finished_run_trains_nothing(smoke_world, finished_run, tmp_path):
    run = shutil.copytree(finished_run, tmp_path / "run")
    before = snapshot(run)
    r = cli(*train_args(smoke_world.dataroot, None), "--resume", run / "checkpoint.pt")
    assert r.exit_code == 0, r.output
    assert "the run is finished (epoch 2 of 2, step 4); nothing to train" in r.output
    assert "step 1/" not in r.output
    assert snapshot(run) == before
