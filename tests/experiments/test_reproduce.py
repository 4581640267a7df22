"""``distillbev reproduce``: the grid's cells and tables, filters, the runs of a plan, run states, and
skip / resume logic on fake run folders (nothing is trained here; see test_reproduce_smoke.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plan_helpers import fake_run, fake_teacher, finish, metrics
from typer.testing import CliRunner

from distillbev.cli import app
from distillbev.config import ConfigError, read_yaml
from distillbev.experiments import runner
from distillbev.experiments.plan import PlanSpec, build_grid, plan_runs, run_state, select_cells
from distillbev.experiments.runner import make_plan, run_plan

PAPER = ("bevdet", "bevdet4d", "bevdepth")


def test_grid_has_every_cell_once():
    cells, tables = build_grid(PAPER)
    names = [c.name for c in cells]
    # 3 x 3 grid + a plain student from each teacher's head per student + 7 ablation-only rows
    assert len(names) == len(set(names)) == 9 + 6 + 7
    assert names[:5] == [
        "bevdet-none",
        "bevdet-none-head_centerpoint",
        "bevdet-centerpoint",
        "bevdet-none-head_mvp",
        "bevdet-mvp",
    ]
    assert len(build_grid(PAPER, head_baselines=False)[0]) == 9 + 7
    rows = {t.key: dict(t.rows) for t in tables}
    # The full recipe with the ablation teacher is the grid cell; B1+B2+H is the '+ scaling' row.
    assert rows["components"]["+ FP region (full)"] == "bevdet4d-centerpoint"
    assert rows["layers"]["B1 + B2 + H"] == rows["components"]["+ adaptive scaling"]
    assert rows["layers"]["B1 + B2 + H"] == "bevdet4d-centerpoint-components_fgbg_att_scale"
    assert rows["layers"]["no teacher"] == rows["components"]["no teacher"] == "bevdet4d-none"
    by_name = {c.name: c for c in cells}
    assert by_name["bevdet4d-none"].groups == ("grid", "components", "layers")
    assert by_name["bevdet4d-centerpoint-layers_H"].distill == "layers_H"
    assert by_name["bevdet-mvp"].baseline == "bevdet-none"
    head = by_name["bevdepth-none-head_mvp"]
    assert head.head and head.teacher == "mvp" and head.distill is None and not head.distilled
    assert head.groups == ("grid",) and by_name["bevdepth-mvp"].distilled


def test_cells_filter_by_glob_table_and_list():
    cells, _ = build_grid(PAPER)
    names = lambda pats: [c.name for c in select_cells(cells, pats)]  # noqa: E731
    assert names(["bevdet-*"]) == [
        "bevdet-none",
        "bevdet-none-head_centerpoint",
        "bevdet-centerpoint",
        "bevdet-none-head_mvp",
        "bevdet-mvp",
    ]
    assert names(["bevdet-none,bevdepth-mvp"]) == ["bevdet-none", "bevdepth-mvp"]
    assert len(names(["layers"])) == 5  # baseline, H, B2+H, B1+B2+H (shared), B0+B1+B2+H
    assert len(names([])) == len(cells)
    with pytest.raises(ConfigError, match="'bevfusion-\\*' matches no cell"):
        select_cells(cells, ["bevfusion-*"])


def test_plan_runs_are_seed_major_and_name_what_is_missing(tmp_path):
    ckpt = fake_teacher(tmp_path / "cp.pt")
    spec = PlanSpec(out=tmp_path / "plan", seeds=2, students=("bevdet",), teachers={"centerpoint": ckpt})
    cells, _ = build_grid(spec.students)
    runs = plan_runs(spec, select_cells(cells, ["grid"]))
    # plain baselines, then baselines from a teacher's head, then the distilled cells
    order = (
        "bevdet-none",
        "bevdet-none-head_centerpoint",
        "bevdet-none-head_mvp",
        "bevdet-centerpoint",
        "bevdet-mvp",
    )
    assert [r.label for r in runs] == [f"{c}/seed{s}" for s in (0, 1) for c in order]
    none, cp_head, mvp_head, cp, mvp = runs[5:10]
    assert none.overrides == ("seed=1",) and none.teacher is None and none.files[-1].name == "bevdet.yaml"
    assert cp.files[-1].name == "full.yaml" and cp.teacher == ckpt and not cp.blocked
    assert mvp.blocked == "no --mvp teacher checkpoint given"
    # a head cell trains no imitation loss: no --teacher, no distill preset, the head from the checkpoint
    assert cp_head.teacher is None and [f.name for f in cp_head.files] == ["bevdet.yaml"]
    assert cp_head.overrides == (f"inherit_head_from={ckpt.resolve()}", "seed=1") and not cp_head.blocked
    assert mvp_head.blocked == "no --mvp teacher checkpoint given"
    assert "--teacher" not in runner.train_command(cp_head, None, False)
    assert cp.run_dir == tmp_path / "plan" / "bevdet-centerpoint" / "seed1"
    full = PlanSpec(out=tmp_path, scale="full", students=("bevdet",))
    assert plan_runs(full, cells[:1])[0].files[0].name == "bevdet_full.yaml"
    with pytest.raises(ConfigError, match="valid scales are tiny, full"):
        PlanSpec(out=tmp_path, scale="huge")


def test_run_states(tmp_path):
    spec = PlanSpec(out=tmp_path, seeds=1, students=("bevdet",))
    cells, _ = build_grid(spec.students)
    run = plan_runs(spec, cells[:1])[0]
    assert run_state(run.run_dir) == ("new", "")
    run.run_dir.mkdir(parents=True)
    assert run_state(run.run_dir)[0] == "new"  # empty
    fake_run(run)
    assert run_state(run.run_dir) == ("interrupted", "no checkpoint yet")
    fake_run(run, epoch=5)
    assert run_state(run.run_dir) == ("interrupted", "checkpoint at epoch 5 of 12")
    fake_run(run, epoch=12)
    assert run_state(run.run_dir)[0] == "broken"  # finished, metrics deleted
    finish(run, None, metrics(0.3, 0.4))
    assert run_state(run.run_dir) == ("finished", "epoch 12 of 12")


@pytest.fixture
def plan_with_states(tmp_path):
    """A 2-seed bevdet grid: baseline seed 0 finished, seed 1 interrupted at epoch 5; CenterPoint seed 0
    new, seed 1 stopped before its first checkpoint; MVP blocked (no checkpoint). Without the cells of a
    plain student from a teacher's head (test_head_baselines_are_run_and_compared has them)."""
    ckpt = fake_teacher(tmp_path / "cp.pt")
    spec = PlanSpec(
        out=tmp_path / "plan",
        seeds=2,
        students=("bevdet",),
        teachers={"centerpoint": ckpt},
        head_baselines=False,
    )
    plan = make_plan(spec, ["grid"])
    runs = {r.label: r for r in plan.runs}
    t_cfg = plan.teacher_cfgs["centerpoint"]
    finish(runs["bevdet-none/seed0"], None, metrics(0.3, 0.4))
    fake_run(runs["bevdet-none/seed1"], epoch=5)
    fake_run(runs["bevdet-centerpoint/seed1"], t_cfg)
    return plan, runs


def _fake_launcher(calls):
    def launch(run, resume, overwrite):
        calls.append((run.label, resume, overwrite))
        return ""

    return launch


def test_finished_runs_are_skipped_and_interrupted_wait_for_resume(plan_with_states, monkeypatch):
    plan, runs = plan_with_states
    calls = []
    monkeypatch.setattr(runner, "_in_process", _fake_launcher(calls))
    outcome = run_plan(plan, resume=False, in_process=True, echo=lambda s: None)
    assert calls == [("bevdet-centerpoint/seed0", None, False)]
    assert outcome["finished"] == ["bevdet-none/seed0"]
    skipped = "\n".join(outcome["skipped"])
    assert "bevdet-none/seed1: interrupted (checkpoint at epoch 5 of 12); pass --resume" in skipped
    assert "bevdet-mvp/seed0: not runnable, no --mvp teacher checkpoint given" in skipped
    doc = json.loads((plan.spec.out / "results.json").read_text())
    assert doc["cells"]["bevdet-none"]["seeds"] == {"0": metrics(0.3, 0.4)}
    assert (plan.spec.out / "results.md").is_file() and (plan.spec.out / "plan.json").is_file()

    calls.clear()
    run_plan(plan, resume=True, in_process=True, echo=lambda s: None)
    assert calls == [
        ("bevdet-centerpoint/seed0", None, False),  # still new (the fake launcher trains nothing)
        ("bevdet-none/seed1", runs["bevdet-none/seed1"].run_dir / "checkpoint.pt", False),  # --resume
        ("bevdet-centerpoint/seed1", None, True),  # no checkpoint: started again (--overwrite)
    ]


def test_head_baselines_are_run_and_compared(tmp_path, monkeypatch):
    ckpt = fake_teacher(tmp_path / "cp.pt")
    spec = PlanSpec(out=tmp_path / "plan", seeds=2, students=("bevdet",), teachers={"centerpoint": ckpt})
    plan = make_plan(spec, ["bevdet-none,bevdet-none-head_centerpoint,bevdet-centerpoint"])
    runs = {r.label: r for r in plan.runs}
    t_cfg = plan.teacher_cfgs["centerpoint"]
    scores = {  # per cell, per seed: (mAP, NDS)
        "bevdet-none": ((0.20, 0.30), (0.22, 0.32)),
        "bevdet-none-head_centerpoint": ((0.30, 0.38), (0.32, 0.40)),
        "bevdet-centerpoint": ((0.31, 0.39), (0.33, 0.41)),
    }
    for cell, per_seed in scores.items():
        for seed, (m, n) in enumerate(per_seed):
            finish(runs[f"{cell}/seed{seed}"], t_cfg if cell == "bevdet-centerpoint" else None, metrics(m, n))
    calls = []
    monkeypatch.setattr(runner, "_in_process", _fake_launcher(calls))
    outcome = run_plan(plan, in_process=True, echo=lambda s: None)
    # the head run's stored config (no teacher points, the head from the checkpoint) is the plan's
    assert calls == [] and not outcome["skipped"] and len(outcome["finished"]) == 6
    stored = read_yaml(runs["bevdet-none-head_centerpoint/seed0"].run_dir / "config.yaml")
    assert stored["inherit_head_from"] == str(ckpt.resolve())
    doc = json.loads((plan.spec.out / "results.json").read_text())
    head, cp = doc["cells"]["bevdet-none-head_centerpoint"], doc["cells"]["bevdet-centerpoint"]
    # head vs plain: +0.10 mAP; distilled vs head: +0.01 with spread sqrt(0.0002/2 + 0.0002/2) = 0.0141
    assert head["gain"]["mAP"]["mean"] == pytest.approx(0.10) and head["gain_vs_head"] is None
    assert cp["gain"]["mAP"]["mean"] == pytest.approx(0.11)
    assert cp["gain_vs_head"]["mAP"]["mean"] == pytest.approx(0.01)
    assert cp["gain_vs_head"]["mAP"]["spread"] == pytest.approx(0.0141421, abs=1e-6)
    md = (plan.spec.out / "results.md").read_text()
    assert "| bevdet | none, CenterPoint's head | 2 |" in md and "ΔmAP (head)" in md
    assert "- bevdet-centerpoint: mAP +0.110 ± 0.014 above the spread" in md
    assert "- bevdet-centerpoint: mAP +0.010 ± 0.014 NOT above the spread" in md


def test_a_run_of_another_config_is_neither_trained_nor_counted(plan_with_states, monkeypatch):
    plan, runs = plan_with_states
    finish(runs["bevdet-none/seed0"], None, metrics(0.3, 0.4))
    fake_run(runs["bevdet-none/seed0"], epoch=12, final=metrics(0.9, 0.9), sets=("optim.lr=0.1",))
    calls = []
    monkeypatch.setattr(runner, "_in_process", _fake_launcher(calls))
    outcome = run_plan(plan, in_process=True, echo=lambda s: None)
    assert "bevdet-none/seed0" not in [c[0] for c in calls]
    assert any("optim.lr (0.1 there, 0.002 now)" in s for s in outcome["skipped"])
    doc = json.loads((plan.spec.out / "results.json").read_text())
    assert doc["cells"]["bevdet-none"]["seeds"] == {}


def test_plan_folder_keeps_one_scale_and_teacher_kinds_are_checked(plan_with_states, tmp_path, monkeypatch):
    plan, _ = plan_with_states
    monkeypatch.setattr(runner, "_in_process", _fake_launcher([]))
    run_plan(plan, in_process=True, echo=lambda s: None)
    with pytest.raises(ConfigError, match="holds a plan with scale 'tiny'"):
        make_plan(PlanSpec(out=plan.spec.out, scale="full", students=("bevdet",)), [])
    with pytest.raises(ConfigError, match="use another --out"):
        make_plan(PlanSpec(out=plan.spec.out, students=("bevdet",), overrides=("optim.epochs=1",)), [])
    again = make_plan(PlanSpec(out=plan.spec.out, seeds=3, students=("bevdet",)), ["grid"])  # teachers kept
    # 3 seeds x (baseline, CenterPoint's and MVP's head, CenterPoint, MVP)
    assert "centerpoint" in again.spec.teachers and len(again.runs) == 15
    wrong = fake_teacher(tmp_path / "not_mvp.pt", "centerpoint")
    with pytest.raises(ValueError, match="holds a 'centerpoint' model, not a 'mvp' teacher"):
        make_plan(PlanSpec(out=tmp_path / "p2", students=("bevdet",), teachers={"mvp": wrong}), [])


def test_cli_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    out = tmp_path / "plan"
    r = CliRunner().invoke(
        app,
        [
            "reproduce",
            "--out",
            str(out),
            "--students",
            "bevdet",
            "--seeds",
            "1",
            "--cells",
            "grid",
            "--dry-run",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "bevdet-none/seed0" in r.output and "distillbev train" in r.output
    assert "bevdet-mvp/seed0" in r.output and "blocked (no --mvp teacher checkpoint given)" in r.output
    assert not out.exists()
    bad = CliRunner().invoke(app, ["reproduce", "--out", str(out), "--cells", "nope", "--dry-run"])
    assert bad.exit_code == 2 and "'nope' matches no cell" in bad.output
    stray = CliRunner().invoke(app, ["reproduce", str(tmp_path), "--out", str(out)])
    assert stray.exit_code == 2 and "given with --merge" in stray.output


def test_cli_merge(tmp_path):
    from distillbev.experiments.stats import build_results, write_results

    cells = [
        {"name": "bevdet-none", "student": "bevdet", "teacher": None, "distill": None, "groups": ["grid"]}
    ]
    plan = {"scale": "tiny", "overrides": [], "cells": cells, "tables": []}
    for i, folder in enumerate(("a", "b")):
        write_results(
            build_results(plan, {"bevdet-none": {i: metrics(0.2 + i / 10, 0.3)}}, {}), tmp_path / folder
        )
    r = CliRunner().invoke(
        app, ["reproduce", "--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "m" / "results.json").read_text())
    assert doc["cells"]["bevdet-none"]["stats"]["mAP"]["n"] == 2
    missing = CliRunner().invoke(
        app, ["reproduce", "--merge", str(tmp_path / "x"), "--out", str(tmp_path / "m")]
    )
    assert missing.exit_code == 2 and "results.json not found" in missing.output


def test_describe_marks_states(plan_with_states):
    plan, _ = plan_with_states
    text = "\n".join(runner.describe(plan))
    assert "bevdet-none/seed0" in text and "finished" in text
    assert "interrupted (checkpoint at epoch 5 of 12)" in text
    assert Path(plan.spec.out).name in text


def test_cli_baselines_from_another_plan(tmp_path, monkeypatch):
    """A plan that sweeps a distill.* key reuses another plan's baseline seeds (recorded in plan.json, so
    a later sitting keeps them); a plan with other baseline overrides is refused before anything runs."""
    from distillbev.experiments.stats import build_results, write_results

    ckpt = fake_teacher(tmp_path / "cp.pt")
    base_spec = PlanSpec(out=tmp_path / "base", seeds=2, students=("bevdet",), teachers={"centerpoint": ckpt})
    base = make_plan(base_spec, ["bevdet-none"])
    seeds = {"bevdet-none": {0: metrics(0.2, 0.3), 1: metrics(0.3, 0.4)}}
    from distillbev.experiments.plan import plan_document

    write_results(build_results(plan_document(base.spec, base.cells, base.tables), seeds, {}), base_spec.out)
    spec = PlanSpec(
        out=tmp_path / "w01",
        seeds=2,
        students=("bevdet",),
        teachers={"centerpoint": ckpt},
        overrides=("distill.loss_weight=0.1",),
        baselines_from=base_spec.out,
    )
    plan = make_plan(spec, ["bevdet-centerpoint"])
    runs = {r.label: r for r in plan.runs}
    for k, m in ((0, metrics(0.3, 0.4)), (1, metrics(0.4, 0.5))):
        finish(runs[f"bevdet-centerpoint/seed{k}"], plan.teacher_cfgs["centerpoint"], m)
    monkeypatch.setattr(runner, "_in_process", _fake_launcher([]))
    run_plan(plan, in_process=True, echo=lambda s: None)
    doc = json.loads((spec.out / "results.json").read_text())
    assert doc["cells"]["bevdet-none"]["seeds"] == {"0": metrics(0.2, 0.3), "1": metrics(0.3, 0.4)}
    assert doc["cells"]["bevdet-centerpoint"]["gain"]["mAP"]["mean"] == pytest.approx(0.1)
    assert json.loads((spec.out / "plan.json").read_text())["baselines_from"] == str(base_spec.out.resolve())
    again = make_plan(PlanSpec(out=spec.out, seeds=2, students=("bevdet",), overrides=spec.overrides), [])
    assert again.spec.baselines_from == base_spec.out.resolve() and again.baselines_doc is not None
    r = CliRunner().invoke(
        app,
        [
            "reproduce",
            "--out",
            str(tmp_path / "e12"),
            "--students",
            "bevdet",
            "--seeds",
            "1",
            "--set",
            "optim.epochs=1",
            "--baselines-from",
            str(base_spec.out),
            "--dry-run",
        ],
    )
    assert r.exit_code == 2 and "are not this plan's baselines" in r.output
    assert not (tmp_path / "e12").exists()


def test_jobs_run_trainings_side_by_side(tmp_path, monkeypatch):
    """--jobs 2: at most two trainings at once, every run trained once, results written after each;
    output lines carry their run's label; --jobs with --in-process, or below 1, is refused."""
    import threading
    import time

    spec = PlanSpec(out=tmp_path / "plan", seeds=5, students=("bevdet",))
    plan = make_plan(spec, ["bevdet-none"])  # 5 runs
    lock, live, peak, started = threading.Lock(), [0], [0], []

    def fake_subprocess(argv, log, echo):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
            started.append(argv[argv.index("--out") + 1])
        echo("step 1")
        time.sleep(0.2)
        with lock:
            live[0] -= 1
        return ""

    monkeypatch.setattr(runner, "_subprocess", fake_subprocess)
    lines: list[str] = []
    outcome = run_plan(plan, jobs=2, echo=lines.append)
    assert peak[0] == 2  # two at once, never more
    assert sorted(outcome["trained"]) == [f"bevdet-none/seed{k}" for k in range(5)]
    assert started[:2] == [str(r.run_dir) for r in plan.runs[:2]]  # started in the plan's order
    assert "bevdet-none/seed3: step 1" in lines
    assert (spec.out / "results.json").is_file()
    with pytest.raises(ValueError, match="cannot be combined with --in-process"):
        run_plan(plan, jobs=2, in_process=True, echo=lines.append)
    with pytest.raises(ValueError, match="--jobs must be >= 1"):
        run_plan(plan, jobs=0, echo=lines.append)
