"""CenterHead training targets and losses: Gaussian radius, Gaussian heatmaps, regression targets, focal loss.

Targets follow CenterPoint (docs/architectures.md, The shared head): per task group a class heatmap
with a Gaussian at every object's centre cell, and at that cell a 10-vector
``(dx, dy, z, log l, log w, log h, sin yaw, cos yaw, vx, vy)`` where (dx, dy) is the sub-cell offset.
Everything is computed for the whole batch at once (no Python loop over boxes or cells).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from distillbev.structures import BOX_DIM, CLASS_NAMES, BEVGrid

#: Regression slots per task and sample (CenterPoint's ``max_objs``); later objects get no target.
MAX_OBJECTS = 500
#: Length of a box regression target / prediction vector.
CODE_SIZE = 10


@dataclass
class HeadTargets:
    """CenterHead targets of a batch, one list entry per task group."""

    heatmaps: list[torch.Tensor]  # per task (B, n_t, H, W) Gaussian heatmap, 1.0 at object centres
    indices: list[torch.Tensor]  # per task (B, M) long, centre cell y * W + x
    masks: list[torch.Tensor]  # per task (B, M) bool, slot holds an object
    box_targets: list[torch.Tensor]  # per task (B, M, 10) dx, dy, z, log l, log w, log h, sin, cos, vx, vy


def gaussian_radius(
    length_cells: torch.Tensor | float, width_cells: torch.Tensor | float, overlap: float = 0.1
) -> torch.Tensor | float:
    """CornerNet's Gaussian radius (cells, not floored) for a box footprint of ``length x width`` cells.

    The minimum of three quadratic roots, each divided by 2 rather than by 2a as CenterPoint does (the
    reference's "/2", kept so that radii match the released teachers). Symmetric in length and width;
    works element-wise on tensors or on floats.
    """
    sqrt = torch.sqrt if isinstance(length_cells, torch.Tensor) else math.sqrt
    lw, s = length_cells * width_cells, length_cells + width_cells
    b1, c1 = s, lw * (1 - overlap) / (1 + overlap)
    r1 = (b1 + sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * s, (1 - overlap) * lw
    r2 = (b2 + sqrt(b2**2 - 16 * c2)) / 2
    b3, c3 = -2 * overlap * s, (overlap - 1) * lw
    r3 = (b3 + sqrt(b3**2 - 16 * overlap * c3)) / 2
    if isinstance(r1, torch.Tensor):
        return torch.minimum(torch.minimum(r1, r2), r3)
    return min(r1, r2, r3)


def draw_gaussian(
    heatmap: torch.Tensor, channels: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor
) -> torch.Tensor:
    """Draw one Gaussian per object into ``heatmap`` (C, H, W) in place, by element-wise max.

    ``channels`` (N,) long channel of each object, ``centers`` (N, 2) long integer cell (x, y),
    ``radii`` (N,) long radius r. Each Gaussian is a ``(2r+1)^2`` square window with
    ``sigma = (2r+1)/6``, exactly 1 at the centre cell, values below float64 eps zeroed, clipped to
    the grid. Returns ``heatmap``.
    """
    c, h, w = heatmap.shape
    if len(channels) == 0:
        return heatmap
    r_max = int(radii.max())
    offs = torch.arange(-r_max, r_max + 1, device=heatmap.device)  # (D,)
    dy, dx = torch.meshgrid(offs, offs, indexing="ij")  # (D, D)
    dx, dy = dx.flatten()[None], dy.flatten()[None]  # (1, D*D)
    r = radii.to(torch.float64)[:, None]  # (N, 1)
    sigma = (2 * r + 1) / 6
    value = torch.exp(-(dx**2 + dy**2).to(torch.float64) / (2 * sigma**2))  # (N, D*D)
    value = torch.where(value < torch.finfo(torch.float64).eps, torch.zeros_like(value), value)
    x, y = centers[:, :1] + dx, centers[:, 1:] + dy  # (N, D*D)
    inside = (
        (dx.abs() <= radii[:, None]) & (dy.abs() <= radii[:, None]) & (x >= 0) & (x < w) & (y >= 0) & (y < h)
    )
    flat = (channels[:, None] * h + y) * w + x
    flat = torch.where(inside, flat, torch.zeros_like(flat))
    value = torch.where(inside, value, torch.zeros_like(value)).to(heatmap.dtype)
    # The heatmap starts non-negative, so the zeros written for clipped cells never win the max.
    heatmap.view(-1).scatter_reduce_(0, flat.flatten(), value.flatten(), reduce="amax")
    return heatmap


def build_head_targets(
    gt_boxes: list[torch.Tensor],
    gt_labels: list[torch.Tensor],
    grid: BEVGrid,
    tasks: tuple[tuple[str, ...], ...],
    min_radius: int,
    overlap: float,
    device: torch.device,
    max_objects: int = MAX_OBJECTS,
) -> HeadTargets:
    """CenterHead targets for B samples of boxes ``(M_b, 9)`` and labels ``(M_b,)`` (CLASS_NAMES indices).

    A box belongs to the task group that lists its class (boxes of other classes are ignored) and takes
    the next of the task's ``max_objects`` slots in input order. Its centre cell is
    ``floor((x - x_min) / cell), floor((y - y_min) / cell)``; a box whose cell is off the grid, or with
    a non-positive length or width, keeps its slot but gets no target (mask False), as in CenterPoint.
    """
    if len(gt_boxes) != len(gt_labels):
        raise ValueError(f"build_targets: {len(gt_boxes)} gt_boxes entries but {len(gt_labels)} gt_labels")
    for b, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
        if boxes.ndim != 2 or boxes.shape[1] != BOX_DIM or labels.shape != boxes.shape[:1]:
            raise ValueError(
                f"build_targets: sample {b}: gt_boxes must be (M, {BOX_DIM}) and gt_labels (M,), "
                f"got {tuple(boxes.shape)} and {tuple(labels.shape)}"
            )
        if not bool(torch.isfinite(boxes).all()):
            raise ValueError(f"build_targets: sample {b}: gt_boxes contains NaN or inf")
    n_b, n_t, (h, w) = len(gt_boxes), len(tasks), grid.shape
    task_of = torch.full((len(CLASS_NAMES),), -1, dtype=torch.long)
    chan_of = torch.zeros(len(CLASS_NAMES), dtype=torch.long)
    for t, names in enumerate(tasks):
        for c, name in enumerate(names):
            task_of[CLASS_NAMES.index(name)], chan_of[CLASS_NAMES.index(name)] = t, c
    chan_offset = torch.tensor([0] + [len(names) for names in tasks]).cumsum(0)  # (T+1,)

    boxes = torch.cat([bx.to(device, torch.float32) for bx in gt_boxes]) if n_b else torch.zeros(0, BOX_DIM)
    labels = (
        torch.cat([lb.to(device, torch.long) for lb in gt_labels])
        if n_b
        else torch.zeros(0, dtype=torch.long)
    )
    if bool(((labels < 0) | (labels >= len(CLASS_NAMES))).any()):
        raise ValueError(
            f"build_targets: gt_labels must lie in [0, {len(CLASS_NAMES)}), got {labels.unique().tolist()}"
        )
    sample = torch.repeat_interleave(
        torch.arange(n_b, device=device), torch.tensor([len(x) for x in gt_boxes], device=device)
    )
    task, chan = task_of.to(device)[labels], chan_of.to(device)[labels]  # (N,)
    # Slot = rank of the box among the earlier boxes of the same (sample, task).
    key = torch.where(task >= 0, sample * n_t + task, torch.zeros_like(task))
    onehot = torch.nn.functional.one_hot(key, n_b * n_t) if len(key) else key.new_zeros((0, n_b * n_t))
    slot = onehot.cumsum(0).gather(1, key[:, None])[:, 0] - 1  # (N,)
    in_slot = (task >= 0) & (slot < max_objects)

    centre = torch.stack([(boxes[:, 0] - grid.x_min) / grid.cell, (boxes[:, 1] - grid.y_min) / grid.cell], 1)
    cell = torch.floor(centre).long()  # (N, 2) x, y
    on_grid = (cell[:, 0] >= 0) & (cell[:, 0] < w) & (cell[:, 1] >= 0) & (cell[:, 1] < h)
    size_ok = (boxes[:, 3] > 0) & (boxes[:, 4] > 0)
    valid = in_slot & on_grid & size_ok  # (N,)

    l_cells, w_cells = boxes[:, 3].double() / grid.cell, boxes[:, 4].double() / grid.cell
    radius = gaussian_radius(l_cells.clamp(min=1e-6), w_cells.clamp(min=1e-6), overlap)
    radius = torch.clamp(torch.floor(radius).long(), min=min_radius)  # (N,)

    total_channels = int(chan_offset[-1])
    heat = torch.zeros((n_b * total_channels, h, w), device=device)  # (B*C, H, W)
    v = valid.nonzero(as_tuple=True)[0]
    flat_channel = sample[v] * total_channels + chan_offset.to(device)[task[v]] + chan[v]
    draw_gaussian(heat, flat_channel, cell[v], radius[v])
    heat = heat.view(n_b, total_channels, h, w)

    indices = torch.zeros((n_b, n_t, max_objects), dtype=torch.long, device=device)
    masks = torch.zeros((n_b, n_t, max_objects), dtype=torch.bool, device=device)
    targets = torch.zeros((n_b, n_t, max_objects, CODE_SIZE), device=device)
    bx = boxes[v]
    code = torch.cat(
        [
            centre[v] - cell[v].float(),  # sub-cell offset in [0, 1)
            bx[:, 2:3],
            torch.log(bx[:, 3:6].clamp(min=1e-6)),
            torch.sin(bx[:, 6:7]),
            torch.cos(bx[:, 6:7]),
            bx[:, 7:9],
        ],
        1,
    )  # (V, 10)
    where = (sample[v], task[v], slot[v])
    indices[where] = cell[v, 1] * w + cell[v, 0]
    masks[where] = True
    targets[where] = code
    return HeadTargets(
        heatmaps=[heat[:, int(chan_offset[t]) : int(chan_offset[t + 1])] for t in range(n_t)],
        indices=list(indices.unbind(1)),
        masks=list(masks.unbind(1)),
        box_targets=list(targets.unbind(1)),
    )


def clip_sigmoid(logits: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """``clamp(sigmoid(logits), eps, 1 - eps)`` (CenterPoint's ``clip_sigmoid``)."""
    return torch.sigmoid(logits.float()).clamp(eps, 1 - eps)


def gaussian_focal_loss(
    pred: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, gamma: float = 4.0, eps: float = 1e-12
) -> torch.Tensor:
    """Summed (not normalised) Gaussian focal loss of probabilities ``pred`` against heatmap ``target``.

    ``-sum [Y=1] (1-p)^alpha log(p) - sum (1-Y)^gamma p^alpha log(1-p)`` (CornerNet / mmdet
    ``GaussianFocalLoss``); ``eps`` inside the logs as in mmdet.
    """
    pos = target.eq(1).to(pred.dtype)
    pos_loss = -torch.log(pred + eps) * (1 - pred).pow(alpha) * pos
    neg_loss = -torch.log(1 - pred + eps) * pred.pow(alpha) * (1 - target).pow(gamma)
    return pos_loss.sum() + neg_loss.sum()
