"""``distillbev export``: every camera student -> ONNX (fixed cameras) -> onnxruntime matches PyTorch.

Smoke-size students with random weights, a checkpoint written as training writes it (distilled: the
adapters stored beside the student), exported through the CLI with the cameras of val sample 1 (for the
4D students a sample with a previous frame, so the ego-motion warp is exercised).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from distillbev.cli import app
from distillbev.config import load_config
from distillbev.data.collate import collate
from distillbev.export import OnnxStudent, example_inputs, read_metadata
from distillbev.models import build_model
from distillbev.models.temporal import prev_to_current
from distillbev.train.checkpoint import save_checkpoint
from distillbev.train.config import RunConfig
from distillbev.train.data import make_dataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "train"))  # the smoke-size overrides of the training tests
from test_training import STUDENT_SMOKE, TEACHER_SMOKE  # noqa: E402

INDEX = 1  # val sample whose cameras are fixed (it has a previous key frame)


def cli(*args: object):
    """``distillbev *args`` in-process."""
    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    """The one ``error:`` line of a failed command (exit code 2)."""
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("error:")]
    return line


def _checkpoint(cfg: RunConfig, path: Path, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(cfg)
    extra = {} if cfg.is_teacher else {"distill": nn.Conv2d(16, 16, 1)}  # stands for the adapters
    save_checkpoint(path, model, cfg, step=0, epoch=0, extra_modules=extra)
    return model.eval()


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("bevdet", ()),
        ("bevdepth", ()),
        ("bevdet4d", ()),
        ("bevdepth4d", ()),
        ("bevdepth", ("student.image_heading_weight=1.0",)),  # the heading map's fixed rays and signs
    ],
)
def test_onnx_matches_pytorch(name, extra, smoke_world, tmp_path):
    # The untrained model's heatmap is nearly flat: far down the presets' 500 boxes (past ~380 here) its
    # scores tie within the export's 1e-4 tolerance, so which tail boxes survive NMS is not defined;
    # the boxes are compared at CenterPoint's 83 (the maps themselves are compared in full below).
    over = [f"data.dataroot={smoke_world.dataroot}", *STUDENT_SMOKE, "student.head.max_per_task=83", *extra]
    cfg = load_config(RunConfig, [ROOT / f"configs/student/{name}.yaml"], over)
    model = _checkpoint(cfg, tmp_path / "checkpoint.pt")
    out = tmp_path / "student.onnx"
    r = cli("export", tmp_path / "checkpoint.pt", "--out", out, "--index", INDEX)
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.output and not list(tmp_path.glob(".student.onnx*"))

    batch = collate([make_dataset(cfg, train=False)[INDEX]])
    motion = prev_to_current(batch.cam2lidar, batch.prev_cam2lidar) if cfg.student.temporal else None
    if motion is not None:
        assert not torch.allclose(motion, torch.eye(4), atol=1e-2)  # the warp moves the previous BEV
    onnx_student = OnnxStudent(out, threads=1)
    inputs = example_inputs(model, batch.images, batch.prev_images, motion)
    assert onnx_student.input_names == (
        ["images", "prev_images", "prev_to_current"] if cfg.student.temporal else ["images"]
    )
    with torch.no_grad():
        _, expected = model(batch)
    got = onnx_student.raw(*inputs)
    for t, (e, g) in enumerate(zip(expected, got, strict=True)):
        assert e.keys() == g.keys()
        for branch in e:
            torch.testing.assert_close(g[branch], e[branch], rtol=1e-4, atol=1e-4, msg=f"task{t}.{branch}")
    # Decoding the ONNX maps in Python gives PyTorch's boxes.
    (want,), (have,) = model.predict(batch), onnx_student.predict(*inputs)
    assert len(want.boxes) > 0 and torch.equal(have.labels, want.labels)
    torch.testing.assert_close(have.boxes, want.boxes, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(have.scores, want.scores, rtol=1e-4, atol=1e-4)

    meta = read_metadata(out)
    cams = meta["cameras"]
    assert meta["kind"] == name and cams["index"] == INDEX and cams["sample_token"] == batch.sample_tokens[0]
    torch.testing.assert_close(torch.tensor(cams["cam2lidar"]), batch.cam2lidar[0])
    torch.testing.assert_close(torch.tensor(cams["intrinsics"]), batch.intrinsics[0])
    assert meta["config"]["student"]["kind"] == cfg.student.kind


def test_export_refuses_a_teacher_and_a_missing_sample(smoke_world, tmp_path):
    world = [f"data.dataroot={smoke_world.dataroot}"]
    teacher = load_config(
        RunConfig, [ROOT / "configs/teacher/centerpoint_pillar.yaml"], world + TEACHER_SMOKE
    )
    _checkpoint(teacher, tmp_path / "teacher.pt")
    line = error_line(cli("export", tmp_path / "teacher.pt", "--out", tmp_path / "t.onnx"))
    assert "LiDAR teacher" in line and "teacher.pt" in line
    student = load_config(RunConfig, [ROOT / "configs/student/bevdet.yaml"], world + STUDENT_SMOKE)
    _checkpoint(student, tmp_path / "student.pt")
    line = error_line(cli("export", tmp_path / "student.pt", "--out", tmp_path / "s.onnx", "--index", 99))
    assert "--index 99" in line
    assert not list(tmp_path.glob("*.onnx"))
