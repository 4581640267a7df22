"""End-to-end training on the smoke world: teacher, student, distillation, checkpoints, resume."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from smoke_sizes import STUDENT_SMOKE, TEACHER_SMOKE

from distillbev.config import load_config
from distillbev.models import build_model
from distillbev.train.checkpoint import load_model, load_state_strict, read_checkpoint
from distillbev.train.config import RunConfig
from distillbev.train.loop import train
from distillbev.train.run import build_distillation, run_training

ROOT = Path(__file__).resolve().parents[2]
SMOKE = [
    "optim.epochs=1",
    "optim.batch_size=2",
    "data.max_train_samples=4",
    "data.max_val_samples=2",
    "log_every_steps=1",
]


def _world(smoke_world) -> list[str]:
    return [f"data.dataroot={smoke_world.dataroot}"]


@pytest.fixture(scope="module")
def teacher_ckpt(smoke_world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    run_training(
        [ROOT / "configs/teacher/centerpoint_pillar.yaml"],
        out,
        [*_world(smoke_world), *SMOKE, *TEACHER_SMOKE],
    )
    return out / "checkpoint.pt"


def test_teacher_checkpoint_says_what_it_is(teacher_ckpt):
    blob = read_checkpoint(teacher_ckpt)
    assert blob["kind"] == "centerpoint" and blob["step"] == 2 and len(blob["config_hash"]) == 12
    assert "mAP" in blob["metrics"]
    model, cfg, _ = load_model(teacher_ckpt, expected_kind="centerpoint")
    assert cfg.teacher.pillar_size == 3.2
    with pytest.raises(ValueError, match="expected 'bevdet'"):
        load_model(teacher_ckpt, expected_kind="bevdet")


def test_overrides_reach_the_model_a_checkpoint_builds(smoke_world, teacher_ckpt):
    from distillbev.data.collate import collate
    from distillbev.train.data import make_dataset

    _, cfg, _ = load_model(teacher_ckpt)
    batch = collate([make_dataset(cfg, train=False)[0]])
    loose = ["teacher.head.score_threshold=0.0"]  # every candidate passes: only the cap limits the count
    counts = {}
    for cap in (83, 3):
        model, cfg, _ = load_model(teacher_ckpt, overrides=[*loose, f"teacher.head.max_per_task={cap}"])
        assert cfg.teacher.head.max_per_task == cap and model.head.cfg.max_per_task == cap
        with torch.no_grad():
            counts[cap] = len(model.eval().predict(batch)[0].boxes)
    assert counts[3] == 3 and counts[83] > 3
    with pytest.raises(ValueError, match="pfn"):  # a shape change fails the strict load, naming the layer
        load_model(teacher_ckpt, overrides=["teacher.pfn_channels=8"])


def test_wrong_checkpoint_is_refused(teacher_ckpt, tmp_path):
    cfg = load_config(RunConfig, [ROOT / "configs/student/bevdet.yaml"], STUDENT_SMOKE)
    student = build_model(cfg)
    with pytest.raises(ValueError, match="missing keys"):
        load_state_strict(student, read_checkpoint(teacher_ckpt)["model"], "teacher weights")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        read_checkpoint(bad)


@pytest.mark.parametrize("head_tap", ["H", "HS"])
def test_distillation_trains_student_and_adapters_not_teacher(smoke_world, teacher_ckpt, tmp_path, head_tap):
    files = [ROOT / "configs/student/bevdepth.yaml", ROOT / "configs/distill/full.yaml"]
    layers = [f"distill.layers=[B1,B2,{head_tap}]", f"distill.fp_layers=[{head_tap}]"]
    cfg = load_config(RunConfig, files, [*_world(smoke_world), *SMOKE, *STUDENT_SMOKE, *layers])
    teacher, t_cfg, _ = load_model(teacher_ckpt)
    cfg = replace(
        cfg, data=replace(cfg.data, reader=replace(cfg.data.reader, num_sweeps=t_cfg.data.reader.num_sweeps))
    )
    student = build_model(cfg)
    dl = build_distillation(cfg, student, teacher)
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    s_before = {k: v.clone() for k, v in student.state_dict().items()}
    a_before = {k: v.clone() for k, v in dl.state_dict().items()}
    train(cfg, tmp_path, student, teacher, dl)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in t_before.items())  # frozen, BN stats too
    assert any(not torch.equal(v, student.state_dict()[k]) for k, v in s_before.items())
    assert any(not torch.equal(v, dl.state_dict()[k]) for k, v in a_before.items())
    log = (tmp_path / "log.jsonl").read_text()
    assert f'"loss/kd_fg_{head_tap}"' in log and f'"loss/kd_fp_{head_tap}"' in log and "kd_bg_B1" in log
    # The distilled checkpoint loads into the plain student (adapters are stored apart).
    plain = build_model(replace(cfg, distill=type(cfg.distill)()))
    load_state_strict(plain, read_checkpoint(tmp_path / "checkpoint.pt")["model"], "distilled checkpoint")
    # `distillbev viz masks` on the two checkpoints: one picture with every distilled layer.
    from distillbev.viz.features import render_masks

    (png,) = render_masks(teacher_ckpt, tmp_path / "checkpoint.pt", tmp_path / "viz", 0, None)
    assert png.stat().st_size > 5000


def test_imitation_as_warm_start_stops_running_the_teacher(smoke_world, teacher_ckpt, tmp_path):
    import json

    files = [ROOT / "configs/student/bevdepth.yaml", ROOT / "configs/distill/full.yaml"]
    # 4 samples, batch 2, 2 epochs: 4 optimiser steps; imitation for the first 2.
    over = [*_world(smoke_world), *SMOKE, *STUDENT_SMOKE, "optim.epochs=2", "distill.stop_step=2"]
    cfg = load_config(RunConfig, files, over)
    teacher, t_cfg, _ = load_model(teacher_ckpt)
    cfg = replace(
        cfg, data=replace(cfg.data, reader=replace(cfg.data.reader, num_sweeps=t_cfg.data.reader.num_sweeps))
    )
    student = build_model(cfg)
    dl = build_distillation(cfg, student, teacher)
    calls = []
    forward_bev = teacher.forward_bev
    teacher.forward_bev = lambda batch: calls.append(1) or forward_bev(batch)
    train(cfg, tmp_path, student, teacher, dl)
    assert len(calls) == 2  # one teacher forward per imitated batch, none after stop_step
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    rows = {r["step"]: r for r in rows if "loss/total" in r}
    assert sorted(rows) == [1, 2, 3, 4]
    for step in (1, 2):
        assert rows[step]["loss/kd_fg_B1"] > 0 and "loss/kd_stopped" not in rows[step]
    for step in (3, 4):
        assert rows[step]["loss/kd_stopped"] == 0.0
        assert not any(k.startswith("loss/kd_fg") for k in rows[step])


def test_resume_reproduces_uninterrupted_run(smoke_world, tmp_path):
    over = [
        *_world(smoke_world),
        "optim.epochs=2",
        "optim.batch_size=2",
        "data.max_train_samples=4",
        "log_every_steps=1",
        *TEACHER_SMOKE,
    ]
    cfg = load_config(RunConfig, [ROOT / "configs/teacher/centerpoint_pillar.yaml"], over)
    torch.manual_seed(0)
    full = build_model(cfg)
    train(cfg, tmp_path / "full", full)
    torch.manual_seed(0)
    first = build_model(cfg)
    train(cfg, tmp_path / "half", first, stop_after_epochs=1)
    # Resume from the one-epoch checkpoint and finish the second epoch.
    torch.manual_seed(123)
    resumed = build_model(cfg)
    train(cfg, tmp_path / "half", resumed, resume=tmp_path / "half" / "checkpoint.pt")
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=1e-4, atol=1e-5)


def test_eval_scores_the_whole_split_and_refuses_data_overrides(
    smoke_world, teacher_ckpt, tmp_path, monkeypatch
):
    """`distillbev eval --checkpoint` runs every sample of the split, whatever data.max_val_samples the
    run trained with (2 here); --set of a key the command sets itself is an error naming its option."""
    import distillbev.train.run as run_module
    from distillbev.workflows import score_checkpoint

    seen = {}

    def fake_evaluate(model, cfg, out_dir, max_samples=None):
        seen["data"] = cfg.data
        return {"mAP": 0.0}

    monkeypatch.setattr(run_module, "evaluate_model", fake_evaluate)
    assert load_model(teacher_ckpt)[1].data.max_val_samples == 2
    score_checkpoint(teacher_ckpt, smoke_world.dataroot, "", "", None, [], tmp_path / "eval")
    assert seen["data"].max_val_samples == 0 and seen["data"].dataroot == str(smoke_world.dataroot)
    for key, option in (
        ("data.val_split", "--split"),
        ("data.dataroot", "--dataroot"),
        ("data.max_val_samples", "whole"),
    ):
        with pytest.raises(ValueError, match=option):
            score_checkpoint(teacher_ckpt, smoke_world.dataroot, "", "", None, [f"{key}=1"], tmp_path / "e2")
        assert not (tmp_path / "e2").exists()  # refused before anything is written
