"""Head inheritance: the student's CenterHead task branches start as a copy of the teacher's.

DistillBEV's released launch scripts set ``inherit_head=True``: at the start of distillation the
student's ``head.task_heads`` (one ``SeparateHead`` per task group: heatmap, reg, height, dim, rot, vel
branches) are loaded from the teacher checkpoint. The shared 3x3 conv is not copied: its input is the
student's FPN map, whose width differs from the teacher's. The task branches read the shared conv's
``share_channels`` output, so they fit whenever both heads have the same tasks and widths.

Two ways in (``train/run.py``): ``distill.inherit_head`` (on by default) when distilling from a teacher,
and ``inherit_head_from=<teacher checkpoint>`` for a plain student, so that a baseline can be given the
same initialisation as the distilled run it is compared with.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from torch import nn

from distillbev.config import ConfigError

#: How to switch inheritance off, named in every mismatch error.
SWITCH_OFF = "set distill.inherit_head=false (or leave inherit_head_from empty) to train without it"


def inherit_head(student: nn.Module, teacher: nn.Module) -> None:
    """Copy ``teacher.head.task_heads`` (weights and BatchNorm statistics) into ``student.head.task_heads``.

    Nothing else of the student changes. Raises ``ConfigError`` when the task groups, the velocity scale
    or any parameter shape differ, naming the first mismatched parameter with both shapes.
    """
    s_head, t_head = student.head, teacher.head
    if tuple(s_head.tasks) != tuple(t_head.tasks):
        raise ConfigError(
            f"head inheritance: the student's head.tasks {_tasks(s_head.tasks)} differ from the "
            f"teacher's {_tasks(t_head.tasks)}; {SWITCH_OFF}"
        )
    if s_head.cfg.velocity_scale != t_head.cfg.velocity_scale:
        # The copied vel branch predicts v / velocity_scale of the teacher's head.
        raise ConfigError(
            f"head inheritance: head.velocity_scale is {s_head.cfg.velocity_scale} in the student but "
            f"{t_head.cfg.velocity_scale} in the teacher; {SWITCH_OFF}"
        )
    s_state, t_state = s_head.task_heads.state_dict(), t_head.task_heads.state_dict()
    for name, value in s_state.items():
        theirs = t_state.get(name)
        shape = "missing" if theirs is None else tuple(theirs.shape)
        if theirs is None or theirs.shape != value.shape:
            raise ConfigError(
                f"head inheritance: head.task_heads.{name} is {tuple(value.shape)} in the student but "
                f"{shape} in the teacher (compare head.share_channels / head.head_channels); {SWITCH_OFF}"
            )
    s_head.task_heads.load_state_dict(t_state, strict=True)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in ``chunk``-byte pieces (checkpoints can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def inherited_line(path: Path) -> str:
    """The run log's record of where the head task branches came from: path and short sha256."""
    return f"head task branches inherited from {path} (sha256 {file_sha256(path)[:12]})"


def _tasks(tasks: tuple[tuple[str, ...], ...]) -> list[list[str]]:
    return [list(t) for t in tasks]
