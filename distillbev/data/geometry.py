"""Rigid transforms from nuScenes records and box conversions between the global and LiDAR frames.

nuScenes stores poses as a quaternion ``rotation`` (w, x, y, z) plus a ``translation``: calibrated
sensors map sensor -> ego, ego poses map ego -> global. Annotation boxes are global with size (w, l, h);
distillbev boxes are rows ``(x, y, z, l, w, h, yaw, vx, vy)`` in the key LiDAR frame (``structures``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def quaternion_matrix(q: Sequence[float]) -> np.ndarray:
    """3x3 rotation matrix of a (w, x, y, z) quaternion (normalised first, as pyquaternion does)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_quaternion(r: np.ndarray) -> np.ndarray:
    """(w, x, y, z) quaternion with w >= 0 of a 3x3 rotation matrix (Shepperd's method)."""
    r = np.asarray(r, dtype=np.float64)
    tr = np.trace(r)
    if tr > 0:
        s = 2.0 * np.sqrt(1.0 + tr)
        q = np.array([0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s])
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        q = np.empty(4)
        q[0] = (r[k, j] - r[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + k] = (r[k, i] + r[i, k]) / s
    return q if q[0] >= 0 else -q


def pose_matrix(rotation: Sequence[float], translation: Sequence[float]) -> np.ndarray:
    """4x4 transform ``[R(q) | t]`` from a quaternion (w, x, y, z) and a translation."""
    m = np.eye(4)
    m[:3, :3] = quaternion_matrix(rotation)
    m[:3, 3] = np.asarray(translation, dtype=np.float64)
    return m


def record_matrix(record: Mapping[str, Any]) -> np.ndarray:
    """4x4 of a ``calibrated_sensor`` (sensor -> ego) or ``ego_pose`` (ego -> global) row."""
    return pose_matrix(record["rotation"], record["translation"])


def invert_rigid(m: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rigid transform (rotation + translation)."""
    out = np.eye(4)
    out[:3, :3] = m[:3, :3].T
    out[:3, 3] = -m[:3, :3].T @ m[:3, 3]
    return out


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to the xyz columns of points ``(N, >=3)``; other columns are kept."""
    out = points.copy()
    out[:, :3] = points[:, :3] @ m[:3, :3].T + m[:3, 3]
    return out


def transform_boxes(boxes: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 4x4 similarity ``m`` (rotation about z, uniform scale, axis flips, translation) to boxes
    ``(M, 9)``: centres move, sizes scale, the heading and the velocity go through the linear part."""
    out = np.array(boxes, dtype=np.float64, copy=True).reshape(-1, 9)
    if len(out) == 0:
        return out
    lin = m[:3, :3]
    scale = abs(np.linalg.det(lin)) ** (1 / 3)
    out[:, :3] = out[:, :3] @ lin.T + m[:3, 3]
    out[:, 3:6] *= scale
    heading = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6])], 1) @ lin[:2, :2].T  # (M, 2)
    out[:, 6] = np.arctan2(heading[:, 1], heading[:, 0])
    out[:, 7:9] = boxes[:, 7:9] @ lin[:2, :2].T
    return out


def global_box_to_lidar(
    translation: Sequence[float],
    size_wlh: Sequence[float],
    rotation: Sequence[float],
    velocity: Sequence[float],
    global2lidar: np.ndarray,
) -> np.ndarray:
    """One nuScenes annotation (global centre, size (w, l, h), quaternion, global velocity (vx, vy[, vz]))
    -> a box row ``(x, y, z, l, w, h, yaw, vx, vy)`` in the LiDAR frame of ``global2lidar``.

    The yaw is the direction of the box's length axis after rotation into the LiDAR frame, projected on
    the ground plane (boxes are upright, so nothing else is lost).
    """
    r = global2lidar[:3, :3]
    centre = r @ np.asarray(translation, dtype=np.float64) + global2lidar[:3, 3]
    heading = r @ quaternion_matrix(rotation)[:, 0]
    v = np.zeros(3)
    v[: len(velocity)] = velocity
    v = r @ v
    w, l, h = size_wlh
    return np.array([*centre, l, w, h, np.arctan2(heading[1], heading[0]), v[0], v[1]])


def lidar_boxes_to_global(boxes: np.ndarray, lidar2global: np.ndarray) -> dict[str, np.ndarray]:
    """Box rows ``(M, 9)`` in a LiDAR frame -> nuScenes-style global fields: ``translation`` (M, 3),
    ``size`` (M, 3) as (w, l, h), ``rotation`` (M, 4) quaternions (w >= 0), ``velocity`` (M, 2)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 9)
    r = lidar2global[:3, :3]
    out = {
        "translation": boxes[:, :3] @ r.T + lidar2global[:3, 3],
        "size": boxes[:, [4, 3, 5]],
        "rotation": np.zeros((len(boxes), 4)),
        "velocity": np.zeros((len(boxes), 2)),
    }
    for i, b in enumerate(boxes):
        c, s = np.cos(b[6]), np.sin(b[6])
        yaw_rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        out["rotation"][i] = matrix_quaternion(r @ yaw_rot)
        out["velocity"][i] = (r @ np.array([b[7], b[8], 0.0]))[:2]
    return out
