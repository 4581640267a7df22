"""What each process of ``test_distributed.py`` runs (spawned; a module of its own so it can be pickled).

Every process builds the same smoke-size BEVDepth student, a random frozen CenterPoint teacher and the
DistillLoss adapters from the same seeds, then
1. one DDP forward + backward on val sample ``rank`` (DistillBEV's full loss): its gradients go to
   ``grads_rank{r}.pt``;
2. ``loop.train`` for a few steps under the same process group: the final parameters go to
   ``params_rank{r}.pt``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from test_training import SMOKE, STUDENT_SMOKE, TEACHER_SMOKE

from distillbev.config import load_config
from distillbev.models import build_model
from distillbev.train.config import RunConfig
from distillbev.train.run import build_distillation, with_teacher_points

ROOT = Path(__file__).resolve().parents[2]


def configs(dataroot: Path) -> tuple[RunConfig, RunConfig]:
    """The distilled student's run config (batch 1 per process; 2 epochs of 2 steps: 4 training samples
    split over 2 processes) and the teacher's."""
    world = [f"data.dataroot={dataroot}"]
    t_cfg = load_config(RunConfig, [ROOT / "configs/teacher/centerpoint_pillar.yaml"], world + TEACHER_SMOKE)
    files = [ROOT / "configs/student/bevdepth.yaml", ROOT / "configs/distill/full.yaml"]
    steps = ["optim.epochs=2", "optim.batch_size=1", "distill.warmup_steps=0"]
    cfg = load_config(RunConfig, files, world + SMOKE + STUDENT_SMOKE + steps)
    return with_teacher_points(cfg, t_cfg), t_cfg


def build(dataroot: Path):
    """Student, frozen teacher and DistillLoss, identical in every process (fixed seeds)."""
    cfg, t_cfg = configs(dataroot)
    torch.manual_seed(0)
    teacher = build_model(t_cfg).eval().requires_grad_(False)
    torch.manual_seed(1)
    student = build_model(cfg)
    distill = build_distillation(cfg, student, teacher)
    return cfg, student, teacher, distill


def val_batch(cfg: RunConfig, index: int):
    """Val sample ``index`` as a batch of one (deterministic: no augmentation)."""
    from distillbev.data.collate import collate
    from distillbev.train.data import make_dataset

    return collate([make_dataset(cfg, train=False)[index]])


def worker(rank: int, world_size: int, port: int, dataroot: str, out: str) -> None:
    """One process of the job (``torch.multiprocessing.spawn`` passes ``rank``)."""
    from distillbev.train import distributed
    from distillbev.train.loop import Trainable, teacher_outputs, train

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(1)
    out_dir = Path(out)
    info = distributed.setup()
    cfg, student, teacher, distill = build(Path(dataroot))
    trainee = Trainable(student, distill).train()
    ddp = distributed.wrap(trainee, info)
    batch = val_batch(cfg, rank)
    losses = ddp(batch, teacher_outputs(teacher, student.head, batch), step=0)
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in trainee.named_parameters() if p.grad is not None}
    torch.save(grads, out_dir / f"grads_rank{rank}.pt")

    cfg, student, teacher, distill = build(Path(dataroot))
    train(cfg, out_dir / f"run{rank}", student, teacher, distill)  # tears the process group down
    params = {f"model.{n}": p.detach() for n, p in student.named_parameters()}
    params |= {f"distill.{n}": p.detach() for n, p in distill.named_parameters()}
    torch.save(params, out_dir / f"params_rank{rank}.pt")
