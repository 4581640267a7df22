"""Per-camera depth targets from projected LiDAR: BEVDepth's supervision (docs/method.md)."""

from __future__ import annotations

import numpy as np


def depth_map(
    points: np.ndarray,
    intrinsics: np.ndarray,
    cam2lidar: np.ndarray,
    post_rot: np.ndarray,
    post_tran: np.ndarray,
    out_hw: tuple[int, int],
    min_depth: float = 0.1,
) -> np.ndarray:
    """Depth (m, along the camera axis) of the nearest LiDAR point per pixel of the augmented image,
    ``(H, W)`` float32, 0 where no point lands.

    ``points`` (N, >=3) are in the LiDAR frame of ``cam2lidar``; a point lands in pixel
    ``floor(post_rot[:2, :2] (K p / z) + post_tran[:2])`` (the image geometry the network sees); points
    with depth <= ``min_depth`` are ignored.
    """
    h, w = out_hw
    lidar2cam = np.linalg.inv(cam2lidar)
    p = points[:, :3].astype(np.float64) @ lidar2cam[:3, :3].T + lidar2cam[:3, 3]  # (N, 3)
    p = p[p[:, 2] > min_depth]
    z = p[:, 2]
    uv = (p @ intrinsics.T)[:, :2] / z[:, None]
    uv = uv @ post_rot[:2, :2].T + post_tran[:2]
    u, v = np.floor(uv[:, 0]), np.floor(uv[:, 1])
    ok = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    pixel = (v[ok] * w + u[ok]).astype(np.int64)
    z = z[ok]
    order = np.lexsort((z, pixel))  # by pixel, nearest first within a pixel
    pixel, z = pixel[order], z[order]
    first = np.ones(len(pixel), dtype=bool)
    first[1:] = pixel[1:] != pixel[:-1]
    out = np.zeros(h * w, dtype=np.float32)
    out[pixel[first]] = z[first]
    return out.reshape(h, w)
