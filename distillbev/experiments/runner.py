"""Run a reproduction plan: train what is missing, skip what is finished, resume what was interrupted,
and rewrite ``results.md`` / ``results.json`` after every run.

Each run is ``distillbev train`` in a subprocess by default (a crash or an out-of-memory kill fails
that run only; its output goes to ``PLAN_DIR/logs/<cell>-seed<k>.log`` and the console), or
``run_training`` in this process (``in_process``: no start-up cost, for tests and debugging).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from distillbev.experiments.plan import (
    Cell,
    PlanSpec,
    Run,
    Table,
    build_grid,
    check_plan_folder,
    config_difference,
    finished_metrics,
    plan_document,
    plan_runs,
    run_state,
    select_cells,
    teacher_checkpoint_info,
)
from distillbev.experiments.stats import borrow_baselines, build_results, read_results, write_results
from distillbev.io import write_json


@dataclass
class Plan:
    """A resolved plan: the whole grid, the selected runs and the teachers' configs and metrics."""

    spec: PlanSpec
    cells: list[Cell]
    tables: list[Table]
    runs: list[Run]
    teacher_cfgs: dict[str, Any] = field(default_factory=dict)
    teacher_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    baselines_doc: dict[str, Any] | None = None  # the results.json of spec.baselines_from


def recorded_baselines_from(out: Path) -> Path | None:
    """The ``--baselines-from`` plan folder a plan folder's ``plan.json`` recorded, if any."""
    path = Path(out) / "plan.json"
    if not path.is_file():
        return None
    recorded = json.loads(path.read_text()).get("baselines_from")
    return Path(recorded) if recorded else None


def recorded_teachers(out: Path) -> dict[str, Path]:
    """The teacher checkpoints a plan folder's ``plan.json`` recorded (a later sitting reuses them)."""
    path = Path(out) / "plan.json"
    if not path.is_file():
        return {}
    return {k: Path(v) for k, v in json.loads(path.read_text()).get("teachers", {}).items()}


def make_plan(spec: PlanSpec, patterns: list[str]) -> Plan:
    """Resolve a plan: teachers from the options, else from the plan folder's ``plan.json``; every
    given teacher checkpoint is checked to be that teacher before anything runs."""
    check_plan_folder(spec)
    teachers = {**recorded_teachers(spec.out), **{k: v for k, v in spec.teachers.items() if v is not None}}
    baselines_from = spec.baselines_from or recorded_baselines_from(spec.out)
    spec = replace(spec, teachers=teachers, baselines_from=baselines_from)
    cells, tables = build_grid(
        spec.student_names(), spec.ablation_student, spec.ablation_teacher, spec.head_baselines
    )
    runs = plan_runs(spec, select_cells(cells, patterns))
    plan = Plan(spec, cells, tables, runs)
    if baselines_from is not None:
        plan.baselines_doc = read_results(baselines_from)
        # refuse another plan's baselines before anything trains
        borrow_baselines(plan_document(spec, cells, tables), {}, plan.baselines_doc, str(baselines_from))
    for kind, path in teachers.items():
        if Path(path).is_file():
            plan.teacher_cfgs[kind], metrics = teacher_checkpoint_info(path, kind)
            plan.teacher_metrics[kind] = {
                "checkpoint": str(path),
                **{k: metrics.get(k) for k in ("mAP", "NDS")},
            }
    return plan


def describe(plan: Plan, commands: bool = True) -> list[str]:
    """The plan, for the console: one line per selected run with its state (and, with ``commands``,
    the command of each run that would train), then the count per state."""
    lines = [f"plan folder: {plan.spec.out} (scale {plan.spec.scale}, {plan.spec.seeds} seed(s))"]
    for kind, path in plan.spec.teachers.items():
        lines.append(f"teacher {kind}: {path}")
    if plan.spec.baselines_from is not None:
        lines.append(f"baselines (where this plan has none): {plan.spec.baselines_from}")
    width = max((len(r.label) for r in plan.runs), default=0)
    counts: dict[str, int] = {}
    for run in plan.runs:
        state, detail = ("blocked", run.blocked) if run.blocked else run_state(run.run_dir)
        counts[state] = counts.get(state, 0) + 1
        line = f"{run.label:{width}s}  {state}" + (f" ({detail})" if detail else "")
        if commands and not run.blocked and state in ("new", "interrupted"):
            line += "\n    distillbev " + " ".join(train_command(run, None, False)[3:])
        lines.append(line)
    lines.append(f"{len(plan.runs)} run(s): " + ", ".join(f"{n} {state}" for state, n in counts.items()))
    return lines


def train_command(run: Run, resume: Path | None, overwrite: bool) -> list[str]:
    """The ``distillbev train`` command line of a run."""
    argv = [sys.executable, "-m", "distillbev.cli", "train", *map(str, run.files), "--out", str(run.run_dir)]
    for o in run.overrides:
        argv += ["--set", o]
    if run.teacher is not None:
        argv += ["--teacher", str(run.teacher)]
    if resume is not None:
        argv += ["--resume", str(resume)]
    if overwrite:
        argv.append("--overwrite")
    return argv


def _subprocess(argv: list[str], log: Path, echo: Callable[[str], None]) -> str:
    """Run ``argv``; its output goes to ``log`` (appended) and ``echo``. Returns '' or the failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(argv) + "\n")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        last = ""
        for line in proc.stdout:
            f.write(line)
            echo(line.rstrip("\n"))
            last = line.strip() or last
        code = proc.wait()
    return "" if code == 0 else f"exit code {code}: {last} (log: {log})"


def _in_process(run: Run, resume: Path | None, overwrite: bool) -> str:
    from distillbev.train.run import run_training

    try:
        run_training(
            list(run.files),
            run.run_dir,
            list(run.overrides),
            teacher=run.teacher,
            resume=resume,
            overwrite=overwrite,
        )
    except Exception as e:  # noqa: BLE001 - one failed run must not stop the plan
        return f"{type(e).__name__}: {e}"
    return ""


def collect_results(plan: Plan, excluded: set[Path] = frozenset()) -> dict[str, Any]:
    """The results document of every finished run of the whole grid found in the plan folder
    (any seed folder, also of cells not selected now), but for ``excluded`` run folders."""
    seeds: dict[str, dict[int, dict[str, Any]]] = {}
    for cell in plan.cells:
        folder = Path(plan.spec.out) / cell.name
        for run_dir in sorted(folder.glob("seed*")) if folder.is_dir() else []:
            if not run_dir.name[4:].isdigit() or run_dir.resolve() in excluded:
                continue
            metrics = finished_metrics(run_dir)
            if metrics is not None:
                seeds.setdefault(cell.name, {})[int(run_dir.name[4:])] = metrics
    doc = plan_document(plan.spec, plan.cells, plan.tables)
    borrowed: dict[str, Any] | None = None
    if plan.baselines_doc is not None:
        source = str(plan.spec.baselines_from)
        seeds, cells = borrow_baselines(doc, seeds, plan.baselines_doc, source)
        borrowed = {"source": source, "cells": cells}
    return build_results(doc, seeds, plan.teacher_metrics, borrowed)


def _clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run_plan(
    plan: Plan,
    resume: bool = False,
    in_process: bool = False,
    echo: Callable[[str], None] = print,
    jobs: int = 1,
) -> dict[str, list[str]]:
    """Train every selected run that is not finished; returns run labels by outcome: ``trained``,
    ``finished`` (already), ``failed``, ``skipped`` (interrupted without ``resume``, changed config,
    blocked). ``results.md`` / ``results.json`` are rewritten after each run. ``jobs``: how many
    trainings run at once (subprocesses, started in the plan's order; their output lines are prefixed
    with the run's label)."""
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if jobs > 1 and in_process:
        raise ValueError("--jobs > 1 trains in subprocesses; it cannot be combined with --in-process")
    out = Path(plan.spec.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "plan.json", plan_document(plan.spec, plan.cells, plan.tables))
    outcome: dict[str, list[str]] = {"trained": [], "finished": [], "failed": [], "skipped": []}
    excluded: set[Path] = set()
    todo = []
    for run in plan.runs:
        if run.blocked:
            outcome["skipped"].append(f"{run.label}: not runnable, {run.blocked}")
            continue
        state, detail = run_state(run.run_dir)
        teacher_cfg = plan.teacher_cfgs.get(run.cell.teacher) if run.teacher is not None else None
        diff = config_difference(run, teacher_cfg) if state != "new" else ""
        if diff:
            excluded.add(run.run_dir.resolve())
            outcome["skipped"].append(
                f"{run.label}: its config.yaml differs from the plan's in {diff}; "
                f"move {run.run_dir} away to redo it"
            )
        elif state == "finished":
            outcome["finished"].append(run.label)
        elif state == "broken":
            outcome["failed"].append(f"{run.label}: {detail}")
        elif state == "interrupted" and not resume:
            outcome["skipped"].append(f"{run.label}: interrupted ({detail}); pass --resume to continue it")
        else:
            todo.append((run, state))
    for line in outcome["skipped"]:
        echo(f"skip {line}")
    durations: list[float] = []

    def train(i: int, run: Run, state: str) -> tuple[int, Run, str, float]:
        ckpt = run.run_dir / "checkpoint.pt"
        resume_from = ckpt if state == "interrupted" and ckpt.is_file() else None
        overwrite = state == "interrupted" and resume_from is None  # stopped before its first checkpoint
        done = list(durations)
        left = f", about {_clock(sum(done) / len(done) * (len(todo) - i) / jobs)} left" if done else ""
        how = "resuming" if resume_from else ("restarting" if overwrite else "training")
        echo(f"[{i + 1}/{len(todo)}] {run.label}: {how}{left}")
        start = time.time()
        if in_process:
            failure = _in_process(run, resume_from, overwrite)
        else:
            log = out / "logs" / f"{run.cell.name}-seed{run.seed}.log"
            say = echo if jobs == 1 else (lambda line: echo(f"{run.label}: {line}"))
            failure = _subprocess(train_command(run, resume_from, overwrite), log, say)
        return i, run, failure, time.time() - start

    def finished(i: int, run: Run, failure: str, took: float) -> None:
        durations.append(took)
        outcome["failed" if failure else "trained"].append(
            f"{run.label}: {failure}" if failure else run.label
        )
        status = "FAILED " + failure if failure else "done"
        echo(f"[{i + 1}/{len(todo)}] {run.label}: {status} in {_clock(took)}")
        write_results(collect_results(plan, excluded), out)

    if jobs == 1:  # in this thread: an in-process training may install signal handlers
        for i, (run, state) in enumerate(todo):
            finished(*train(i, run, state))
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(train, i, run, state) for i, (run, state) in enumerate(todo)]
            for future in as_completed(futures):
                finished(*future.result())
    write_results(collect_results(plan, excluded), out)
    return outcome


def merge_plans(folders: list[Path], out: Path) -> dict[str, Any]:
    """``reproduce --merge``: one ``results.md`` / ``results.json`` in ``out`` from the results of plans
    split by cell (each folder's ``results.json``)."""
    from distillbev.experiments.stats import merge_results

    docs = [read_results(f) for f in folders]
    doc = merge_results(docs, [str(f) for f in folders])
    write_results(doc, out)
    return doc
