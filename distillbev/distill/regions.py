"""Region decomposition of a BEV map (docs/method.md): foreground, false positives, background.

Cells are split like a confusion matrix of the teacher against the ground truth: cells inside GT boxes
(TP and FN) are the **foreground**, cells where the teacher fires but no object exists are the
**false-positive** region, and the rest is **background**. All masks are ``(B, H, W)`` float tensors on
a ``BEVGrid`` (``[..., y, x]`` layout), computed without gradients.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from distillbev.structures import BEVGrid

#: "gaussian" foreground: std of the Gaussian in box-normalised coordinates (edge midpoint = 1).
GAUSSIAN_SIGMA = 0.5


def cell_points(grid: BEVGrid, cell_point: Literal["corner", "center"], device: torch.device | None = None):
    """Metric ``(x, y)`` sample point of every cell, each ``(H, W)``: the lower-left corner or the centre."""
    offset = 0.5 if cell_point == "center" else 0.0
    h, w = grid.shape
    xs = grid.x_min + (torch.arange(w, dtype=torch.float64, device=device) + offset) * grid.cell
    ys = grid.y_min + (torch.arange(h, dtype=torch.float64, device=device) + offset) * grid.cell
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    return gx.float(), gy.float()


def _box_frame_coords(gx: torch.Tensor, gy: torch.Tensor, boxes: torch.Tensor):
    """Cell points in each box's frame (metres): along the length and along the width, each ``(H*W, M)``.

    float32 is plenty (~1e-5 m at 50 m); a point exactly on an edge is ambiguous in any precision.
    """
    b = boxes.float()
    dx = gx.reshape(-1, 1) - b[None, :, 0]  # (HW, M)
    dy = gy.reshape(-1, 1) - b[None, :, 1]
    c, s = torch.cos(b[:, 6]), torch.sin(b[:, 6])
    return dx * c + dy * s, dy * c - dx * s


@torch.no_grad()
def foreground_mask(
    gt_boxes: list[torch.Tensor],
    grid: BEVGrid,
    mode: Literal["hard", "gaussian"] = "hard",
    cell_point: Literal["corner", "center"] = "corner",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise rotated GT boxes in BEV (boxes flattened to ``(x, y, l, w, yaw)``).

    A cell belongs to box ``k`` when its sample point lies inside (or on) the rotated rectangle. Where
    boxes overlap the **lowest box index wins** (as in the released code).

    Args:
        gt_boxes: B tensors ``(M_b, 9)``: ``x, y, z, l, w, h, yaw, vx, vy`` (metres, radians).
        grid: the BEV grid of the map the mask is for.
        mode: ``"hard"`` (1 inside a box) or ``"gaussian"`` (``exp(-(u^2+v^2)/(2 sigma^2))`` of the
            box-normalised coordinates ``u, v in [-1, 1]`` of the winning box; 0 outside every box).
        cell_point: which point of a cell is tested, ``"corner"`` (lower-left; the released code) or
            ``"center"``.

    Returns:
        ``mask`` ``(B, H, W)`` float and ``box_index`` ``(B, H, W)`` long (-1 outside every box).
    """
    if mode not in ("hard", "gaussian"):
        raise ValueError(f"foreground_mask: mode must be 'hard' or 'gaussian', got {mode!r}")
    if cell_point not in ("corner", "center"):
        raise ValueError(f"foreground_mask: cell_point must be 'corner' or 'center', got {cell_point!r}")
    h, w = grid.shape
    device = gt_boxes[0].device if gt_boxes else None
    gx, gy = cell_points(grid, cell_point, device)
    masks, indices = [], []
    for boxes in gt_boxes:
        if boxes.ndim != 2 or boxes.shape[-1] < 7:
            raise ValueError(f"foreground_mask: expected boxes of shape (M, 9), got {tuple(boxes.shape)}")
        if boxes.shape[0] == 0:
            masks.append(torch.zeros(h, w, device=device))
            indices.append(torch.full((h, w), -1, dtype=torch.long, device=device))
            continue
        lx, ly = _box_frame_coords(gx, gy, boxes)  # (HW, M)
        half_l, half_w = boxes[:, 3].float() / 2, boxes[:, 4].float() / 2  # (M,)
        inside = (lx.abs() <= half_l) & (ly.abs() <= half_w)
        any_inside = inside.any(1)  # (HW,)
        first = torch.argmax(inside.to(torch.uint8), dim=1)  # first True = lowest box index
        index = torch.where(any_inside, first, torch.full_like(first, -1))
        if mode == "hard":
            value = any_inside.float()
        else:
            u = lx.gather(1, first[:, None]).squeeze(1) / half_l[first].clamp_min(1e-6)
            v = ly.gather(1, first[:, None]).squeeze(1) / half_w[first].clamp_min(1e-6)
            value = torch.exp(-(u * u + v * v) / (2 * GAUSSIAN_SIGMA**2)) * any_inside
        masks.append(value.reshape(h, w))
        indices.append(index.reshape(h, w))
    return torch.stack(masks), torch.stack(indices)


def _to_resolution(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bring a binary ``(B, 1, h, w)`` mask to ``size``: max-pool (any cell) if finer, nearest if coarser."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    if mask.shape[-2] >= size[0] and mask.shape[-1] >= size[1]:
        return F.adaptive_max_pool2d(mask, size)
    return F.interpolate(mask, size=size, mode="nearest")


@torch.no_grad()
def false_positive_mask(
    teacher_score: torch.Tensor,
    gt_score: torch.Tensor,
    fg_mask: torch.Tensor,
    fp_threshold: float = 0.1,
    gt_threshold: float = 0.1,
) -> torch.Tensor:
    """Cells where the teacher fires but no object exists (dense, per cell; docs/method.md).

    ``raw = (gt_score < gt_threshold) & (teacher_score > fp_threshold)`` at the score resolution, then
    brought to the layer resolution of ``fg_mask`` (max-pool when the scores are finer: a layer cell is
    FP if any score cell in it is; nearest when coarser), then every foreground cell is removed.

    Args:
        teacher_score: ``(B, 1, h, w)`` max-over-classes clamped sigmoid of the teacher heatmaps.
        gt_score: ``(B, 1, h, w)`` max over classes of the CenterPoint Gaussian targets.
        fg_mask: ``(B, H, W)`` foreground mask of the layer (any value > 0 counts as foreground).

    Returns:
        ``(B, H, W)`` float mask in {0, 1}.
    """
    if teacher_score.shape != gt_score.shape or teacher_score.ndim != 4 or teacher_score.shape[1] != 1:
        raise ValueError(
            f"false_positive_mask: teacher_score {tuple(teacher_score.shape)} and gt_score "
            f"{tuple(gt_score.shape)} must both be (B, 1, h, w)"
        )
    if teacher_score.shape[0] != fg_mask.shape[0]:
        raise ValueError(
            f"false_positive_mask: batch {teacher_score.shape[0]} != fg_mask batch {fg_mask.shape[0]}"
        )
    raw = ((gt_score < gt_threshold) & (teacher_score > fp_threshold)).float()  # (B, 1, h, w)
    raw = _to_resolution(raw, tuple(fg_mask.shape[-2:]))[:, 0]  # (B, H, W)
    return raw * (fg_mask <= 0).float()


@torch.no_grad()
def background_mask(fg_mask: torch.Tensor, fp_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, H, W)``: cells neither in the foreground support (``fg > 0``) nor in the FP region."""
    bg = (fg_mask <= 0).float()
    if fp_mask is not None:
        bg = bg * (fp_mask <= 0).float()
    return bg
