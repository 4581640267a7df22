"""``distillbev demo``: the whole method on the embedded synthetic world, in stages.

world -> official-metric check -> LiDAR teacher -> image pretraining -> baseline student and distilled
student (trained side by side, one core each) -> the paper-style table. The teacher and the image
encoder come from ``checkpoints/`` (shipped, with their provenance) unless ``--from-scratch``. Every
stage records a key of its inputs in ``<stage folder>/stage.json``; a finished stage with the same key
is reused, an interrupted training is resumed, and ``--fresh`` redoes them all.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillbev.config import ConfigError
from distillbev.paths import CHECKPOINTS, CONFIGS, ROOT

STAGES = ("data", "gt-eval", "teacher", "pretrain", "student", "distill")
#: World preset and the extra config files of each model scale.
SCALES: dict[str, tuple[str, list[Path]]] = {
    "tiny": ("small", []),
    "smoke": ("smoke", [CONFIGS / "scale" / "smoke.yaml"]),
}
SHIPPED = {
    "teacher": CHECKPOINTS / "centerpoint_small.pt",
    "pretrain": CHECKPOINTS / "image_encoder_small.pt",
}
TEACHER_CFG = CONFIGS / "teacher" / "centerpoint_pillar.yaml"
#: The students the demo can train (their tiny presets under configs/student/) and their display names.
STUDENTS = {
    "bevdet": "BEVDet",
    "bevdet4d": "BEVDet4D",
    "bevdepth": "BEVDepth",
    "bevdepth4d": "BEVDepth4D",
    "bevformer": "BEVFormer",
}
DISTILL_CFG = CONFIGS / "distill" / "full.yaml"
#: The demo's student schedule per scale when ``--epochs`` is not given (0 = the preset's). At tiny scale
#: the two students train side by side on one core each; the distilled one also runs the teacher, and
#: 8 epochs (1,120 steps) is what keeps the whole demo under an hour on 2 cores (README, "What the demo
#: does").
#: ``distillbev train`` / ``reproduce`` keep the presets' 12.
DEMO_EPOCHS = {"tiny": 8, "smoke": 0}
#: The distilled student's imitation-loss weight (``distill.loss_weight``) per scale when ``--kd-weight``
#: is not given. configs/distill/full.yaml keeps the paper's 1.0, which is in units of the official
#: teacher's features; against this project's tiny teacher it makes imitation ~3x the student's task
#: loss and costs 0.030 mAP, while at 0.1 imitation neither gains nor costs beyond the seed noise once both
#: sides have the teacher's head (3 seeds each; docs/results/overview.md, "The loss weight").
DEMO_KD_WEIGHT = {"tiny": 0.1, "smoke": 0.1}
PRETRAIN_CFG = CONFIGS / "pretrain" / "tiny.yaml"
_STEP = re.compile(r"(?:step |\| *)(\d+)/(\d+)")  # the loop's "step N/M" lines and tqdm's "| N/M" bars


@dataclass
class DemoPlan:
    """What the demo runs and where."""

    workdir: Path
    scale: str = "tiny"
    seed: int = 0
    stages: tuple[str, ...] = STAGES
    fresh: bool = False
    from_scratch: bool = False
    epochs: int | None = None  # students' epochs (None: DEMO_EPOCHS of the scale; 0: the preset's)
    jobs: int = 2  # student and distilled student side by side (2) or one after the other (1)
    student: str = "bevdepth"  # which camera student (STUDENTS)
    kd_weight: float | None = None  # distilled student's distill.loss_weight (None: DEMO_KD_WEIGHT)
    # the distilled student starts from the teacher's head task branches (the official recipe); off:
    # the two students differ only by the imitation loss (docs/results/overview.md, "Head inheritance")
    inherit_head: bool = True
    times: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"demo --scale {self.scale!r}: valid scales are {', '.join(SCALES)}")
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ConfigError(f"unknown demo stage {unknown[0]!r}; stages are {', '.join(STAGES)}")
        if self.student not in STUDENTS:
            raise ConfigError(f"demo --student {self.student!r}: valid students are {', '.join(STUDENTS)}")
        if self.jobs not in (1, 2):
            raise ConfigError(f"demo --jobs must be 1 or 2, got {self.jobs}")
        if self.epochs is None:
            self.epochs = DEMO_EPOCHS[self.scale]
        if self.epochs < 0:
            raise ConfigError(f"demo --epochs must be >= 0, got {self.epochs}")
        if self.kd_weight is None:
            self.kd_weight = DEMO_KD_WEIGHT[self.scale]
        if not self.kd_weight > 0:
            raise ConfigError(f"demo --kd-weight must be > 0, got {self.kd_weight}")
        self.workdir = Path(self.workdir)

    @property
    def world(self) -> Path:
        return self.workdir / f"data-{SCALES[self.scale][0]}"

    @property
    def student_cfg(self) -> Path:
        return CONFIGS / "student" / f"{self.student}.yaml"

    @property
    def scale_files(self) -> list[Path]:
        return SCALES[self.scale][1]

    def shipped(self, stage: str) -> Path | None:
        """The shipped checkpoint of ``stage`` when this plan uses it (tiny scale, not from scratch)."""
        if self.from_scratch or self.scale != "tiny":
            return None
        path = SHIPPED[stage]
        if not path.is_file():
            print(f"{stage}: no shipped checkpoint {path.relative_to(ROOT)}; training it here instead")
            return None
        return path


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stage_key(*parts: Any) -> str:
    """A short hash of a stage's inputs: config files' contents, overrides, checkpoints' sha256."""
    items = []
    for p in parts:
        if isinstance(p, Path) and p.is_file():
            items.append(f"{p.name}:{file_sha256(p)}")
        else:
            items.append(str(p))
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def cached(folder: Path, key: str) -> dict[str, Any] | None:
    """The recorded result of a finished stage with this key, else None."""
    record = folder / "stage.json"
    if not record.is_file():
        return None
    data = json.loads(record.read_text())
    return data if data.get("key") == key else None


def record(folder: Path, key: str, result: dict[str, Any]) -> None:
    """Mark a stage finished (written last, so an interrupted stage is never taken for done)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stage.json").write_text(json.dumps({"key": key, **result}, indent=1))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from distillbev.cli import main; main()", *args]


def training_command(
    files: list[Path], out: Path, overrides: list[str], plan: DemoPlan, teacher: Path | None
) -> list[str]:
    """The ``distillbev train`` command of one training stage (resume / overwrite decided here)."""
    ckpt = out / "checkpoint.pt"
    args = ["train", *map(str, files), "--out", str(out)]
    for o in overrides:
        args += ["--set", o]
    if teacher is not None:
        args += ["--teacher", str(teacher)]
    if out.exists() and any(out.iterdir()):
        args += ["--resume", str(ckpt)] if ckpt.is_file() and not plan.fresh else ["--overwrite"]
    return _cli(*args)


def run_trainings(jobs: dict[str, list[str]], logs: dict[str, Path], parallel: bool) -> None:
    """Run training commands (side by side or in turn) with a progress bar each, parsed from their logs."""
    from tqdm import tqdm

    names = list(jobs)
    batches = [names] if parallel else [[n] for n in names]
    for batch in batches:
        procs, bars = {}, {}
        for i, name in enumerate(batch):
            logs[name].parent.mkdir(parents=True, exist_ok=True)
            procs[name] = subprocess.Popen(jobs[name], stdout=open(logs[name], "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
            bars[name] = tqdm(desc=f"{name:>9}", position=i, unit="step", file=sys.stdout, dynamic_ncols=True)
        while any(p.poll() is None for p in procs.values()):
            time.sleep(5)
            for name in batch:
                _update(bars[name], logs[name])
        for name in batch:
            _update(bars[name], logs[name])
            bars[name].close()
        failed = [n for n in batch if procs[n].returncode != 0]
        if failed:
            tail = "\n".join(logs[failed[0]].read_text().splitlines()[-5:])
            raise RuntimeError(f"demo stage {failed[0]!r} failed (log {logs[failed[0]]}):\n{tail}")


def _update(bar: Any, log: Path) -> None:
    if not log.is_file():
        return
    found = _STEP.findall(log.read_text()[-4000:])
    if found:
        step, total = map(int, found[-1])
        bar.total = total
        bar.n = step
        bar.refresh()


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """The final metrics a training run recorded in its checkpoint."""
    from distillbev.train.checkpoint import read_checkpoint

    return dict(read_checkpoint(run_dir / "checkpoint.pt").get("metrics") or {})


def stage_data(plan: DemoPlan) -> None:
    from distillbev.workflows import ensure_world

    ensure_world(SCALES[plan.scale][0], plan.world, plan.seed, overwrite=plan.fresh)


def stage_gt_eval(plan: DemoPlan) -> None:
    from distillbev.eval.tables import print_metrics
    from distillbev.workflows import gt_eval

    folder = plan.workdir / "gt-eval"
    key = stage_key("gt-eval", plan.world / "world_config.yaml", plan.seed)
    if not plan.fresh and (done := cached(folder, key)):
        print(f"gt-eval: reused ({folder}): mAP GT {done['gt']['mAP']:.3f}, noisy {done['noisy']['mAP']:.3f}")
        return
    result = gt_eval(plan.world, folder, plan.seed)
    for name, m in result.items():
        print_metrics(m, title=f"official nuScenes metrics, {name} predictions ({plan.world})")
    record(folder, key, {k: {m: v[m] for m in ("mAP", "NDS")} for k, v in result.items()})


def stage_teacher(plan: DemoPlan) -> dict[str, Any]:
    """The shipped teacher scored on this world (or a teacher trained from scratch)."""
    folder = plan.workdir / "teacher"
    shipped = plan.shipped("teacher")
    if shipped is not None:
        key = stage_key("teacher-shipped", shipped, plan.world / "world_config.yaml")
        if not plan.fresh and (done := cached(folder, key)):
            print(f"teacher: reused the score of {shipped} ({folder})")
            return done["metrics"]
        from distillbev.workflows import score_checkpoint

        print(
            f"teacher: the shipped {shipped.name} (no training; --from-scratch trains it), "
            f"scoring it on {plan.world}"
        )
        metrics = score_checkpoint(shipped, plan.world, "", "", None, [], out_dir=folder / "eval")
        record(folder, key, {"metrics": metrics, "checkpoint": str(shipped)})
        return metrics
    files = [TEACHER_CFG, *plan.scale_files]
    overrides = [f"data.dataroot={plan.world}", f"seed={plan.seed}", "threads=2"]
    key = stage_key(*files, *overrides)
    run = folder / "run"
    if not plan.fresh and (done := cached(folder, key)):
        print(f"teacher: reused {run}")
        return done["metrics"]
    run_trainings(
        {"teacher": training_command(files, run, overrides, plan, None)},
        {"teacher": folder / "train.log"},
        False,
    )
    metrics = read_metrics(run)
    record(folder, key, {"metrics": metrics, "checkpoint": str(run / "checkpoint.pt")})
    return metrics


def teacher_checkpoint(plan: DemoPlan) -> Path:
    shipped = plan.shipped("teacher")
    if shipped is not None:
        return shipped
    ckpt = plan.workdir / "teacher" / "run" / "checkpoint.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"the distill stage needs the teacher checkpoint {ckpt} (run the teacher stage)"
        )
    return ckpt


def stage_pretrain(plan: DemoPlan) -> Path:
    """The shipped image encoder, or one pretrained here."""
    shipped = plan.shipped("pretrain")
    if shipped is not None:
        print(f"pretrain: the shipped {shipped.name} (--from-scratch pretrains it)")
        return shipped
    folder = plan.workdir / "pretrain"
    files = [plan.student_cfg, PRETRAIN_CFG, *plan.scale_files]
    overrides = [f"data.dataroot={plan.world}", f"seed={plan.seed}", "threads=2"]
    key = stage_key(*files, *overrides)
    ckpt = folder / "run" / "image_encoder.pt"
    if not plan.fresh and cached(folder, key) and ckpt.is_file():
        print(f"pretrain: reused {ckpt}")
        return ckpt
    if ckpt.parent.exists():
        import shutil

        shutil.rmtree(ckpt.parent)
    args = ["pretrain", *map(str, files), "--out", str(ckpt.parent)]
    for o in overrides:
        args += ["--set", o]
    run_trainings({"pretrain": _cli(*args)}, {"pretrain": folder / "pretrain.log"}, False)
    record(folder, key, {"checkpoint": str(ckpt)})
    return ckpt


def stage_students(plan: DemoPlan, encoder: Path | None) -> dict[str, dict[str, Any]]:
    """The baseline and the distilled student, same preset, seed and schedule."""
    threads = 1 if plan.jobs == 2 else 2
    common = [f"data.dataroot={plan.world}", f"seed={plan.seed}", f"threads={threads}"]
    if encoder is not None:
        common.append(f"student.image_pretrained={encoder}")
    if plan.epochs:
        common.append(f"optim.epochs={plan.epochs}")
    todo: dict[str, list[str]] = {}
    keys, results = {}, {}
    runs = {
        "student": ([plan.student_cfg, *plan.scale_files], None, []),
        "distilled": (
            [plan.student_cfg, DISTILL_CFG, *plan.scale_files],
            "distill",
            [f"distill.loss_weight={plan.kd_weight:g}"]
            + ([] if plan.inherit_head else ["distill.inherit_head=false"]),
        ),
    }
    for name, (files, needs, extra) in runs.items():
        if (name == "student" and "student" not in plan.stages) or (
            name == "distilled" and "distill" not in plan.stages
        ):
            continue
        teacher = teacher_checkpoint(plan) if needs else None
        folder = plan.workdir / name
        overrides = [*common, *extra]
        keys[name] = stage_key(*files, *overrides, *([teacher] if teacher else []))
        if not plan.fresh and (done := cached(folder, keys[name])):
            print(f"{name}: reused {folder / 'run'}")
            results[name] = done["metrics"]
            continue
        todo[name] = training_command(files, folder / "run", overrides, plan, teacher)
    if todo:
        logs = {n: plan.workdir / n / "train.log" for n in todo}
        mode = "side by side, one core each" if plan.jobs == 2 and len(todo) > 1 else "in turn"
        print(f"training {', '.join(todo)} ({mode}); logs: {', '.join(map(str, logs.values()))}")
        run_trainings(todo, logs, plan.jobs == 2)
        for name in todo:
            results[name] = read_metrics(plan.workdir / name / "run")
            record(plan.workdir / name, keys[name], {"metrics": results[name]})
    return results


def paper_table(
    teacher: dict[str, Any] | None,
    student: dict[str, Any] | None,
    distilled: dict[str, Any] | None,
    student_name: str = "BEVDepth",
) -> str:
    """The paper-style table: teacher, baseline and distilled student, and the gain (markdown)."""
    keys = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")

    def row(name: str, modality: str, m: dict[str, Any] | None) -> str:
        vals = [f"{m[k]:.3f}" if m and k in m else "-" for k in keys]
        return f"| {name} | {modality} | " + " | ".join(vals) + " |"

    lines = ["| model | input | " + " | ".join(keys) + " |", "|---|---|" + "---:|" * len(keys)]
    lines.append(row("CenterPoint (teacher)", "LiDAR", teacher))
    lines.append(row(f"{student_name} (baseline)", "camera", student))
    lines.append(row(f"{student_name} + DistillBEV", "camera", distilled))
    if student and distilled:
        gain = [f"{distilled[k] - student[k]:+.3f}" for k in keys]
        lines.append("| gain | | " + " | ".join(gain) + " |")
    return "\n".join(lines) + "\n"


def run_demo(plan: DemoPlan) -> str:
    """Run the plan's stages in order; returns (and writes to ``summary.md``) the table."""
    start = time.time()
    teacher = student = distilled = None
    encoder: Path | None = None

    def timed(name: str, fn, *args):
        t = time.time()
        print(f"\n== demo stage: {name} ==", flush=True)
        out = fn(*args)
        plan.times[name] = time.time() - t
        print(f"== {name}: {plan.times[name] / 60:.1f} min ==", flush=True)
        return out

    if "data" in plan.stages:
        timed("data", stage_data, plan)
    if "gt-eval" in plan.stages:
        timed("gt-eval", stage_gt_eval, plan)
    if "teacher" in plan.stages:
        teacher = timed("teacher", stage_teacher, plan)
    if "pretrain" in plan.stages:
        encoder = timed("pretrain", stage_pretrain, plan)
    if "student" in plan.stages or "distill" in plan.stages:
        res = timed("students", stage_students, plan, encoder)
        student, distilled = res.get("student"), res.get("distilled")
    total = time.time() - start
    table = paper_table(teacher, student, distilled, STUDENTS[plan.student])
    times = ", ".join(f"{k} {v / 60:.1f} min" for k, v in plan.times.items())
    text = (
        f"## distillbev demo ({plan.scale} scale, seed {plan.seed})\n\n{table}\n"
        f"DistillBEV: configs/distill/full.yaml with the imitation loss weighted {plan.kd_weight:g}; "
        + (
            "the distilled student starts from the teacher's head task branches, the baseline does not "
            "(--no-inherit-head: the imitation loss alone). "
            if plan.inherit_head
            else "head inheritance off: the two students differ only by the imitation loss. "
        )
        + "One seed per side: a gain needs several seeds to be told from seed noise (distillbev reproduce).\n"
        f"Stage times: {times}; total {total / 60:.1f} min.\n"
    )
    plan.workdir.mkdir(parents=True, exist_ok=True)
    (plan.workdir / "summary.md").write_text(text)
    print("\n" + text)
    return text
