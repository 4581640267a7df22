"""Annotation values: attributes from motion, and ``num_lidar_pts`` exactly as the devkit counts them.

The devkit counts a key-frame point in a box with ``points_in_box`` after moving the stored global box
into the LiDAR frame through the stored ego pose and calibration. ``count_points_in_boxes`` does the
same arithmetic vectorised; points within 1e-6 m of a face (where two float evaluations could
disagree) are re-counted with the devkit's own code on the devkit's own box.
"""

from __future__ import annotations

import numpy as np

from distillbev.data.synthetic.calibration import quat_to_matrix
from distillbev.data.synthetic.catalog import CYCLES, VEHICLES
from distillbev.data.synthetic.layout import Scene

MOVING_SPEED = 0.3  # m/s; slower is standing / parked / stopped


def attribute(scene: Scene, index: int, t: float) -> str:
    """The nuScenes attribute of thing ``index`` at time ``t`` ('' for cones and barriers)."""
    th = scene.things[index]
    if th.name in CYCLES:
        return "cycle.with_rider" if th.rider else "cycle.without_rider"
    moving = scene.speed(index, t) > MOVING_SPEED
    if th.name in VEHICLES:
        return "vehicle.moving" if moving else "vehicle.parked" if th.parked else "vehicle.stopped"
    if th.name == "pedestrian":
        return "pedestrian.moving" if moving else "pedestrian.standing"
    return ""


def count_points_in_boxes(
    points: np.ndarray,
    boxes: list[dict],
    ego_pose: dict,
    calibration: dict,
) -> list[int]:
    """Points of the LiDAR-frame cloud ``points`` (N, >=3) inside each annotation row of ``boxes``
    (global ``translation``, ``size`` (w, l, h), ``rotation``), with the LiDAR's ``ego_pose`` and
    ``calibration`` rows, as the devkit's ``points_in_box`` counts them."""
    pts = np.asarray(points[:, :3], dtype=np.float64)
    order = np.argsort(pts[:, 0], kind="stable")
    xs = pts[order, 0]
    r_ego, t_ego = quat_to_matrix(ego_pose["rotation"]), np.asarray(ego_pose["translation"], dtype=np.float64)
    r_cs, t_cs = (
        quat_to_matrix(calibration["rotation"]),
        np.asarray(calibration["translation"], dtype=np.float64),
    )
    r_total = r_cs.T @ r_ego.T  # global -> LiDAR
    counts = []
    for ann in boxes:
        center = r_cs.T @ (r_ego.T @ (np.asarray(ann["translation"]) - t_ego) - t_cs)
        axes = r_total @ quat_to_matrix(ann["rotation"])  # box axes (columns) in the LiDAR frame
        w, l, h = ann["size"]
        half = np.array([l / 2, w / 2, h / 2])
        r = float(np.linalg.norm(half)) + 1e-3
        lo, hi = np.searchsorted(xs, center[0] - r), np.searchsorted(xs, center[0] + r, side="right")
        cand = pts[order[lo:hi]]
        local = np.abs((cand - center) @ axes)  # (K, 3) |coordinates| along the box axes
        inside = (local <= half - 1e-6).all(1)
        maybe = (local <= half + 1e-6).all(1) & ~inside
        n = int(inside.sum())
        if maybe.any():
            n += _devkit_count(cand[maybe], ann, ego_pose, calibration)
        counts.append(n)
    return counts


def _devkit_count(points: np.ndarray, ann: dict, ego_pose: dict, calibration: dict) -> int:
    """The devkit's own count for the few points on a box face."""
    from nuscenes.utils.data_classes import Box
    from nuscenes.utils.geometry_utils import points_in_box
    from pyquaternion import Quaternion

    box = Box(ann["translation"], ann["size"], Quaternion(ann["rotation"]))
    box.translate(-np.array(ego_pose["translation"]))
    box.rotate(Quaternion(ego_pose["rotation"]).inverse)
    box.translate(-np.array(calibration["translation"]))
    box.rotate(Quaternion(calibration["rotation"]).inverse)
    return int(points_in_box(box, points.T.astype(np.float64)).sum())
