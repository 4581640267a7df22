"""The runs a ``distillbev report`` page compares, found under a folder (``find_report_inputs``).

The folder is the demo workdir (``teacher/``, ``student/``, ``distilled/``) or a ``distillbev reproduce``
plan (``<cell>/seed<k>/`` plus ``plan.json`` and ``results.json``). A run folder is any folder with a
``config.yaml``; a teacher run has ``model: centerpoint|mvp``; a student run is distilled when its
``log.jsonl`` has ``loss/kd_*`` terms (the teacher checkpoint itself is not in the config: it comes from
``plan.json``, a teacher run folder beside the students, or ``--teacher``).
"""

from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from distillbev.config import read_yaml
from distillbev.paths import ROOT
from distillbev.train.logging import read_log

LOWER_IS_BETTER = ("mATE", "mASE", "mAOE", "mAVE", "mAAE")


@dataclass
class RunInfo:
    """A run folder as the report sees it."""

    path: Path
    role: str  # teacher | baseline | distilled
    config: dict[str, Any]
    log: list[dict[str, Any]]
    eval_dir: Path | None  # the last eval_epochN with a metrics.json
    # distilled: the teacher's model (mvp when the student's reader adds virtual points)
    teacher_kind: str | None = None
    teacher_ckpt: Path | None = None  # distilled: the teacher checkpoint, when known

    @property
    def model(self) -> str:
        """``centerpoint``, ``mvp``, ``bevdet``, ``bevdepth4d``, ..."""
        if self.config.get("model") in ("centerpoint", "mvp"):
            return self.config["model"]
        s = self.config.get("student", {})
        return s.get("kind", "student") + ("4d" if s.get("temporal") else "")

    @property
    def label(self) -> str:
        """E.g. ``bevdepth (baseline)``, ``bevdepth + CenterPoint``, ``centerpoint (teacher)``."""
        seed = (
            f", {self.path.name}"
            if self.path.name[4:].isdigit() and self.path.name.startswith("seed")
            else ""
        )
        if self.role == "distilled":
            return f"{self.model} + {_TEACHER_LABEL.get(self.teacher_kind, 'teacher')}{seed}"
        return f"{self.model} ({self.role}{seed})"

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """The last evaluation's metrics ({} when the run has none)."""
        if self.eval_dir is None:
            return {}
        return json.loads((self.eval_dir / "metrics.json").read_text())

    @cached_property
    def predictions(self) -> dict[str, list[dict[str, Any]]]:
        """The last evaluation's detections per sample token (nuScenes result format)."""
        from distillbev.eval.results import load_results

        if self.eval_dir is None:
            return {}
        return load_results(self.eval_dir / "results.json")["results"]

    @property
    def seed(self) -> int:
        """The training seed."""
        return int(self.config.get("seed", 0))


_TEACHER_LABEL = {"centerpoint": "CenterPoint", "mvp": "MVP"}


@dataclass
class ReportInputs:
    """What a report is built from: every run found, the pair compared, the teacher, plan results."""

    root: Path
    runs: list[RunInfo]
    baseline: RunInfo | None
    distilled: RunInfo | None
    teacher: RunInfo | None = None  # a teacher run folder (metrics, results)
    teacher_ckpt: Path | None = None  # for the masks
    teacher_record: dict[str, Any] = field(default_factory=dict)  # the demo's teacher/stage.json
    plan_results: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """What was found, for the console."""
        lines = [f"runs under {self.root}:"]
        lines += [f"  {r.label:28s} {r.path}" + ("" if r.eval_dir else " (no metrics)") for r in self.runs]
        for name, r in (("baseline", self.baseline), ("distilled", self.distilled)):
            lines.append(f"{name}: {r.path if r else '-'}")
        lines.append(f"teacher checkpoint (masks): {self.teacher_ckpt or '-'}")
        return "\n".join(lines + self.notes)


def _last_eval(run: Path) -> Path | None:
    evals = [p for p in run.glob("eval_epoch*") if p.name[10:].isdigit() and (p / "metrics.json").is_file()]
    return max(evals, key=lambda p: int(p.name[10:])) if evals else None


def read_run(path: Path) -> RunInfo | None:
    """A run folder's config, log and last evaluation; None for what is not a training run."""
    path = Path(path)
    if not (path / "config.yaml").is_file() or (path / "image_encoder.pt").is_file():  # pretrain folders
        return None
    cfg = read_yaml(path / "config.yaml")
    log = read_log(path / "log.jsonl")
    if cfg.get("model") in ("centerpoint", "mvp"):
        role = "teacher"
    elif any(k.startswith("loss/kd_") for row in log[:3] for k in row):
        role = "distilled"
    else:
        role = "baseline"
    run = RunInfo(path, role, cfg, log, _last_eval(path))
    if role == "distilled":  # the student reads the teacher's points: virtual points only for MVP
        run.teacher_kind = (
            "mvp" if cfg.get("data", {}).get("reader", {}).get("virtual_points") else "centerpoint"
        )
    return run


def find_runs(root: Path) -> list[RunInfo]:
    """Every run folder under ``root`` (datasets and the insides of run folders are not entered)."""
    found = []
    for here, dirs, files in os.walk(root):
        if "world_config.yaml" in files or any(d.startswith("v1.0-") for d in dirs):
            dirs[:] = []
            continue
        if "config.yaml" in files:
            run = read_run(Path(here))
            if run is not None:
                found.append(run)
            dirs[:] = []
            continue
        dirs.sort()
    return found


def _plan_teachers(root: Path, runs: list[RunInfo]) -> None:
    """Fill in the teacher of each distilled run of a ``reproduce`` plan from its ``plan.json``."""
    path = root / "plan.json"
    if not path.is_file():
        return
    plan = json.loads(path.read_text())
    cells = {c["name"]: c for c in plan.get("cells", [])}
    for r in runs:
        cell = cells.get(r.path.parent.name)
        if r.role == "distilled" and cell and cell.get("teacher"):
            r.teacher_kind = cell["teacher"]
            ckpt = plan.get("teachers", {}).get(cell["teacher"])
            r.teacher_ckpt = Path(ckpt) if ckpt else None


def _pick_pair(runs: list[RunInfo]) -> tuple[RunInfo | None, RunInfo | None]:
    """The distilled run to show (with metrics; the full recipe, i.e. FP region on, first) and the
    baseline of the same student, preferably of the same seed and trained from scratch (a plan's
    grid also has plain students started from a teacher's head, ``inherit_head_from``)."""
    distilled = [r for r in runs if r.role == "distilled" and r.eval_dir]
    baselines = [r for r in runs if r.role == "baseline" and r.eval_dir]

    def score(r: RunInfo) -> tuple:
        d = r.config.get("distill", {})
        same = [b for b in baselines if b.model == r.model]
        return (
            not same,
            not any(b.seed == r.seed for b in same),
            not d.get("use_false_positive_region", False),
            list(d.get("layers", [])) != ["B1", "B2", "H"],
            r.teacher_kind != "centerpoint",
            r.seed,
            str(r.path),
        )

    dist = min(distilled, key=score) if distilled else None
    if dist is None:
        return (baselines[0] if baselines else None), None
    same = sorted(
        (b for b in baselines if b.model == dist.model),
        key=lambda b: (b.seed != dist.seed, bool(b.config.get("inherit_head_from")), str(b.path)),
    )
    return (same[0] if same else None), dist


def find_report_inputs(
    root: Path, baseline: Path | None = None, distilled: Path | None = None, teacher: Path | None = None
) -> ReportInputs:
    """Find the runs under ``root`` and choose what to compare (``baseline`` / ``distilled`` run
    folders and the ``teacher`` checkpoint override the choice)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"run folder not found: {root}")
    runs = find_runs(root)
    for p in (baseline, distilled):
        if p is not None and all(r.path.resolve() != Path(p).resolve() for r in runs):
            r = read_run(Path(p))
            if r is None:
                raise FileNotFoundError(f"{p} is not a run folder (no config.yaml)")
            runs.append(r)
    if not any(r.role != "teacher" for r in runs):
        raise FileNotFoundError(f"no student run folder (config.yaml of a camera student) under {root}")
    _plan_teachers(root, runs)
    b, d = _pick_pair(runs)
    by_path = {r.path.resolve(): r for r in runs}
    if baseline is not None:
        b = by_path[Path(baseline).resolve()]
    if distilled is not None:
        d = by_path[Path(distilled).resolve()]
    inputs = ReportInputs(root, runs, b, d)
    teachers = [r for r in runs if r.role == "teacher"]
    if d is not None:
        teachers.sort(key=lambda t: (t.model != d.teacher_kind, not (t.path / "checkpoint.pt").is_file()))
    inputs.teacher = teachers[0] if teachers else None
    record = root / "teacher" / "stage.json"  # the demo's record of its (possibly shipped) teacher
    if inputs.teacher is None and record.is_file():
        inputs.teacher_record = json.loads(record.read_text())
    if teacher is not None:
        inputs.teacher_ckpt = Path(teacher)
    elif d is not None and d.teacher_ckpt is not None:
        inputs.teacher_ckpt = d.teacher_ckpt
    elif inputs.teacher is not None and (inputs.teacher.path / "checkpoint.pt").is_file():
        inputs.teacher_ckpt = inputs.teacher.path / "checkpoint.pt"
    elif inputs.teacher_record.get("checkpoint"):
        inputs.teacher_ckpt = Path(inputs.teacher_record["checkpoint"])
    if inputs.teacher_ckpt is not None and not inputs.teacher_ckpt.is_file():
        raise FileNotFoundError(f"teacher checkpoint not found: {inputs.teacher_ckpt}")
    if (root / "results.json").is_file():
        inputs.plan_results = json.loads((root / "results.json").read_text())
    return inputs


def resolve_dataroot(run: RunInfo) -> Path | None:
    """A run's val dataroot: as recorded, or relative to the repository root; None if neither exists."""
    recorded = Path(run.config.get("data", {}).get("dataroot", ""))
    for p in (recorded, ROOT / recorded):
        if str(recorded) and p.is_dir():
            return p
    return None


def img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG embedded as base64."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
