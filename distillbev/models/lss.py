"""Lift-splat-shoot view transformer and its geometry (docs/architectures.md, Camera students).

Camera convention (``distillbev.data.batch``): an augmented pixel is
``(u, v, 1) = post_rot @ (K @ p_cam / depth) + post_tran`` and ``p_lidar = cam2lidar @ p_cam``, with the
BEV augmentation folded into ``cam2lidar``. The frustum holds ``(u, v, d)`` candidates on the feature
grid; ``frustum_to_lidar`` undoes the image augmentation, lifts to the camera frame and maps into the
(augmented) LiDAR frame. ``LSSViewTransformer`` splats depth-weighted context features onto the BEV
grid. Aligning a previous frame's BEV with the current one is ``distillbev.models.temporal``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from distillbev.data.batch import Batch
from distillbev.models.temporal import prev_to_current as prev_to_current  # re-export (moved)
from distillbev.models.temporal import warp_bev as warp_bev  # re-export (moved)
from distillbev.ops.bev_pool import DEFAULT_METHOD, PoolIndex, PoolMethod, bev_pool, pool_index
from distillbev.structures import BEVGrid


@dataclass(frozen=True)
class DepthBins:
    """Depth candidates ``d_k = d_min + k * d_step``, ``k = 0 .. D-1``, ``D = (d_max - d_min) / d_step``."""

    d_min: float = 1.0
    d_max: float = 60.0
    d_step: float = 1.0
    centers: bool = False  # candidates at bin centres d_k + d_step / 2 (False: lower edges, the reference)

    def __post_init__(self) -> None:
        n = (self.d_max - self.d_min) / self.d_step if self.d_step > 0 else 0.0
        if self.d_min <= 0 or n < 1 or abs(n - round(n)) > 1e-6:
            raise ValueError(
                f"depth bins (d_min {self.d_min}, d_max {self.d_max}, d_step {self.d_step}) must have "
                "0 < d_min < d_max and a whole number of steps between them"
            )

    @property
    def num_bins(self) -> int:
        """``D`` (59 for 1..60 m in 1 m steps)."""
        return int(round((self.d_max - self.d_min) / self.d_step))

    def candidates(self) -> torch.Tensor:
        """``(D,)`` candidate depths in metres: the lower edge of each bin (BEVDet's reference), or its
        centre with ``centers``. ``bin_of`` maps a depth to the bin it lies in either way."""
        offset = self.d_step / 2 if self.centers else 0.0
        return self.d_min + offset + self.d_step * torch.arange(self.num_bins, dtype=torch.float32)

    def bin_of(self, depth: torch.Tensor) -> torch.Tensor:
        """Bin index ``floor((d - d_min) / d_step)`` of metric depths, clipped to ``[0, D-1]``."""
        return torch.floor((depth - self.d_min) / self.d_step).long().clamp(0, self.num_bins - 1)


@dataclass
class CameraGeometry:
    """The camera matrices of one frame (shapes as in ``Batch``)."""

    intrinsics: torch.Tensor  # (B, N, 3, 3)
    cam2lidar: torch.Tensor  # (B, N, 4, 4)
    post_rot: torch.Tensor  # (B, N, 3, 3)
    post_tran: torch.Tensor  # (B, N, 3)

    @classmethod
    def from_batch(cls, batch: Batch) -> CameraGeometry:
        """The current frame's cameras."""
        return cls(batch.intrinsics, batch.cam2lidar, batch.post_rot, batch.post_tran)

    def same_as(self, other: CameraGeometry | None) -> bool:
        """True when every matrix is identical (same shape, device and values)."""
        if other is None:
            return False
        pairs = zip(self.tensors(), other.tensors(), strict=True)
        return all(a.shape == b.shape and a.device == b.device and torch.equal(a, b) for a, b in pairs)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """``(intrinsics, cam2lidar, post_rot, post_tran)``."""
        return self.intrinsics, self.cam2lidar, self.post_rot, self.post_tran


def create_frustum(
    image_size: tuple[int, int], feature_size: tuple[int, int], bins: DepthBins, cell_centers: bool = False
) -> torch.Tensor:
    """``(D, h, w, 3)`` frustum of ``(u, v, d)``: augmented-image pixel coordinates and depth (m).

    The reference BEVDet: ``u = linspace(0, W-1, w)``, ``v = linspace(0, H-1, h)``. With
    ``cell_centers`` the pixel positions are the feature cells' centres ``(j + 0.5) * W / w - 0.5``.
    """
    (img_h, img_w), (h, w) = image_size, feature_size
    if cell_centers:
        us = (torch.arange(w, dtype=torch.float32) + 0.5) * (img_w / w) - 0.5
        vs = (torch.arange(h, dtype=torch.float32) + 0.5) * (img_h / h) - 0.5
    else:
        us = torch.linspace(0, img_w - 1, w)
        vs = torch.linspace(0, img_h - 1, h)
    ds = bins.candidates()
    d, v, u = torch.meshgrid(ds, vs, us, indexing="ij")  # each (D, h, w)
    return torch.stack([u, v, d], -1)


def frustum_to_lidar(frustum: torch.Tensor, cams: CameraGeometry) -> torch.Tensor:
    """Metric LiDAR-frame positions ``(B, N, D, h, w, 3)`` of the frustum ``(D, h, w, 3)`` per camera.

    ``p = post_rot^-1 ((u, v, d) - post_tran)``, ``p_cam = K^-1 (p_u d, p_v d, d)``,
    ``p_lidar = R p_cam + t`` with ``[R | t] = cam2lidar``.
    """
    pts = frustum[None, None] - cams.post_tran[:, :, None, None, None, :]  # (B, N, D, h, w, 3)
    pts = torch.einsum("bnij,bndhwj->bndhwi", torch.linalg.inv(cams.post_rot), pts)
    pts = torch.cat([pts[..., :2] * pts[..., 2:3], pts[..., 2:3]], -1)  # (u d, v d, d)
    combine = cams.cam2lidar[..., :3, :3] @ torch.linalg.inv(cams.intrinsics)  # (B, N, 3, 3)
    pts = torch.einsum("bnij,bndhwj->bndhwi", combine, pts)
    return pts + cams.cam2lidar[:, :, None, None, None, :3, 3]


class DepthNet(nn.Module):
    """BEVDet's depth net: one 1x1 conv to ``D`` depth logits and ``C`` context channels."""

    def __init__(self, in_channels: int, num_bins: int, context_channels: int) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.conv = nn.Conv2d(in_channels, num_bins + context_channels, 1)

    def forward(self, x: torch.Tensor, cams: CameraGeometry) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B*N, C_in, h, w) -> depth logits ``(B*N, D, h, w)``, context ``(B*N, C, h, w)``."""
        out = self.conv(x)
        return out[:, : self.num_bins], out[:, self.num_bins :]


class LSSViewTransformer(nn.Module):
    """Lift (depth distribution x context) and splat (sum per BEV cell) onto ``grid``.

    The pooling triples are cached and reused while the camera matrices stay identical.
    """

    def __init__(
        self,
        image_size: tuple[int, int],
        feature_size: tuple[int, int],
        bins: DepthBins,
        grid: BEVGrid,
        z_range: tuple[float, float] = (-10.0, 10.0),
        cell_centers: bool = False,
        pool_method: PoolMethod = DEFAULT_METHOD,
    ) -> None:
        super().__init__()
        self.grid, self.z_range, self.pool_method = grid, z_range, pool_method
        self.feature_size = feature_size
        self.register_buffer(
            "frustum", create_frustum(image_size, feature_size, bins, cell_centers), persistent=False
        )  # (D, h, w, 3)
        self._cached: tuple[CameraGeometry, PoolIndex] | None = None

    def index(self, cams: CameraGeometry) -> PoolIndex:
        """Pooling triples of ``cams`` (recomputed only when a camera matrix changed)."""
        if self._cached is not None and cams.same_as(self._cached[0]):
            return self._cached[1]
        with torch.no_grad(), torch.autocast(self.frustum.device.type, enabled=False):  # fp32 geometry
            geometry = frustum_to_lidar(self.frustum, cams)  # (B, N, D, h, w, 3)
            index = pool_index(geometry, self.grid, self.z_range)
        frozen = CameraGeometry(*(t.detach().clone() for t in cams.tensors()))
        self._cached = (frozen, index)
        return index

    def forward(self, depth: torch.Tensor, context: torch.Tensor, cams: CameraGeometry) -> torch.Tensor:
        """``depth`` (B, N, D, h, w) probabilities, ``context`` (B, N, C, h, w) -> BEV (B, C, G_y, G_x)."""
        if tuple(depth.shape[2:]) != tuple(self.frustum.shape[:3]):
            raise ValueError(
                f"LSS: depth map is {tuple(depth.shape[2:])} (D, h, w) but the frustum is "
                f"{tuple(self.frustum.shape[:3])}; check image_size and the depth bins"
            )
        context = context.permute(0, 1, 3, 4, 2)  # (B, N, h, w, C)
        return bev_pool(depth, context, self.index(cams), self.pool_method)
