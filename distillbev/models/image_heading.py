"""Image-plane heading: which way an object faces, seen in the image and turned into the BEV frame.

Why (docs/architectures.md, "Image-plane heading"): the camera students find an object's axis but not
its front (their yaw errors pile up at 0 and 180 degrees), and the (sin, cos) L1 of the BEV head cannot
learn a cue the BEV features do not carry. What an image shows of an object's heading is its angle to
the viewing ray (lights, windscreen, cab): ``alpha = yaw - phi``, with ``phi`` the azimuth of the ray
from the camera to the object. A small head on the image features predicts ``(sin alpha, cos alpha)``,
supervised at the projected box centres or over the boxes' projected extents (camera-legal: the
targets come from the GT boxes and the cameras, as the centre heatmap's do). Each feature cell then
turns its prediction by its own ray's azimuth into a BEV heading ``(sin yaw, cos yaw)``, exactly (no
learning), and those two channels join the LSS context, so the BEV head reads a heading in its own
frame.

Mirror images. An image flip (``post_rot`` with a negative determinant) mirrors what the network sees,
and a BEV flip (``cam2lidar`` with a negative determinant: the BEV augmentation is folded into it)
mirrors the frame the yaw is measured in. With ``hand`` = the product of the two signs, the angle the
image shows is ``hand * (yaw - phi)`` and the BEV heading of a prediction is ``phi + hand * alpha``.
"""

from __future__ import annotations

from typing import Literal

import torch

from distillbev.data.batch import Batch
from distillbev.models.image_aux import project_boxes
from distillbev.models.lss import CameraGeometry, DepthBins, create_frustum, frustum_to_lidar
from distillbev.structures import CLASS_NAMES

#: Channels of the heading map: (sin, cos).
HEADING_CHANNELS = 2
#: Classes without a heading target: cones have no yaw in the devkit, barriers only one modulo pi.
NO_HEADING: frozenset[str] = frozenset({"traffic_cone", "barrier"})
_HAS_HEADING = torch.tensor([name not in NO_HEADING for name in CLASS_NAMES])
#: Two depths on every ray (any two distinct ones give its direction).
_RAY_BINS = DepthBins(1.0, 3.0, 1.0)


def handedness(cams: CameraGeometry) -> torch.Tensor:
    """``(B, N)`` +1 or -1: sign of det(image flip, 2x2 of ``post_rot``) x sign of det(``cam2lidar``
    rotation, which carries the BEV flips)."""
    image = torch.linalg.det(cams.post_rot[..., :2, :2].double()).sign()
    frame = torch.linalg.det(cams.cam2lidar[..., :3, :3].double()).sign()
    return (image * frame).to(cams.post_rot.dtype)


def ray_azimuths(
    cams: CameraGeometry, image_size: tuple[int, int], feature_size: tuple[int, int], cell_centers: bool
) -> torch.Tensor:
    """``(B*N, 2, h, w)``: (cos phi, sin phi) of the ray through each feature cell, in the (augmented)
    LiDAR frame; the cells sit where the LSS frustum puts them (``cell_centers`` as the student's)."""
    frustum = create_frustum(image_size, feature_size, _RAY_BINS, cell_centers).to(cams.intrinsics)
    pts = frustum_to_lidar(frustum, cams)  # (B, N, 2, h, w, 3)
    ray = pts[:, :, 1, ..., :2] - pts[:, :, 0, ..., :2]  # (B, N, h, w, 2)
    ray = ray / ray.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    return ray.flatten(0, 1).permute(0, 3, 1, 2).contiguous()


def to_bev_heading(alpha: torch.Tensor, rays: torch.Tensor, hand: torch.Tensor) -> torch.Tensor:
    """Image-plane headings ``alpha`` (B*N, 2, h, w) as (sin, cos) -> BEV headings (sin, cos) of
    ``yaw = phi + hand * alpha``. Magnitudes carry through (an unsure prediction near (0, 0) stays so);
    ``rays`` are (cos phi, sin phi) per cell, ``hand`` (B*N,) the mirror signs."""
    s, c = alpha[:, 0] * hand[:, None, None], alpha[:, 1]
    cp, sp = rays[:, 0], rays[:, 1]
    return torch.stack([sp * c + cp * s, cp * c - sp * s], 1)


def heading_targets(
    batch: Batch,
    image_hw: tuple[int, int],
    stride: int,
    region: Literal["centre", "box"] = "centre",
    min_depth: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per camera the image-plane heading of the GT boxes: targets ``(B*N, 2, h, w)`` (sin alpha,
    cos alpha) and a mask ``(B*N, h, w)``.

    A box counts where ``center_heatmaps`` counts it (centre ``min_depth`` m or more in front, inside the
    augmented image) and when its class has a heading (not cones or barriers). ``region`` "centre": the
    cell of the projected centre; "box": every cell of the box's projected 2D extent (its 8 corners,
    clipped to the image), so that all the pixels the lift spreads over the box carry its heading.
    Where boxes share a cell, the nearer one's heading.
    """
    h, w = image_hw[0] // stride, image_hw[1] // stride
    b, n = batch.intrinsics.shape[:2]
    device = batch.intrinsics.device
    target = torch.zeros(b, n, 2, h, w, device=device)
    mask = torch.zeros(b, n, h, w, dtype=torch.bool, device=device)
    hand = handedness(CameraGeometry.from_batch(batch))  # (B, N)
    for i in range(b):
        boxes, labels = batch.gt_boxes[i].float(), batch.gt_labels[i]
        keep = _HAS_HEADING.to(labels.device)[labels]
        boxes = boxes[keep.to(boxes.device)]
        if len(boxes) == 0:
            continue
        cams = (batch.intrinsics[i], batch.cam2lidar[i], batch.post_rot[i], batch.post_tran[i])
        proj = project_boxes(boxes, cams, image_hw, min_depth)
        u, v = proj.centre[..., 0], proj.centre[..., 1]  # (N, M)
        origin = batch.cam2lidar[i][:, :2, 3]  # (N, 2) camera centres
        to_box = boxes[None, :, :2] - origin[:, None]  # (N, M, 2)
        phi = torch.atan2(to_box[..., 1], to_box[..., 0])
        alpha = hand[i][:, None] * (boxes[None, :, 6] - phi)  # (N, M)
        cam, obj = proj.seen.nonzero(as_tuple=True)
        if len(cam) == 0:
            continue
        order = torch.argsort(proj.depth[cam, obj])  # nearest first
        cam, obj = cam[order], obj[order]
        a = alpha[cam, obj]
        if region == "box":
            lo, hi = proj.lo[cam, obj], proj.hi[cam, obj]  # (P, 2)
            c0, r0 = (lo / stride).floor().long().unbind(1)
            c1 = (hi[:, 0] / stride).floor().long().clamp(max=w - 1)
            r1 = (hi[:, 1] / stride).floor().long().clamp(max=h - 1)
            for k in reversed(range(len(cam))):  # farthest first: nearer boxes paint over them
                c, rows, cols = (
                    int(cam[k]),
                    slice(int(r0[k]), int(r1[k]) + 1),
                    slice(int(c0[k]), int(c1[k]) + 1),
                )
                target[i, c, 0, rows, cols] = a[k].sin()
                target[i, c, 1, rows, cols] = a[k].cos()
                mask[i, c, rows, cols] = True
            continue
        col = (u[cam, obj] / stride).floor().long()
        row = (v[cam, obj] / stride).floor().long()
        cell = (cam * h + row) * w + col
        cells, inverse = torch.unique(cell, return_inverse=True)
        first = torch.full((len(cells),), len(cell), dtype=torch.long, device=device)
        first = first.scatter_reduce(0, inverse, torch.arange(len(cell), device=device), "amin")
        cam, row, col, a = cam[first], row[first], col[first], a[first]  # the nearest box per cell
        target[i, cam, 0, row, col] = a.sin()
        target[i, cam, 1, row, col] = a.cos()
        mask[i, cam, row, col] = True
    return target.flatten(0, 1), mask.flatten(0, 1)


def heading_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 of (sin, cos) over the masked cells, summed over the two channels, mean over cells (0 when
    no cell has a target)."""
    m = mask[:, None].to(pred.dtype)
    return ((pred.float() - target).abs() * m).sum() / m.sum().clamp(min=1.0)
