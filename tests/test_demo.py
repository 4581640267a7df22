"""``distillbev demo``: scale and stage validation, the paper table, and a whole smoke-scale run whose
second invocation reuses every finished stage."""

import json

import pytest
from typer.testing import CliRunner

from distillbev.cli import app
from distillbev.config import ConfigError
from distillbev.demo import DemoPlan, cached, paper_table, record, stage_key


def test_bad_scale_lists_the_valid_ones(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--scale", "huge", "--workdir", str(tmp_path)])
    assert result.exit_code == 2
    assert "'huge'" in result.output and "tiny" in result.output and "smoke" in result.output
    assert not any(tmp_path.iterdir())  # nothing written


def test_bad_stage_and_jobs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown demo stage 'train'"):
        DemoPlan(tmp_path, stages=("data", "train"))
    with pytest.raises(ConfigError, match="--jobs"):
        DemoPlan(tmp_path, jobs=3)


def test_paper_table_rows_and_gain():
    keys = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")
    base = dict(zip(keys, (0.20, 0.30, 0.8, 0.4, 0.9, 1.0, 0.5), strict=True))
    dist = dict(zip(keys, (0.25, 0.33, 0.7, 0.4, 0.8, 1.1, 0.5), strict=True))
    table = paper_table({"mAP": 0.6}, base, dist).splitlines()
    assert table[2].startswith("| CenterPoint (teacher) | LiDAR | 0.600 | - |")
    gain = table[-1].split("|")[3:-1]
    assert [g.strip() for g in gain] == ["+0.050", "+0.030", "-0.100", "+0.000", "-0.100", "+0.100", "+0.000"]
    assert "gain" not in paper_table(None, base, None)


def test_stage_key_follows_file_contents(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("x: 1\n")
    k1 = stage_key(f, "seed=0")
    assert stage_key(f, "seed=0") == k1 and stage_key(f, "seed=1") != k1
    f.write_text("x: 2\n")
    assert stage_key(f, "seed=0") != k1
    record(tmp_path / "s", k1, {"metrics": {"mAP": 0.5}})
    assert cached(tmp_path / "s", k1)["metrics"] == {"mAP": 0.5}
    assert cached(tmp_path / "s", "other") is None


def test_smoke_demo_end_to_end_then_reused(tmp_path):
    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--scale", "smoke", "--workdir", str(tmp_path)])
    assert first.exit_code == 0, first.output
    summary = (tmp_path / "summary.md").read_text()
    rows = ("CenterPoint (teacher)", "BEVDepth (baseline)", "BEVDepth + DistillBEV", "gain", "Stage times")
    assert all(row in summary for row in rows)
    for stage in ("teacher", "student", "distilled"):
        blob = json.loads((tmp_path / stage / "stage.json").read_text())
        assert set(blob["metrics"]) >= {"mAP", "NDS"}
    ckpt = tmp_path / "student" / "run" / "checkpoint.pt"
    mtime = ckpt.stat().st_mtime
    second = runner.invoke(app, ["demo", "--scale", "smoke", "--workdir", str(tmp_path)])
    assert second.exit_code == 0, second.output
    assert "student: reused" in second.output and "distilled: reused" in second.output
    assert "teacher: reused" in second.output and "gt-eval: reused" in second.output
    assert ckpt.stat().st_mtime == mtime  # not retrained


def test_student_choice_names_the_rows(tmp_path):
    plan = DemoPlan(tmp_path, student="bevformer")
    assert plan.student_cfg.name == "bevformer.yaml" and plan.student_cfg.is_file()
    with pytest.raises(ConfigError, match="valid students are"):
        DemoPlan(tmp_path, student="pointpillars")
    table = paper_table(None, {"mAP": 0.1}, None, "BEVFormer")
    assert "| BEVFormer (baseline) | camera | 0.100 |" in table


def _fake_trainings(tmp_path, monkeypatch) -> dict:
    """Replace the demo's trainings with a recorder: the returned dict gets each stage's command."""
    import distillbev.demo as demo

    seen = {}

    def fake_run(jobs, logs, parallel):
        seen.update(jobs)
        for name in jobs:
            (tmp_path / "w" / name / "run").mkdir(parents=True, exist_ok=True)

    monkeypatch.setattr(demo, "run_trainings", fake_run)
    monkeypatch.setattr(demo, "read_metrics", lambda run_dir: {"mAP": 0.1})
    teacher = tmp_path / "t.pt"
    teacher.write_bytes(b"x")
    monkeypatch.setattr(demo, "teacher_checkpoint", lambda plan: teacher)
    return seen


def test_tiny_demo_shortens_only_the_students_schedule(tmp_path, monkeypatch):
    """At tiny scale both students train DEMO_EPOCHS epochs (the hour budget) with the same seed and
    preset; --epochs 0 keeps the preset's; smoke keeps its own."""
    import distillbev.demo as demo

    seen = _fake_trainings(tmp_path, monkeypatch)
    demo.stage_students(DemoPlan(tmp_path / "w"), None)
    assert set(seen) == {"student", "distilled"}
    for cmd in seen.values():
        assert cmd[cmd.index("optim.epochs=8") - 1] == "--set" and demo.DEMO_EPOCHS["tiny"] == 8
    assert "--teacher" in seen["distilled"] and "--teacher" not in seen["student"]
    seen.clear()
    demo.stage_students(DemoPlan(tmp_path / "w", epochs=0, fresh=True), None)
    assert seen and not any(any(a.startswith("optim.epochs=") for a in cmd) for cmd in seen.values())


def test_distilled_student_gets_the_demo_kd_weight(tmp_path, monkeypatch):
    """Only the distilled run carries distill.loss_weight (0.1 at tiny scale by default, --kd-weight
    otherwise), and the weight is part of its stage key, so a finished run at another weight is not
    reused."""
    import distillbev.demo as demo

    seen = _fake_trainings(tmp_path, monkeypatch)
    demo.stage_students(DemoPlan(tmp_path / "w"), None)
    assert demo.DEMO_KD_WEIGHT["tiny"] == 0.1
    kd = [a for a in seen["distilled"] if a.startswith("distill.loss_weight=")]
    assert kd == ["distill.loss_weight=0.1"]
    assert not any(a.startswith("distill.") for a in seen["student"])
    seen.clear()
    demo.stage_students(DemoPlan(tmp_path / "w"), None)
    assert not seen  # same inputs: both reused
    demo.stage_students(DemoPlan(tmp_path / "w", kd_weight=1.0), None)
    assert set(seen) == {"distilled"} and "distill.loss_weight=1" in seen["distilled"]
    with pytest.raises(ConfigError, match="kd-weight must be > 0"):
        DemoPlan(tmp_path, kd_weight=0.0)


def test_no_inherit_head_reaches_only_the_distilled_run(tmp_path, monkeypatch):
    """--no-inherit-head turns the distilled run's head inheritance off (and is part of its stage key:
    the run with the head is not reused); the baseline is the same run either way."""
    import distillbev.demo as demo

    seen = _fake_trainings(tmp_path, monkeypatch)
    demo.stage_students(DemoPlan(tmp_path / "w"), None)
    assert not any(a.startswith("distill.inherit_head") for cmd in seen.values() for a in cmd)
    seen.clear()
    demo.stage_students(DemoPlan(tmp_path / "w", inherit_head=False), None)
    assert set(seen) == {"distilled"} and "distill.inherit_head=false" in seen["distilled"]
