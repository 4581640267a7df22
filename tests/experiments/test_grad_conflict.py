"""The task-vs-imitation gradient comparison on hand-computed gradients."""

import math

import pytest
import torch

from distillbev.experiments.grad_conflict import compare_gradients, figures_table, group_of


def t(*v):
    return torch.tensor(v, dtype=torch.float32)


def test_groups_norms_and_cosines_by_hand():
    task = [
        {"backbone.w": t(1, 0), "bev_encoder.w": t(0, 2), "mystery.w": t(3.0)},
        {"backbone.w": t(1, 0), "bev_encoder.w": t(0, 2), "mystery.w": t(3.0)},
    ]
    kd = [
        {"backbone.w": t(1, 1), "bev_encoder.w": t(0, -1)},
        {"backbone.w": t(-1, 1), "bev_encoder.w": None},  # no gradient: zero in that batch
    ]
    figs = {f.group: f for f in compare_gradients(task, kd)}
    assert list(figs) == ["image encoder", "BEV encoder", "other"]  # the report's order
    enc = figs["image encoder"]
    # summed: task (2, 0), kd (0, 2): orthogonal; per batch +1/sqrt(2) and -1/sqrt(2)
    assert enc.cosine == pytest.approx(0.0) and enc.mean_batch_cosine == pytest.approx(0.0, abs=1e-12)
    assert enc.task_norm == pytest.approx(1.0) and enc.kd_norm == pytest.approx(1.0) and enc.params == 2
    bev = figs["BEV encoder"]
    # summed: task (0, 4), kd (0, -1): opposed; the second batch (kd zero) has no cosine
    assert bev.cosine == pytest.approx(-1.0) and bev.mean_batch_cosine == pytest.approx(-1.0)
    assert bev.task_norm == pytest.approx(2.0) and bev.kd_norm == pytest.approx(0.5)
    other = figs["other"]
    assert other.kd_norm == 0 and math.isnan(other.cosine) and math.isnan(other.mean_batch_cosine)
    table = figures_table(list(figs.values()))
    assert "| BEV encoder | 2 | 2 | 0.5 | 0.25 | -1.000 | -1.000 |" in table


def test_group_names_and_bad_input():
    assert group_of("neck.conv.weight") == "image encoder"
    assert group_of("head.task_heads.0.rot.weight") == "head task branches"
    assert group_of("head.shared_conv.0.weight") == "head shared conv"
    with pytest.raises(ValueError, match="same, non-zero number"):
        compare_gradients([{"a": t(1)}], [])
