"""The batch every teacher and student consumes (built by ``distillbev.data.collate``).

All 3D quantities are in the (augmented) key-frame LIDAR_TOP frame (see ``distillbev.structures``).
Images are already normalised; camera geometry follows the BEVDet convention:
pixel = post_rot @ (K @ p_cam / depth) + post_tran, and p_lidar = cam2lidar @ p_cam.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch


@dataclass
class Batch:
    """A collated batch of B samples with N cameras."""

    images: torch.Tensor  # (B, N, 3, H, W) float, normalised (ImageNet mean/std)
    intrinsics: torch.Tensor  # (B, N, 3, 3) camera matrix K of the un-augmented image
    cam2lidar: torch.Tensor  # (B, N, 4, 4) camera -> (augmented) key LiDAR frame; BEV augmentation folded in
    post_rot: torch.Tensor  # (B, N, 3, 3) image augmentation, top-left 2x2 used, [2,2] = 1
    post_tran: torch.Tensor  # (B, N, 3) image augmentation translation (z = 0)
    depth: torch.Tensor  # (B, N, H, W) LiDAR depth (m) per augmented pixel, 0 = no return (key frame only)
    points: list[torch.Tensor]  # B x (P_b, C): x, y, z, intensity, time lag (s) [, extra channels]
    gt_boxes: list[torch.Tensor]  # B x (M_b, 9): x, y, z, l, w, h, yaw, vx, vy
    gt_labels: list[torch.Tensor]  # B x (M_b,) long, index into CLASS_NAMES
    bev_aug: torch.Tensor  # (B, 4, 4) the BEV augmentation applied (identity when none)
    lidar2global: torch.Tensor  # (B, 4, 4) un-augmented key LiDAR frame -> global frame (for results)
    sample_tokens: list[str] = field(default_factory=list)
    # Temporal students: the previous key frame, lifted into the current (augmented) LiDAR frame.
    prev_images: torch.Tensor | None = None  # (B, N, 3, H, W)
    prev_cam2lidar: torch.Tensor | None = None  # (B, N, 4, 4) prev camera -> current augmented LiDAR
    has_prev: torch.Tensor | None = None  # (B,) bool, False where the current frame was duplicated
    # Image pretraining: per-pixel class of each augmented image (0 = none, k + 1 = CLASS_NAMES[k]).
    class_masks: torch.Tensor | None = None  # (B, N, H, W) long

    @property
    def batch_size(self) -> int:
        """Number of samples B."""
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        """A copy with every tensor moved to ``device``."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = v.to(device, non_blocking=True)
            elif isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
                v = [t.to(device, non_blocking=True) for t in v]
            out[f.name] = v
        return Batch(**out)
