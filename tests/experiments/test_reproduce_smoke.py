"""One real cell end to end: a 1-step BEVDet baseline on the smoke world through ``distillbev reproduce``,
then the same plan again (the finished run is skipped, not retrained)."""

from __future__ import annotations

import json

from smoke_sizes import STUDENT_SMOKE
from typer.testing import CliRunner

from distillbev.cli import app

# The smoke-size student (configs/scale/smoke.yaml), one step of 2 samples, 2 val samples.
SMOKE = [
    "optim.epochs=1",
    "optim.batch_size=2",
    "data.max_train_samples=2",
    "data.max_val_samples=2",
    "log_every_steps=1",
    *STUDENT_SMOKE,
]


def test_one_smoke_cell_end_to_end(smoke_world, tmp_path):
    out = tmp_path / "plan"
    args = ["reproduce", "--out", str(out), "--students", "bevdet", "--cells", "bevdet-none", "--seeds", "1"]
    args += ["--dataroot", str(smoke_world.dataroot), "--in-process"]
    for s in SMOKE:
        args += ["--set", s]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "trained 1, already finished 0" in first.output
    run = out / "bevdet-none" / "seed0"
    assert (run / "checkpoint.pt").is_file() and (run / "eval_epoch1" / "metrics.json").is_file()
    doc = json.loads((out / "results.json").read_text())
    stats = doc["cells"]["bevdet-none"]["stats"]
    assert stats["mAP"]["n"] == 1 and stats["mAP"]["std"] is None
    assert "| bevdet | none | 1 |" in (out / "results.md").read_text()

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "trained 0, already finished 1" in again.output
