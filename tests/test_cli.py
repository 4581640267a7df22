"""The command line: --help everywhere, and bad input gives a non-zero exit naming the problem."""

import json

import pytest
from typer.testing import CliRunner

from distillbev.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "cmd",
    [
        [],
        ["make-data"],
        ["eval"],
        ["train"],
        ["distill"],
        ["viz"],
        ["viz", "sample"],
        ["viz", "masks"],
        ["demo"],
    ],
)
def test_help(cmd):
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_make_data_dry_run_and_bad_key(tmp_path):
    ok = runner.invoke(app, ["make-data", "--preset", "smoke", "--out", str(tmp_path / "w"), "--dry-run"])
    assert ok.exit_code == 0 and "samples_per_scene: 4" in ok.output
    assert not (tmp_path / "w").exists()
    bad = runner.invoke(
        app, ["make-data", "--preset", "smoke", "--out", str(tmp_path / "w"), "--set", "num_scene=3"]
    )
    assert bad.exit_code == 2 and "num_scene" in bad.output and "num_scenes" in bad.output
    missing = runner.invoke(app, ["make-data", "--preset", "huge", "--out", str(tmp_path / "w")])
    assert missing.exit_code == 2 and "huge" in missing.output


def test_make_data_refuses_non_empty(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "x").write_text("keep")
    r = runner.invoke(app, ["make-data", "--preset", "smoke", "--out", str(tmp_path / "w")])
    assert r.exit_code == 2 and "not empty" in r.output


def test_eval_scores_gt_and_rejects_unknown_class(smoke_world, tmp_path):
    from distillbev.eval.fake_predictions import gt_predictions
    from distillbev.eval.nuscenes_eval import load_nuscenes
    from distillbev.eval.results import write_results

    nusc = load_nuscenes(smoke_world.dataroot, smoke_world.version)
    results = gt_predictions(nusc, smoke_world.val_split)
    write_results(results, tmp_path / "gt.json")
    r = runner.invoke(
        app,
        [
            "eval",
            "--dataroot",
            str(smoke_world.dataroot),
            "--results",
            str(tmp_path / "gt.json"),
            "--out",
            str(tmp_path / "m.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["mAP"] == pytest.approx(1.0) and metrics["NDS"] == pytest.approx(1.0)
    token = next(t for t, boxes in results["results"].items() if boxes)
    results["results"][token][0]["detection_name"] = "spaceship"
    (tmp_path / "bad.json").write_text(json.dumps(results))
    r = runner.invoke(
        app, ["eval", "--dataroot", str(smoke_world.dataroot), "--results", str(tmp_path / "bad.json")]
    )
    assert r.exit_code == 2 and "spaceship" in r.output


def test_eval_on_non_nuscenes_folder(tmp_path):
    r = runner.invoke(app, ["eval", "--dataroot", str(tmp_path), "--results", str(tmp_path / "r.json")])
    assert r.exit_code == 2 and "nuScenes" in r.output


def test_train_unknown_key_names_file(tmp_path):
    r = runner.invoke(
        app, ["train", "configs/teacher/centerpoint_pillar.yaml", "--set", "optim.epoch=3", "--dry-run"]
    )
    assert r.exit_code == 2 and "'epoch'" in r.output and "'epochs'" in r.output


def test_every_preset_loads():
    from pathlib import Path

    from distillbev.config import load_config
    from distillbev.data.synthetic.config import WorldConfig
    from distillbev.train.config import RunConfig

    root = Path(__file__).resolve().parent.parent / "configs"
    for f in sorted((root / "data").glob("*.yaml")):
        load_config(WorldConfig, [f])
    runs = sorted((root / "teacher").glob("*.yaml")) + sorted((root / "student").glob("*.yaml"))
    assert len(runs) >= 10
    for f in runs:
        load_config(RunConfig, [f])
    for f in sorted((root / "distill").glob("*.yaml")):
        load_config(RunConfig, [root / "student" / "bevdepth.yaml", f])


def test_viz_sample_writes_pictures(smoke_world, tmp_path):
    r = runner.invoke(
        app,
        ["viz", "sample", "--dataroot", str(smoke_world.dataroot), "--out", str(tmp_path), "--index", "1"],
    )
    assert r.exit_code == 0, r.output
    for name in ("cameras_0001.png", "bev_0001.png"):
        assert (tmp_path / name).stat().st_size > 1000
    r = runner.invoke(
        app,
        ["viz", "sample", "--dataroot", str(smoke_world.dataroot), "--out", str(tmp_path), "--index", "99"],
    )
    assert r.exit_code == 2 and "outside split" in r.output
