"""Model builders: one plain function per family, chosen by the run's ``model`` field."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

from distillbev.models.base import BEVDetector

if TYPE_CHECKING:
    from distillbev.data.virtual_points import MVPConfig
    from distillbev.models.centerpoint import CenterPointConfig
    from distillbev.models.student_config import StudentConfig


class ModelSpec(Protocol):
    """What ``build_model`` reads from a run config (``train.config.RunConfig`` is one): the model kind
    and the config of each family. The models never import the training code."""

    model: Literal["centerpoint", "mvp", "student"]
    teacher: CenterPointConfig
    mvp: MVPConfig
    student: StudentConfig


def build_model(cfg: ModelSpec) -> BEVDetector:
    """The teacher or student a run config describes."""
    match cfg.model:
        case "centerpoint":
            from distillbev.models.centerpoint import build_centerpoint

            return build_centerpoint(cfg.teacher)
        case "mvp":
            from distillbev.models.mvp import build_mvp

            return build_mvp(cfg.teacher, cfg.mvp)
        case "student":
            from distillbev.models.students import build_student

            return build_student(cfg.student)
    raise ValueError(f"unknown model {cfg.model!r}")
