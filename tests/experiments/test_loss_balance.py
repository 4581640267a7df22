import json

import pytest

from distillbev.experiments.loss_balance import loss_balance_table, loss_phases


def write_log(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    (path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path / "log.jsonl"


def test_phases_average_task_and_imitation_terms(tmp_path):
    rows = [
        {"step": s, "loss/heatmap": float(s), "loss/depth": 1.0, "loss/kd_fg_H": 2.0 * s, "loss/total": 99.0}
        for s in (10, 20, 30, 40)
    ]
    rows.insert(2, {"step": 25, "lr": 0.1})  # a row without loss terms is not counted
    log = write_log(tmp_path / "run", rows)
    first, second = loss_phases(log, phases=2)
    assert (first.first, first.last, second.first, second.last) == (10, 20, 30, 40)
    assert first.terms == {"heatmap": 15.0, "depth": 1.0, "kd_fg_H": 30.0}  # total is left out
    assert first.task == 16.0 and first.imitation == 30.0
    assert second.task == 36.0 and second.imitation == 70.0
    table = loss_balance_table({"d": tmp_path / "run"}, phases=2)
    assert "| d | 10-20 | 16.000 | 30.000 | 1.88 |" in table


def test_a_baseline_has_no_imitation(tmp_path):
    log = write_log(tmp_path / "b", [{"step": 1, "loss/heatmap": 3.0}, {"step": 2, "loss/heatmap": 1.0}])
    (only,) = loss_phases(log, phases=1)
    assert only.imitation == 0.0 and only.task == 2.0


def test_bad_logs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no training log"):
        loss_phases(tmp_path / "missing" / "log.jsonl")
    log = write_log(tmp_path / "x", [{"step": 1, "lr": 0.1}])
    with pytest.raises(ValueError, match="no loss/\\* scalars"):
        loss_phases(log)
    (tmp_path / "x" / "log.jsonl").write_text('{"step": 1, "loss/a": 1}\n{"step": 2, "loss/a"\n')
    with pytest.raises(ValueError, match="log.jsonl:2: not a JSON row"):
        loss_phases(tmp_path / "x" / "log.jsonl")
