"""Learning-rate schedules: hand-checked values at the key points."""

import math

import pytest

from distillbev.train.config import OptimConfig
from distillbev.train.schedule import lr_multiplier


def test_onecycle_shape():
    cfg = OptimConfig(schedule="onecycle", warmup_fraction=0.4)
    assert lr_multiplier(0, 100, cfg, 10) == pytest.approx(0.1)
    assert lr_multiplier(40, 100, cfg, 10) == pytest.approx(1.0)
    assert lr_multiplier(20, 100, cfg, 10) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_multiplier(100, 100, cfg, 10) == pytest.approx(1e-4)
    values = [lr_multiplier(s, 100, cfg, 10) for s in range(40, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_step_schedule_decays_at_epochs():
    cfg = OptimConfig(schedule="step", warmup_fraction=0.0, step_epochs=(2, 3))
    assert lr_multiplier(5, 40, cfg, 10) == 1.0
    assert lr_multiplier(20, 40, cfg, 10) == pytest.approx(0.1)
    assert lr_multiplier(35, 40, cfg, 10) == pytest.approx(0.01)


def test_cosine_ends_low():
    cfg = OptimConfig(schedule="cosine", warmup_fraction=0.1)
    assert lr_multiplier(10, 100, cfg, 10) == pytest.approx(1.0)
    assert lr_multiplier(55, 100, cfg, 10) == pytest.approx(
        1e-3 + (1 - 1e-3) * (1 + math.cos(math.pi / 2)) / 2
    )
    assert lr_multiplier(100, 100, cfg, 10) == pytest.approx(1e-3)
