"""Adaptive scaling (docs/method.md): normalise each region so that no region dominates by its size.

- inside GT box ``k``: ``1/sqrt(n_k)`` with ``n_k = l_k * w_k / cell^2`` the box's BEV area in cells,
  so an object's total weight grows like ``sqrt(n_k)`` (sub-linearly in its size);
- background: ``1/N_bg`` (all background cells of a sample together weigh 1);
- false positives: ``1/N_fp`` (all FP cells of a sample together weigh 1).

All maps are ``(B, H, W)``, zero outside their region, computed without gradients.
"""

from __future__ import annotations

import torch

from distillbev.structures import BEVGrid


@torch.no_grad()
def foreground_scale(box_index: torch.Tensor, gt_boxes: list[torch.Tensor], grid: BEVGrid) -> torch.Tensor:
    """``(B, H, W)``: ``1/sqrt(n_k)`` at cells of box ``k`` (``box_index`` from ``foreground_mask``), else 0.

    ``n_k = l_k * w_k / cell^2`` is the object's BEV area in cells of ``grid`` (not the count of
    covered cells), so a box smaller than a cell gets a scale above 1 (a 0.4 m cone at 0.8 m: 2.0).
    """
    if len(gt_boxes) != box_index.shape[0]:
        raise ValueError(f"foreground_scale: {len(gt_boxes)} box sets for a batch of {box_index.shape[0]}")
    out = torch.zeros(box_index.shape, dtype=torch.float32, device=box_index.device)
    for b, boxes in enumerate(gt_boxes):
        if boxes.shape[0] == 0:
            continue
        area = (boxes[:, 3] * boxes[:, 4]).to(torch.float64).clamp_min(1e-12)  # (M,) m^2
        scale = (grid.cell / area.sqrt()).to(torch.float32).to(box_index.device)  # 1/sqrt(area/cell^2)
        inside = box_index[b] >= 0
        out[b][inside] = scale[box_index[b][inside]]
    return out


@torch.no_grad()
def region_average_scale(mask: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)``: ``mask / N`` per sample, ``N`` = number of cells in the region (0 if it is empty)."""
    count = (mask > 0).flatten(1).sum(1).to(torch.float32)  # (B,)
    inv = torch.where(count > 0, 1.0 / count.clamp_min(1.0), torch.zeros_like(count))
    return (mask > 0).float() * inv[:, None, None]


@torch.no_grad()
def background_scale(bg_mask: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)``: ``1/N_bg`` on background cells, ``N_bg = HW - N_fg [- N_fp]``; sums to 1 per sample."""
    return region_average_scale(bg_mask)


@torch.no_grad()
def false_positive_scale(fp_mask: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)``: ``1/N_fp`` on FP cells (``fp_scale_mode='average'``); sums to 1 per sample."""
    return region_average_scale(fp_mask)
