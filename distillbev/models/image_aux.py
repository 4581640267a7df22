"""Image-plane dense supervision: projected 3D box centres as per-camera class heatmaps, per-cell class
occupancy from instance masks, LiDAR depth bins, and the small conv heads that predict them.

Image pretraining (``distillbev pretrain``, docs/pretraining.md) uses all three; a student can add the
centre heatmap as an auxiliary loss on its image features (``student.image_aux_weight``). Every
target is built on the feature grid of stride ``s``: pixel ``(u, v)`` of the augmented image falls in
cell ``(floor(u / s), floor(v / s))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from distillbev.data.batch import Batch
from distillbev.models.head_targets import clip_sigmoid, draw_gaussian, gaussian_focal_loss, gaussian_radius
from distillbev.structures import CLASS_NAMES

NUM_CLASSES = len(CLASS_NAMES)
#: Unit cube corners (x, y, z in [-1/2, 1/2]) of a box, scaled by (l, w, h) and turned by yaw.
_CORNERS = torch.tensor(
    [[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], dtype=torch.float32
)


def to_image(
    points: torch.Tensor,
    intrinsics: torch.Tensor,
    cam2lidar: torch.Tensor,
    post_rot: torch.Tensor,
    post_tran: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LiDAR-frame points ``(..., P, 3)`` -> augmented-image pixels ``(N, ..., P, 2)`` and depth along
    each camera axis ``(N, ..., P)``, for the ``N`` cameras (``(N, 3, 3)``, ``(N, 4, 4)``, ``(N, 3, 3)``,
    ``(N, 3)``) of one sample (the inverse of the LSS lift, ``distillbev.models.lss``)."""
    lidar2cam = torch.linalg.inv(cam2lidar.double()).float()  # (N, 4, 4)
    n = len(lidar2cam)
    flat = points.reshape(-1, 3)  # (Q, 3)
    p = torch.einsum("nij,qj->nqi", lidar2cam[:, :3, :3], flat) + lidar2cam[:, None, :3, 3]  # (N, Q, 3)
    z = p[..., 2]
    uv = torch.einsum("nij,nqj->nqi", intrinsics, p)[..., :2] / z.clamp(min=1e-6)[..., None]
    uv = torch.einsum("nij,nqj->nqi", post_rot[:, :2, :2], uv) + post_tran[:, None, :2]
    return uv.reshape(n, *points.shape[:-1], 2), z.reshape(n, *points.shape[:-1])


def box_corners(boxes: torch.Tensor) -> torch.Tensor:
    """``(M, 8, 3)`` corners of ``(M, >=7)`` boxes (x, y, z centre, l, w, h, yaw)."""
    c, s = boxes[:, 6].cos(), boxes[:, 6].sin()
    local = _CORNERS.to(boxes)[None] * boxes[:, None, 3:6]  # (M, 8, 3)
    x = local[..., 0] * c[:, None] - local[..., 1] * s[:, None]
    y = local[..., 0] * s[:, None] + local[..., 1] * c[:, None]
    return torch.stack([x, y, local[..., 2]], -1) + boxes[:, None, :3]


@dataclass(frozen=True)
class ProjectedBoxes:
    """Boxes of one sample seen through its ``N`` cameras (``project_boxes``)."""

    centre: torch.Tensor  # (N, M, 2) augmented-image pixel of each box centre
    depth: torch.Tensor  # (N, M) centre depth along each camera axis
    seen: torch.Tensor  # (N, M) centre >= min_depth in front and inside the image
    lo: torch.Tensor  # (N, M, 2) projected 2D extent: the 8 corners (those in front), clipped to the
    hi: torch.Tensor  # image, always containing the centre pixel


def project_boxes(
    boxes: torch.Tensor, cams: tuple[torch.Tensor, ...], image_hw: tuple[int, int], min_depth: float
) -> ProjectedBoxes:
    """Project ``boxes`` (M, >=7) through ``cams`` = (intrinsics, cam2lidar, post_rot, post_tran) of one
    sample's cameras: centres, depths, visibility and 2D extents (``center_heatmaps``'s rules)."""
    img_h, img_w = image_hw
    pts = torch.cat([boxes[:, None, :3], box_corners(boxes)], 1)  # (M, 9, 3): centre + corners
    uv, z = to_image(pts, *cams)  # (N, M, 9, 2), (N, M, 9)
    u, v = uv[..., 0, 0], uv[..., 0, 1]  # (N, M) centre pixels
    seen = (z[..., 0] >= min_depth) & (u >= 0) & (u < img_w) & (v >= 0) & (v < img_h)
    front = z[..., 1:] > 1e-3  # corners in front of the camera (behind: extent from the centre only)
    big = torch.tensor(float("inf"), device=uv.device)
    lo = torch.where(front[..., None], uv[..., 1:, :], big).amin(2)  # (N, M, 2)
    hi = torch.where(front[..., None], uv[..., 1:, :], -big).amax(2)
    lo = torch.minimum(lo.clamp(min=0), uv[..., 0, :])
    hi = torch.maximum(hi.clamp(max=torch.tensor([img_w, img_h], device=uv.device)), uv[..., 0, :])
    return ProjectedBoxes(uv[..., 0, :], z[..., 0], seen, lo, hi)


def center_heatmaps(
    batch: Batch,
    image_hw: tuple[int, int],
    stride: int,
    min_radius: int = 1,
    min_depth: float = 0.5,
) -> torch.Tensor:
    """Per camera a ``NUM_CLASSES``-channel heatmap of the projected GT box centres, ``(B*N, K, h, w)``.

    A box counts in a camera when its centre lies ``min_depth`` m or more in front of it and inside its
    augmented image. The Gaussian (CenterPoint's ``draw_gaussian``) sits on the centre's cell; its radius
    is CornerNet's radius of the box's projected 2D extent (the 8 corners, clipped to the image), in
    cells, at least ``min_radius``.
    """
    img_h, img_w = image_hw
    h, w = img_h // stride, img_w // stride
    b, n = batch.intrinsics.shape[:2]
    out = torch.zeros(b, n * NUM_CLASSES, h, w, device=batch.intrinsics.device)
    for i in range(b):
        boxes, labels = batch.gt_boxes[i].float(), batch.gt_labels[i]
        if len(boxes) == 0:
            continue
        cams = (batch.intrinsics[i], batch.cam2lidar[i], batch.post_rot[i], batch.post_tran[i])
        proj = project_boxes(boxes, cams, image_hw, min_depth)
        u, v = proj.centre[..., 0], proj.centre[..., 1]  # (N, M)
        size = (proj.hi - proj.lo) / stride  # (N, M, 2) extent in cells
        radius = gaussian_radius(size[..., 0].clamp(min=1e-3), size[..., 1].clamp(min=1e-3))
        radius = radius.floor().long().clamp(min=min_radius)
        cam, obj = proj.seen.nonzero(as_tuple=True)
        if len(cam) == 0:
            continue
        cells = torch.stack([(u[cam, obj] / stride).floor(), (v[cam, obj] / stride).floor()], 1).long()
        channels = cam * NUM_CLASSES + labels[obj].to(cam.device)
        draw_gaussian(out[i], channels, cells, radius[cam, obj])
    return out.view(b * n, NUM_CLASSES, h, w)


def class_occupancy(class_masks: torch.Tensor, stride: int) -> torch.Tensor:
    """Share of each feature cell's pixels that show class ``k``: ``(B, N, H, W)`` labels (0 = none,
    ``k + 1`` = class ``k``) -> ``(B*N, K, H / stride, W / stride)`` in [0, 1]."""
    b, n, hh, ww = class_masks.shape
    if hh % stride or ww % stride:
        raise ValueError(f"class masks {(hh, ww)} are not divisible by the feature stride {stride}")
    onehot = F.one_hot(class_masks.flatten(0, 1).long(), NUM_CLASSES + 1)[..., 1:]  # (B*N, H, W, K)
    return F.avg_pool2d(onehot.permute(0, 3, 1, 2).float(), stride)


class DenseHead(nn.Module):
    """3x3 conv + BN + ReLU, then a 1x1 conv to ``out_channels`` (bias ``bias`` on the last one)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, bias: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
        )
        self.out = nn.Conv2d(mid_channels, out_channels, 1)
        nn.init.constant_(self.out.bias, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C_in, h, w) -> (B, out_channels, h, w) logits."""
        return self.out(self.conv(x))


#: Initial heatmap bias: sigmoid(-2.19) = 0.1, CenterPoint's prior.
HEATMAP_BIAS = -2.19


def heatmap_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gaussian focal loss over ``(B*N, K, h, w)``, divided by the number of centre cells (at least 1)."""
    num_pos = target.eq(1).sum().clamp(min=1)
    return gaussian_focal_loss(clip_sigmoid(logits), target.float()) / num_pos


def occupancy_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of per-class cell occupancy (soft targets in [0, 1]), mean over elements."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def image_aux_loss(
    batch: Batch, taps: dict[str, torch.Tensor], image_hw: tuple[int, int], stride: int, weight: float
) -> dict[str, torch.Tensor]:
    """A student's auxiliary image-plane term: {"image_heatmap": weight x focal loss of its
    ``taps["image_heatmap"]`` against the projected GT centres}, or {} when it has no such head."""
    if "image_heatmap" not in taps:
        return {}
    target = center_heatmaps(batch, image_hw, stride)
    return {"image_heatmap": weight * heatmap_loss(taps["image_heatmap"], target)}
