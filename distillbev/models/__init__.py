"""Model builders: one plain function per family, chosen by the run's ``model`` field."""

from __future__ import annotations

from typing import TYPE_CHECKING

from distillbev.models.base import BEVDetector

if TYPE_CHECKING:
    from distillbev.train.config import RunConfig


def build_model(cfg: RunConfig) -> BEVDetector:
    """The teacher or student a run config describes."""
    match cfg.model:
        case "centerpoint":
            from distillbev.models.centerpoint import build_centerpoint

            return build_centerpoint(cfg.teacher)
        case "mvp":
            from distillbev.models.mvp import build_mvp

            return build_mvp(cfg.teacher, cfg.mvp)
        case "student":
            from distillbev.models.bevdet import build_student

            return build_student(cfg.student)
    raise ValueError(f"unknown model {cfg.model!r}")
