"""Temporal fusion of the 4D students: a previous frame's BEV moved into the current ego frame.

A temporal student (BEVDet4D, BEVDepth4D, BEVFormer with ``student.temporal``) builds the previous key
frame's BEV with the current extrinsics, so that map lives in the previous LiDAR frame. ``prev_to_current``
is the ego motion between the two frames, read off the cameras (the extrinsics are rigid on the car), and
``warp_bev`` resamples the previous map onto the current grid (docs/architectures.md, Temporal students).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distillbev.structures import BEVGrid


def prev_to_current(cam2lidar: torch.Tensor, prev_cam2lidar: torch.Tensor) -> torch.Tensor:
    """``(B, 4, 4)`` map from the previous frame's BEV (built with the current extrinsics) to the
    current one: ``prev_cam2lidar @ inv(cam2lidar)`` of camera 0 (the extrinsics are static)."""
    return prev_cam2lidar[:, 0] @ torch.linalg.inv(cam2lidar[:, 0])


def warp_bev(prev_bev: torch.Tensor, prev_to_cur: torch.Tensor, grid: BEVGrid) -> torch.Tensor:
    """Resample ``prev_bev`` (B, C, H, W) on ``grid`` into the current frame: ``(B, C, H, W)``.

    Each current cell centre ``p`` reads the previous map at ``prev_to_cur^-1 p`` (x, y part of the
    rigid transform) with bilinear ``grid_sample`` (align_corners=True on cell centres, zeros outside).
    Unlike the reference, positions are cell centres rather than lower corners (no half-cell shift
    under rotation).
    """
    h, w = prev_bev.shape[-2:]
    if (h, w) != grid.shape:
        raise ValueError(f"warp_bev: map is {(h, w)} but the grid is {grid.shape}")
    with torch.autocast(prev_bev.device.type, enabled=False):  # sampling positions and sampling in fp32
        norm = _sampling_grid(prev_to_cur, grid, prev_bev.device)  # (B, H, W, 2)
        out = F.grid_sample(prev_bev.float(), norm, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.to(prev_bev.dtype)


def _sampling_grid(prev_to_cur: torch.Tensor, grid: BEVGrid, device: torch.device) -> torch.Tensor:
    """``(B, H, W, 2)`` grid_sample positions (align_corners=True) of every current cell centre."""
    h, w = grid.shape
    cur_to_prev = torch.linalg.inv(prev_to_cur.float().to(device))  # (B, 4, 4)
    xs = grid.x_min + (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * grid.cell
    ys = grid.y_min + (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * grid.cell
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W)
    cur = torch.stack([gx, gy, torch.ones_like(gx)], -1)  # (H, W, 3) homogeneous 2D
    affine = cur_to_prev[:, [0, 1]][:, :, [0, 1, 3]]  # (B, 2, 3): x, y rows; x, y, translation columns
    src = torch.einsum("bij,hwj->bhwi", affine, cur)  # (B, H, W, 2) metres in the previous frame
    col = (src[..., 0] - grid.x_min) / grid.cell - 0.5  # fractional column index
    row = (src[..., 1] - grid.y_min) / grid.cell - 0.5
    return torch.stack([2 * col / max(w - 1, 1) - 1, 2 * row / max(h - 1, 1) - 1], -1)


def align_previous(
    prev_bev: torch.Tensor, cam2lidar: torch.Tensor, prev_cam2lidar: torch.Tensor, grid: BEVGrid
) -> torch.Tensor:
    """A BEV ``(B, C, H, W)`` on ``grid`` built in the previous LiDAR frame, resampled into the current
    one (``warp_bev``: rotation and translation of the ego motion, zeros where nothing was seen)."""
    return warp_bev(prev_bev, prev_to_current(cam2lidar, prev_cam2lidar), grid)
