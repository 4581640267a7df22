"""``distillbev report``: run discovery, the loss curves' series, and the page itself — parsed as HTML,
every image it references must exist and decode (smoke runs of 1 step in the demo layout)."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from distillbev.cli import app
from distillbev.experiments.stats import build_results
from distillbev.train.run import run_training
from distillbev.viz.report import build_report, find_report_inputs
from distillbev.viz.report_figures import loss_series

ROOT = Path(__file__).resolve().parents[2]
COMMON = ["optim.epochs=1", "optim.batch_size=2", "data.max_train_samples=2", "data.max_val_samples=2"]
COMMON += ["log_every_steps=1"]
TEACHER = ["teacher.pillar_size=3.2", "teacher.fpn_stride=1", "teacher.backbone_strides=[1, 2, 2]"]
TEACHER += [
    "teacher.pfn_channels=16",
    "teacher.backbone_channels=[8, 16, 32]",
    "teacher.fpn_channels=[16, 16, 16]",
]
TEACHER += ["teacher.head.share_channels=16", "teacher.head.head_channels=16"]
STUDENT = ["student.image_size=[32, 96]", "data.reader.image.final_size=[32, 96]", "student.bev_cell=3.2"]
STUDENT += ["student.depth_bins=[1.0, 61.0, 7.5]", "student.context_channels=8", "student.image_pretrained="]
STUDENT += [
    "student.tiny_widths=[8, 8, 16, 16]",
    "student.tiny_blocks=[1, 1, 1, 1]",
    "student.tiny_stem_width=8",
]
STUDENT += ["student.neck_channels=16", "student.bev_channels=[8, 16, 32]", "student.fpn_channels=16"]
STUDENT += [
    "student.fpn_mid_channels=16",
    "student.depthnet_mid_channels=8",
    "student.head.share_channels=16",
]
STUDENT += ["student.head.head_channels=16"]


class _Images(HTMLParser):
    """The ``src`` of every ``<img>`` and the text of every ``<h2>``."""

    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.h2: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):
        self._in_h2 = self._in_h2 and tag != "h2"

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data)


def check_page(page: Path) -> _Images:
    """Parse ``page``; every image must exist and decode (embedded data URIs or files beside the page)."""
    parser = _Images()
    parser.feed(page.read_text())
    for src in parser.srcs:
        if src.startswith("data:"):
            head, data = src.split(",", 1)
            assert head == "data:image/png;base64", head
            raw = base64.b64decode(data, validate=True)
        else:
            path = page.parent / src
            assert path.is_file(), f"{page} references a missing image {src}"
            raw = path.read_bytes()
        img = Image.open(io.BytesIO(raw))
        img.load()  # decodes every pixel
        assert img.width > 100 and img.height > 100
    return parser


@pytest.fixture(scope="module")
def demo_runs(smoke_world, tmp_path_factory) -> Path:
    """teacher/, student/ and distilled/ as the demo lays them out: 1-step smoke runs."""
    work = tmp_path_factory.mktemp("demo")
    common = [f"data.dataroot={smoke_world.dataroot}", *COMMON]
    run_training([ROOT / "configs/teacher/centerpoint_pillar.yaml"], work / "teacher", [*common, *TEACHER])
    student = [ROOT / "configs/student/bevdepth.yaml"]
    run_training(student, work / "student", [*common, *STUDENT])
    distill = [*student, ROOT / "configs/distill/full.yaml"]
    run_training(distill, work / "distilled", [*common, *STUDENT], teacher=work / "teacher" / "checkpoint.pt")
    return work


def test_report_of_the_demo_layout_shows_every_picture(demo_runs, tmp_path):
    page = tmp_path / "report.html"
    r = CliRunner().invoke(app, ["report", str(demo_runs), "--out", str(page), "--samples", "2"])
    assert r.exit_code == 0, r.output
    parsed = check_page(page)
    assert [h.strip() for h in parsed.h2] == [
        "Metrics",
        "Training curves",
        "Bird's-eye view: ground truth vs detections",
        "Distillation masks, scale and attention per layer",
        "AP per class",
        "AP by distance",
    ]
    assert len(parsed.srcs) == 1 + 2 + 1 + 1 + 1  # curves, 2 BEV samples, masks, per class, per distance
    text = page.read_text()
    assert 'class="missing"' not in text
    assert "bevdepth + CenterPoint" in text and "gain (distilled − baseline)" in text


def test_runs_are_found_and_classified(demo_runs, tmp_path):
    inputs = find_report_inputs(demo_runs)
    roles = {r.path.name: r.role for r in inputs.runs}
    assert roles == {"teacher": "teacher", "student": "baseline", "distilled": "distilled"}
    assert inputs.baseline.path.name == "student" and inputs.distilled.path.name == "distilled"
    assert inputs.teacher_ckpt == demo_runs / "teacher" / "checkpoint.pt"
    assert (
        inputs.distilled.label == "bevdepth + CenterPoint" and inputs.baseline.label == "bevdepth (baseline)"
    )
    # A student that reads virtual points was distilled from MVP.
    mvp = tmp_path / "mvp_distilled"
    shutil.copytree(demo_runs / "distilled", mvp)
    cfg = yaml.safe_load((mvp / "config.yaml").read_text())
    cfg["data"]["reader"]["virtual_points"] = True
    (mvp / "config.yaml").write_text(yaml.safe_dump(cfg))
    inputs = find_report_inputs(demo_runs, distilled=mvp)
    assert inputs.distilled.path == mvp and inputs.distilled.teacher_kind == "mvp"
    with pytest.raises(FileNotFoundError, match="no student run folder"):
        find_report_inputs(demo_runs / "teacher")


def test_a_teacher_known_only_from_the_demo_record(demo_runs, tmp_path):
    """The demo may use a shipped teacher: no teacher run folder, a teacher/stage.json naming it."""
    work = tmp_path / "demo"
    for name in ("student", "distilled"):
        shutil.copytree(demo_runs / name, work / name / "run")
    (work / "teacher").mkdir()
    ckpt = demo_runs / "teacher" / "checkpoint.pt"
    record = {"key": "x", "checkpoint": str(ckpt), "metrics": {"mAP": 0.642, "NDS": 0.557}}
    (work / "teacher" / "stage.json").write_text(json.dumps(record))
    inputs = find_report_inputs(work)
    assert inputs.teacher is None and inputs.teacher_ckpt == ckpt
    assert inputs.distilled.path == work / "distilled" / "run"
    page = build_report(inputs, tmp_path / "r.html", samples=1)
    assert len(check_page(page).srcs) == 1 + 1 + 1 + 1 + 1
    assert "<td>0.642</td><td>0.557</td>" in page.read_text()


def test_loss_series_split_detection_and_distillation_terms():
    rows = [
        {
            "step": 1,
            "loss/heatmap": 1.0,
            "loss/box": 2.0,
            "loss/kd_fg_H": 0.5,
            "loss/kd_bg_B1": 0.25,
            "loss/kd_att_H": 0.125,
            "loss/total": 3.875,
            "lr": 1e-3,
        },
        {"step": 2, "val/mAP": 0.1},  # an evaluation row has no loss
    ]
    s = loss_series(rows)
    assert list(s["detection"][0]) == [1] and list(s["detection"][1]) == [3.0]
    assert list(s["distillation"][1]) == [0.875]
    assert list(s["kd H"][1]) == [0.625] and list(s["kd B1"][1]) == [0.25]


def test_report_of_a_plan_folder_without_checkpoints_or_data(demo_runs, tmp_path):
    """A reproduce plan copied from another machine: runs without checkpoints, a dataroot not here."""
    plan = tmp_path / "plan"
    for cell, src in (("bevdepth-none", "student"), ("bevdepth-centerpoint", "distilled")):
        run = plan / cell / "seed0"
        run.mkdir(parents=True)
        for name in ("config.yaml", "log.jsonl"):
            shutil.copy(demo_runs / src / name, run / name)
        shutil.copytree(demo_runs / src / "eval_epoch1", run / "eval_epoch1")
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["data"]["dataroot"] = str(tmp_path / "elsewhere")
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    cells = [
        {
            "name": "bevdepth-none",
            "student": "bevdepth",
            "teacher": None,
            "distill": None,
            "groups": ["grid"],
        },
        {
            "name": "bevdepth-centerpoint",
            "student": "bevdepth",
            "teacher": "centerpoint",
            "distill": "full",
            "groups": ["grid"],
        },
    ]
    table = {
        "key": "grid",
        "title": "Every teacher with every student",
        "order": [],
        "rows": [["none", "bevdepth-none"], ["CenterPoint", "bevdepth-centerpoint"]],
    }
    metrics = {
        c: {0: json.loads((plan / c / "seed0/eval_epoch1/metrics.json").read_text())}
        for c in ("bevdepth-none", "bevdepth-centerpoint")
    }
    doc = build_results({"scale": "tiny", "overrides": [], "cells": cells, "tables": [table]}, metrics, {})
    (plan / "results.json").write_text(json.dumps(doc))
    (plan / "plan.json").write_text(json.dumps({"cells": cells, "teachers": {}}))
    inputs = find_report_inputs(plan)
    assert inputs.distilled.teacher_kind == "centerpoint" and inputs.teacher_ckpt is None
    page = build_report(inputs, tmp_path / "plan.html", samples=2)
    parsed = check_page(page)
    text = page.read_text()
    assert "Reproduction plan: mean ± std over seeds" in "".join(parsed.h2)
    assert "no distilled run with a checkpoint" in text
    assert "is not on this machine" in text
    assert len(parsed.srcs) == 3  # curves, per class, per distance
