"""Per-camera depth targets from projected LiDAR (BEVDepth's supervision)."""

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
    """Depth (m) of the nearest LiDAR point per pixel of the augmented image, 0 where none.

    ``points`` (N, >=3) are in the LiDAR frame of ``cam2lidar``; pixels follow u' = post_rot (K p / z)
    + post_tran, the image geometry the network sees.
    """
    h, w = out_hw
    lidar2cam = np.linalg.inv(cam2lidar)
    p = points[:, :3] @ lidar2cam[:3, :3].T + lidar2cam[:3, 3]
    z = p[:, 2]
    front = z > min_depth
    p, z = p[front], z[front]
    uv = (p @ intrinsics.T)[:, :2] / z[:, None]
    uv = uv @ post_rot[:2, :2].T + post_tran[:2]
    u, v = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
    ok = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v, z = u[ok], v[ok], z[ok]
    out = np.zeros((h, w), dtype=np.float32)
    order = np.argsort(-z)  # write far to near: the nearest point of a pixel is written last
    out[v[order], u[order]] = z[order]
    return out
