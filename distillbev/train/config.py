"""The schema of a training run: data, model (teacher or student), optimisation, distillation.

One ``RunConfig`` describes every run. ``model`` says which network is trained: a LiDAR teacher
(``centerpoint`` or ``mvp``, built from ``teacher``) or a camera student (built from ``student``).
``distill`` is used only when a teacher checkpoint is given (``distillbev distill``/``train --teacher``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from distillbev.data.config import ReaderConfig
from distillbev.data.virtual_points import MVPConfig
from distillbev.distill.config import DistillConfig
from distillbev.models.centerpoint import CenterPointConfig
from distillbev.models.student_config import StudentConfig


@dataclass(frozen=True)
class DataConfig:
    """Where the nuScenes-format data is and how it is read."""

    dataroot: str = "runs/demo/data-small"  # nuScenes-format dataroot (relative to the working dir)
    version: str = "v1.0-synthetic"  # table folder under dataroot
    train_split: str = "synth_train"
    val_split: str = "synth_val"
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    num_workers: int = 0  # DataLoader worker processes (0 = main process; 2 cores => 0 or 1)
    max_train_samples: int = 0  # use only the first N training samples (0 = all); for smoke runs
    max_val_samples: int = (
        0  # evaluate on the first N val samples (0 = all); the devkit scores the rest empty
    )
    cbgs: bool = False  # class-balanced resampling of the training split (CBGS, data/cbgs.py)

    def __post_init__(self) -> None:
        for key in ("num_workers", "max_train_samples", "max_val_samples"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW + schedule; batch and learning-rate scaling rule: lr scales linearly with total batch."""

    epochs: int = 12
    batch_size: int = 8  # per process
    lr: float = 2e-3
    weight_decay: float = 0.01
    schedule: Literal["onecycle", "step", "cosine", "constant"] = "onecycle"
    warmup_fraction: float = 0.3  # onecycle: fraction of steps ramping up; others: linear warm-up fraction
    step_epochs: tuple[int, ...] = ()  # "step": multiply lr by 0.1 at these epochs
    grad_clip: float = 35.0  # max gradient norm (0 = off)
    accumulate: int = 1  # gradient accumulation steps
    amp: Literal["off", "bf16", "fp16"] = "off"
    channels_last: bool = False
    fused_adamw: bool = False  # torch.optim.AdamW(fused=True) where supported

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "accumulate"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for key in ("weight_decay", "grad_clip"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.warmup_fraction <= 1:
            raise ValueError(f"warmup_fraction must be in [0, 1], got {self.warmup_fraction}")


@dataclass(frozen=True)
class PretrainConfig:
    """``distillbev pretrain``: the student's image backbone + neck on dense image-plane targets of the
    train split (docs/pretraining.md). The architecture, image size and depth bins are ``student``'s."""

    epochs: int = 6
    batch_size: int = 4  # samples per step (x 6 cameras)
    lr: float = 4e-3
    weight_decay: float = 0.01
    depth_weight: float = 1.0  # LiDAR depth bins (softmax BCE over cells with a return)
    occupancy_weight: float = 1.0  # per-class pixel share of each cell, from <dataroot>/masks when present
    center_weight: float = 1.0  # heatmaps of projected 3D box centres per class
    # (sin, cos) of each box's angle to the viewing ray at its projected centre (models/image_heading.py);
    # 0 = off (the shipped encoder was pretrained without it)
    heading_weight: float = 0.0
    head_channels: int = 64  # width of the three dense heads (discarded after pretraining)
    val_samples: int = 64  # val samples scored after training (figures only, never for selection)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(
                f"pretrain needs epochs >= 1, batch_size >= 1 and lr > 0 (got {self.epochs}, "
                f"{self.batch_size}, {self.lr})"
            )
        if min(self.depth_weight, self.occupancy_weight, self.center_weight, self.heading_weight) < 0:
            raise ValueError("pretrain loss weights must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    """A whole training run."""

    model: Literal["centerpoint", "mvp", "student"] = "centerpoint"  # student kind: student.kind/temporal
    data: DataConfig = field(default_factory=DataConfig)
    teacher: CenterPointConfig = field(default_factory=CenterPointConfig)
    mvp: MVPConfig = field(default_factory=MVPConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    seed: int = 0
    eval_every_epochs: int = 0  # 0 = only at the end
    log_every_steps: int = 20
    threads: int = 0  # torch.set_num_threads (0 = leave torch's default)
    tune_malloc: bool = True  # CPU + glibc (else no effect): reuse freed memory, no mmap (train/malloc.py)
    # Path of a teacher checkpoint whose head task branches initialise a plain (not distilled) student,
    # as distill.inherit_head does for a distilled one (train/inherit.py); "" = none.
    inherit_head_from: str = ""

    def __post_init__(self) -> None:
        # seed: numpy's SeedSequence (augmentation draws) takes non-negative entropy only.
        for key, low in (("seed", 0), ("eval_every_epochs", 0), ("threads", 0), ("log_every_steps", 1)):
            if getattr(self, key) < low:
                raise ValueError(f"{key} must be >= {low}, got {getattr(self, key)}")
        self._check_shared_values()

    def _check_shared_values(self) -> None:
        """Values that two sections state and must agree on. ``student.image_size`` owns the network's
        input size: a student's reader must resize the images to it. The reader's point range decides
        which points and GT boxes a sample holds: the model's grid must cover it in x and y."""
        reader = self.data.reader
        if self.model == "student":
            if tuple(reader.image.final_size) != tuple(self.student.image_size):
                raise ValueError(
                    f"data.reader.image.final_size {tuple(reader.image.final_size)} differs from "
                    f"student.image_size {tuple(self.student.image_size)}: the reader must resize the "
                    "images to the student's input size (set final_size to the same value)"
                )
            name, (x0, y0, x1, y1) = "student.bev_range", self.student.bev_range
        else:
            r = self.teacher.point_range
            name, (x0, y0, x1, y1) = "teacher.point_range", (r[0], r[1], r[3], r[4])
        p, eps = reader.point_range, 1e-6
        if p[0] < x0 - eps or p[1] < y0 - eps or p[3] > x1 + eps or p[4] > y1 + eps:
            raise ValueError(
                f"data.reader.point_range {tuple(p)} reaches beyond {name} in x or y ({x0}..{x1}, "
                f"{y0}..{y1} m): ground truth there would lie outside the model's grid (make them equal)"
            )

    @property
    def is_teacher(self) -> bool:
        """True for the LiDAR teachers."""
        return self.model in ("centerpoint", "mvp")
