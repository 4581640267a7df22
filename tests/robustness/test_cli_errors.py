"""Parts 1 and 4 of issue 17: runs that would train nothing, and values that crashed with a traceback,
are refused with one line naming the key or value (exit code 2) before any output is written."""

from __future__ import annotations

import json

import pytest
from robust_helpers import cli, error_line, train_args


@pytest.mark.parametrize("command", ["train", "make-data"])
def test_unwritable_output_is_one_line(smoke_world, unwritable_dir, command):
    out = unwritable_dir / "new" / "out"
    if command == "train":
        r = cli(*train_args(smoke_world.dataroot, out))
    else:
        r = cli("make-data", "--preset", "smoke", "--out", out)
    assert f"cannot write {out}: {unwritable_dir} is not writable" in error_line(r)
    assert not (unwritable_dir / "new").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.epochs=0", "epochs must be >= 1, got 0"),
        ("optim.batch_size=64", "0 optimizer steps per epoch"),  # 64 > the 4 training samples
        ("data.max_train_samples=-2", "max_train_samples must be >= 0, got -2"),
    ],
)
def test_run_that_would_train_nothing_is_refused_before_output(smoke_world, tmp_path, override, message):
    r = cli(*train_args(smoke_world.dataroot, tmp_path / "run", override))
    assert message in error_line(r)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.accumulate=0", "accumulate must be >= 1, got 0"),  # was a ZeroDivisionError
        ("threads=-1", "threads must be >= 0, got -1"),  # was torch's RuntimeError
        ("log_every_steps=0", "log_every_steps must be >= 1, got 0"),  # was a ZeroDivisionError
        ("seed=-1", "seed must be >= 0, got -1"),  # numpy seeds are non-negative
    ],
)
def test_bad_run_value_is_refused_before_output(smoke_world, tmp_path, override, message):
    assert message in error_line(cli(*train_args(smoke_world.dataroot, tmp_path / "run", override)))
    assert not (tmp_path / "run").exists()


def test_make_data_negative_seed(tmp_path):
    line = error_line(cli("make-data", "--preset", "smoke", "--out", tmp_path / "w", "--seed", "-1"))
    assert "seed must be >= 0" in line and "-1" in line
    assert not (tmp_path / "w").exists()


def test_nan_stop_is_one_line_with_the_logged_step(smoke_world, tmp_path, monkeypatch):
    import distillbev.models

    build = distillbev.models.build_model

    def nan_on_second_step(cfg):
        model = build(cfg)
        loss, calls = model.loss, []

        def patched(*args):
            calls.append(1)
            out = loss(*args)
            return {k: v * float("nan") for k, v in out.items()} if len(calls) == 2 else out

        model.loss = patched
        return model

    monkeypatch.setattr(distillbev.models, "build_model", nan_on_second_step)
    line = error_line(cli(*train_args(smoke_world.dataroot, tmp_path / "run")))
    assert "non-finite loss at step 2 (epoch 0, batch 1" in line
    logged = [json.loads(row)["step"] for row in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert logged == [1]  # step 1 was logged; the NaN hit the next one, step 2


def test_set_float_in_exponent_notation(smoke_world):
    from robust_helpers import TEACHER

    from distillbev.config import load_config
    from distillbev.train.config import RunConfig

    r = cli(*train_args(smoke_world.dataroot, None, "optim.lr=1e-3"), "--dry-run")
    assert r.exit_code == 0, r.output
    assert "lr: 0.001" in r.output
    assert load_config(RunConfig, TEACHER, ["optim.lr=2E-4"]).optim.lr == pytest.approx(2e-4)
    assert "expected a number" in error_line(cli(*train_args(smoke_world.dataroot, None, "optim.lr=fast")))


def test_eval_to_an_unwritable_out_fails_before_scoring(smoke_world, tmp_path, unwritable_dir, monkeypatch):
    import distillbev.eval.nuscenes_eval as nuscenes_eval
    from distillbev.eval.fake_predictions import gt_predictions
    from distillbev.eval.results import write_results

    write_results(
        gt_predictions(
            nuscenes_eval.load_nuscenes(smoke_world.dataroot, smoke_world.version), smoke_world.val_split
        ),
        tmp_path / "gt.json",
    )

    def no_scoring(*args, **kwargs):
        raise AssertionError("scored before checking the output")

    monkeypatch.setattr(nuscenes_eval, "evaluate", no_scoring)
    out = unwritable_dir / "metrics.json"
    r = cli("eval", "--dataroot", smoke_world.dataroot, "--results", tmp_path / "gt.json", "--out", out)
    assert f"cannot write {out}" in error_line(r)
    assert not (tmp_path / "gt_eval").exists()
