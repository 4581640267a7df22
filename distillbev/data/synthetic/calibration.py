"""The sensor rig: nuScenes' n015 calibration (6 cameras, LIDAR_TOP), quaternions and frames.

Camera extrinsics and intrinsics are the calibrated_sensor values of the nuScenes vehicle n015
(v1.0-mini, 1600x900 images); intrinsics are scaled to the rendered resolution. The LiDAR sits where
n015's does, rotated -90 deg about z (its x axis points to the ego's right), so, as on nuScenes, the
LIDAR_TOP frame differs from the ego frame. Frames: ego x forward, y left, z up; camera x right,
y down, z forward. Rotations are sensor -> ego, quaternions (w, x, y, z).
"""

from __future__ import annotations

import math

import numpy as np

from distillbev.structures import CAMERA_NAMES

#: channel -> (translation (m), rotation quaternion (w, x, y, z), (fx, cx, cy) in px at 1600x900).
N015_CAMERAS: dict[str, tuple[tuple[float, ...], tuple[float, ...], tuple[float, float, float]]] = {
    "CAM_FRONT": (
        (1.70079118954, 0.0159456324149, 1.51095763913),
        (0.4998015430569128, -0.5030316162024876, 0.4997798114386805, -0.49737083824542755),
        (1266.417203046554, 816.2670197447984, 491.50706579294757),
    ),
    "CAM_FRONT_RIGHT": (
        (1.5508477543, -0.493404796419, 1.49574800619),
        (0.2060347966337182, -0.2026940577919598, 0.6824507824531167, -0.6713610884174485),
        (1260.8474446004698, 807.968244525554, 495.3344268742088),
    ),
    "CAM_FRONT_LEFT": (
        (1.52387798135, 0.494631336551, 1.50932822144),
        (0.6757265034669446, -0.6736266522251881, 0.21214015046209478, -0.21122827103904068),
        (1272.5979470598488, 826.6154927353808, 479.75165386361925),
    ),
    "CAM_BACK": (
        (0.0283260309358, 0.00345136761476, 1.57910346144),
        (0.5037872666382278, -0.49740249788611096, -0.4941850223835201, 0.5045496097725578),
        (809.2209905677063, 829.2196003259838, 481.77842384512485),
    ),
    "CAM_BACK_LEFT": (
        (1.03569100218, 0.484795032713, 1.59097014818),
        (0.6924185592174665, -0.7031619420114925, -0.11648342771943819, 0.11203317912370753),
        (1256.7414812095406, 792.1125740759628, 492.7757465151356),
    ),
    "CAM_BACK_RIGHT": (
        (1.0148780988, -0.480568219723, 1.56239545128),
        (0.12280980120078765, -0.132400842670559, -0.7004305821388234, 0.690496031265798),
        (1259.5137405846733, 807.2529053838625, 501.19579884916527),
    ),
}
N015_IMAGE_SIZE = (1600, 900)  # (width, height) the intrinsics above belong to
LIDAR_TRANSLATION = (0.943713, 0.0, 1.84023)  # m, LIDAR_TOP -> ego, n015
LIDAR_YAW = -math.pi / 2  # rad about +z: the LiDAR's x axis points to the ego's right

#: Camera exposure time relative to the LiDAR key frame (s): each camera fires when the spinning LiDAR
#: sweeps across its field of view, so the six images precede the LiDAR timestamp (as on nuScenes).
CAMERA_TIME_OFFSETS: dict[str, float] = {
    "CAM_FRONT": -0.0375,
    "CAM_FRONT_RIGHT": -0.0292,
    "CAM_BACK_RIGHT": -0.0208,
    "CAM_BACK": -0.0125,
    "CAM_BACK_LEFT": -0.0042,
    "CAM_FRONT_LEFT": -0.0458,
}

assert set(N015_CAMERAS) == set(CAMERA_NAMES) == set(CAMERA_TIME_OFFSETS)


def rot_z(yaw: float) -> np.ndarray:
    """3x3 rotation by ``yaw`` rad about +z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def quat_to_matrix(q: tuple[float, ...] | list[float]) -> np.ndarray:
    """3x3 rotation matrix of a (w, x, y, z) quaternion (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat(m: np.ndarray) -> list[float]:
    """(w, x, y, z) quaternion with w >= 0 of a 3x3 rotation matrix (numerically robust branch)."""
    m = np.asarray(m, dtype=np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    sign = -1.0 if q[0] < 0 else 1.0
    return [float(sign * v) for v in q]


def yaw_quat(yaw: float) -> list[float]:
    """(w, x, y, z) quaternion of a rotation by ``yaw`` rad about +z."""
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def camera_intrinsic(name: str, width: int, height: int) -> np.ndarray:
    """3x3 intrinsics of camera ``name`` scaled from 1600x900 to ``width`` x ``height`` px.

    Pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)`` in image coordinates (its centre is ``i + 0.5``).
    """
    fx, cx, cy = N015_CAMERAS[name][2]
    sx, sy = width / N015_IMAGE_SIZE[0], height / N015_IMAGE_SIZE[1]
    return np.array([[fx * sx, 0.0, cx * sx], [0.0, fx * sy, cy * sy], [0.0, 0.0, 1.0]])


def camera_extrinsic(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Camera -> ego rotation (3, 3) and translation (3,) of camera ``name``."""
    trans, quat, _ = N015_CAMERAS[name]
    return quat_to_matrix(quat), np.array(trans, dtype=np.float64)


def camera_quaternion(name: str) -> list[float]:
    """The stored camera -> ego quaternion (w, x, y, z), written verbatim to calibrated_sensor."""
    return [float(v) for v in N015_CAMERAS[name][1]]


def lidar_extrinsic() -> tuple[np.ndarray, np.ndarray]:
    """LIDAR_TOP -> ego rotation (3, 3) and translation (3,)."""
    return rot_z(LIDAR_YAW), np.array(LIDAR_TRANSLATION, dtype=np.float64)


def sensor_to_global(
    ego_xy: np.ndarray, ego_yaw: float, rot: np.ndarray, trans: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sensor -> global rotation (3, 3) and sensor origin (3,) of an ego at ``ego_xy`` (z = 0) with
    heading ``ego_yaw``."""
    r_ego = rot_z(ego_yaw)
    origin = r_ego @ trans + np.array([ego_xy[0], ego_xy[1], 0.0])
    return r_ego @ rot, origin
