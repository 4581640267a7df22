"""Do the imitation loss and the task losses pull the student's weights the same way?

For a distilled run's checkpoint (student + its adapters) and the teacher, take training batches
(augmented as in training, the network in training mode) and compute, per group of the student's
parameters (image encoder, depth net, BEV encoder, FPN, head, ...), the gradient of the task loss
(heatmap, box, depth, image-plane terms) and the gradient of the imitation loss (``kd_*``, at the
run's ``loss_weight``). Reported per group: the two gradient norms, their ratio, and the cosine
between them, both of the gradients summed over the batches (the direction an optimiser follows on
average) and averaged per batch. A cosine near -1 means the two objectives undo each other's
updates; near 0 with a large imitation norm, they compete for the step; near +1, they agree.
docs/results/levers-8ep/results.md, "Where the imitation loss pulls", reads these figures.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from distillbev.data.batch import Batch

#: Parameter-name prefixes grouped as reported (the first match wins; anything else is "other").
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("image encoder", ("backbone.", "neck.")),
    ("depth net", ("depth_net.",)),
    ("image-plane heads", ("image_aux.", "image_heading.")),
    ("BEV encoder", ("bev_encoder.",)),
    ("FPN (H)", ("fpn.",)),
    ("head shared conv", ("head.shared_conv.",)),
    ("head task branches", ("head.task_heads.",)),
)


def group_of(name: str) -> str:
    """The reporting group of parameter ``name``."""
    for group, prefixes in GROUPS:
        if name.startswith(prefixes):
            return group
    return "other"


@dataclass(frozen=True)
class GroupFigures:
    """Task vs imitation gradient of one parameter group."""

    group: str
    params: int
    task_norm: float  # of the gradient summed over the batches, divided by their number
    kd_norm: float
    cosine: float  # of the summed gradients (nan when either is zero)
    mean_batch_cosine: float  # per batch, averaged over the batches where both are non-zero


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return float("nan")
    return float(a @ b / (na * nb))


def compare_gradients(
    task_grads: list[dict[str, torch.Tensor]], kd_grads: list[dict[str, torch.Tensor]]
) -> list[GroupFigures]:
    """Per group, the figures of ``GroupFigures`` from per-batch gradients ``{param name: grad}``
    (a parameter absent from a dict, or None, has a zero gradient in that batch)."""
    if len(task_grads) != len(kd_grads) or not task_grads:
        raise ValueError("need the same, non-zero number of task and imitation gradients")
    names = sorted({n for g in (*task_grads, *kd_grads) for n in g})
    shapes = {n: next(g[n] for g in (*task_grads, *kd_grads) if g.get(n) is not None).shape for n in names}
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(group_of(n), []).append(n)

    def flat(grads: dict[str, torch.Tensor], members: list[str]) -> torch.Tensor:
        parts = [
            grads[n].reshape(-1).double() if grads.get(n) is not None else torch.zeros(shapes[n].numel())
            for n in members
        ]
        return torch.cat([p.double() for p in parts])

    order = [g for g, _ in GROUPS] + ["other"]
    out = []
    for group in sorted(groups, key=order.index):
        members = groups[group]
        t = [flat(g, members) for g in task_grads]
        k = [flat(g, members) for g in kd_grads]
        t_sum, k_sum = sum(t), sum(k)
        per_batch = [_cos(a, b) for a, b in zip(t, k, strict=True)]
        per_batch = [c for c in per_batch if c == c]
        out.append(
            GroupFigures(
                group=group,
                params=sum(shapes[n].numel() for n in members),
                task_norm=float(t_sum.norm()) / len(t),
                kd_norm=float(k_sum.norm()) / len(k),
                cosine=_cos(t_sum, k_sum),
                mean_batch_cosine=sum(per_batch) / len(per_batch) if per_batch else float("nan"),
            )
        )
    return out


def batch_gradients(
    student: torch.nn.Module, distill: torch.nn.Module, teacher: torch.nn.Module, batch: Batch, step: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The task-loss and imitation-loss gradients of the student's parameters on ``batch``."""
    from distillbev.train.loop import teacher_outputs

    params = {n: p for n, p in student.named_parameters() if p.requires_grad}
    taps, preds = student(batch)
    task = sum(student.loss(batch, taps, preds).values())
    t_taps, t_score, gt_score = teacher_outputs(teacher, student.head, batch)
    kd = sum(distill(taps, t_taps, batch.gt_boxes, t_score, gt_score, step=step).values())
    g_task = torch.autograd.grad(task, list(params.values()), retain_graph=True, allow_unused=True)
    g_kd = torch.autograd.grad(kd, list(params.values()), allow_unused=True)
    return dict(zip(params, g_task, strict=True)), dict(zip(params, g_kd, strict=True))


def gradient_conflict(
    student_ckpt: Path, teacher_ckpt: Path, batches: int = 8, seed: int = 0
) -> list[GroupFigures]:
    """Load a distilled run (student + adapters) and its teacher, and compare the two gradients over
    ``batches`` training batches of the run's own data and augmentation."""
    from distillbev.train.checkpoint import load_model, load_state_strict, read_checkpoint
    from distillbev.train.data import make_loader
    from distillbev.train.run import build_distillation

    blob = read_checkpoint(student_ckpt)
    if "distill" not in blob.get("extra_modules", {}):
        raise ValueError(f"{student_ckpt}: not a distilled run (no adapters stored); nothing to compare")
    student, cfg, _ = load_model(student_ckpt)
    teacher, t_cfg, _ = load_model(teacher_ckpt)
    # The student's batches carry the teacher's LiDAR sweeps, as in the distilled training.
    cfg = replace(
        cfg,
        seed=seed,
        data=replace(
            cfg.data, num_workers=0, reader=replace(cfg.data.reader, num_sweeps=t_cfg.data.reader.num_sweeps)
        ),
    )
    distill = build_distillation(cfg, student, teacher)
    load_state_strict(distill, blob["extra_modules"]["distill"], f"adapters in {student_ckpt}")
    student.train()
    distill.train()
    teacher.eval().requires_grad_(False)
    task_grads, kd_grads = [], []
    for i, batch in enumerate(make_loader(cfg, train=True)):
        if i == batches:
            break
        g_t, g_k = batch_gradients(student, distill, teacher, batch, step=int(blob["step"]))
        task_grads.append(g_t)
        kd_grads.append(g_k)
    return compare_gradients(task_grads, kd_grads)


def figures_table(figures: list[GroupFigures]) -> str:
    """A Markdown table of ``figures``."""
    lines = [
        "| parameters | count | task grad norm | imitation grad norm | ratio "
        "| cosine (summed) | cosine (per batch) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for f in figures:
        ratio = f.kd_norm / f.task_norm if f.task_norm else float("nan")
        lines.append(
            f"| {f.group} | {f.params} | {f.task_norm:.3g} | {f.kd_norm:.3g} | {ratio:.2f} | "
            f"{f.cosine:+.3f} | {f.mean_batch_cosine:+.3f} |"
        )
    return "\n".join(lines) + "\n"
