"""``collate``: a list of ``Sample`` -> one ``Batch`` (points and boxes stay per-sample lists)."""

from __future__ import annotations

import numpy as np
import torch

from distillbev.data.batch import Batch
from distillbev.data.nuscenes import Sample


def _stack(arrays: list[np.ndarray | None]) -> torch.Tensor | None:
    if any(a is None for a in arrays):
        return None
    return torch.from_numpy(np.ascontiguousarray(np.stack(arrays))).float()


def _stack_labels(arrays: list[np.ndarray | None]) -> torch.Tensor | None:
    if any(a is None for a in arrays):
        return None
    return torch.from_numpy(np.stack(arrays)).long()


def collate(samples: list[Sample]) -> Batch:
    """Stack fixed-size fields; keep variable-size ones (points, boxes) as lists of tensors."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    images = _stack([s.images for s in samples])
    n_cam = samples[0].intrinsics.shape[0]
    if images is None:  # LiDAR-only runs: a zero-size image placeholder keeps Batch's types simple
        images = torch.zeros(len(samples), n_cam, 3, 0, 0)
    depth = _stack([s.depth for s in samples])
    if depth is None:
        depth = torch.zeros(len(samples), n_cam, 0, 0)
    return Batch(
        images=images,
        intrinsics=_stack([s.intrinsics for s in samples]),
        cam2lidar=_stack([s.cam2lidar for s in samples]),
        post_rot=_stack([s.post_rot for s in samples]),
        post_tran=_stack([s.post_tran for s in samples]),
        depth=depth,
        points=[torch.from_numpy(np.ascontiguousarray(s.points)).float() for s in samples],
        gt_boxes=[torch.from_numpy(s.boxes).float() for s in samples],
        gt_labels=[torch.from_numpy(s.labels).long() for s in samples],
        bev_aug=_stack([s.bev_aug for s in samples]),
        lidar2global=torch.from_numpy(np.stack([s.lidar2global for s in samples])).double(),
        sample_tokens=[s.token for s in samples],
        prev_images=_stack([s.prev_images for s in samples]),
        prev_cam2lidar=_stack([s.prev_cam2lidar for s in samples]),
        has_prev=torch.tensor([s.has_prev for s in samples]),
        class_masks=_stack_labels([s.class_masks for s in samples]),
    )
