"""Shared vocabulary: detection classes, task groups, box layout and the BEV grid.

Conventions used everywhere in distillbev:
- Every 3D quantity of a sample is in the **key frame's LIDAR_TOP frame** (x, y, z in metres).
- A box is a row of 9 floats ``(x, y, z, l, w, h, yaw, vx, vy)``: centre (z is the box centre, not
  its bottom), length along the heading, width, height, yaw counter-clockwise about +z from +x (the
  nuScenes yaw), velocity in m/s. nuScenes stores sizes as (w, l, h); the reader and the result
  writer convert.
- BEV tensors are laid out ``[..., y, x]``: row index = y cell, column index = x cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The 10 nuScenes detection classes, in label order (labels 0..9).
CLASS_NAMES: tuple[str, ...] = (
    "car",
    "truck",
    "construction_vehicle",
    "bus",
    "trailer",
    "barrier",
    "motorcycle",
    "bicycle",
    "pedestrian",
    "traffic_cone",
)

#: CenterHead task groups (one heatmap branch per group), as in CenterPoint on nuScenes.
TASK_GROUPS: tuple[tuple[str, ...], ...] = (
    ("car",),
    ("truck", "construction_vehicle"),
    ("bus", "trailer"),
    ("barrier",),
    ("motorcycle", "bicycle"),
    ("pedestrian", "traffic_cone"),
)

#: Box row layout.
BOX_DIM = 9
BOX_FIELDS: tuple[str, ...] = ("x", "y", "z", "l", "w", "h", "yaw", "vx", "vy")

#: nuScenes attribute names that the devkit accepts.
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "cycle.with_rider",
    "cycle.without_rider",
    "pedestrian.moving",
    "pedestrian.sitting_lying_down",
    "pedestrian.standing",
    "vehicle.moving",
    "vehicle.parked",
    "vehicle.stopped",
)

#: Camera channels in nuScenes' order.
CAMERA_NAMES: tuple[str, ...] = (
    "CAM_FRONT_LEFT",
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_BACK_LEFT",
    "CAM_BACK",
    "CAM_BACK_RIGHT",
)
LIDAR_NAME = "LIDAR_TOP"
#: The detection range, x, y, z min then max (m, key LiDAR frame): the default of the reader's point
#: range, the teachers' pillar canvas and the students' BEV grid (``RunConfig`` checks that the model's
#: range covers the reader's).
POINT_RANGE: tuple[float, ...] = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)


def class_index(name: str) -> int:
    """Label of a detection class name; a clear error for an unknown name."""
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        expected = ", ".join(CLASS_NAMES)
        raise ValueError(f"unknown detection class {name!r}; expected one of {expected}") from None


def default_attribute(label: int, speed: float) -> str:
    """The attribute nuScenes would give a detection of class ``label`` moving at ``speed`` m/s."""
    name = CLASS_NAMES[label]
    if name in ("car", "truck", "construction_vehicle", "bus", "trailer"):
        return "vehicle.moving" if speed > 0.2 else "vehicle.parked"
    if name in ("motorcycle", "bicycle"):
        return "cycle.with_rider" if speed > 0.2 else "cycle.without_rider"
    if name == "pedestrian":
        return "pedestrian.moving" if speed > 0.2 else "pedestrian.standing"
    return ""


@dataclass(frozen=True)
class BEVGrid:
    """A square-celled bird's-eye-view grid over ``[x_min, x_max) x [y_min, y_max)`` metres.

    Cell ``(i, j)`` (row ``i`` = y, column ``j`` = x) covers
    ``[x_min + j*cell, x_min + (j+1)*cell) x [y_min + i*cell, y_min + (i+1)*cell)``.
    """

    x_min: float = POINT_RANGE[0]
    x_max: float = POINT_RANGE[3]
    y_min: float = POINT_RANGE[1]
    y_max: float = POINT_RANGE[4]
    cell: float = 0.8

    @property
    def width(self) -> int:
        """Number of cells along x (columns)."""
        return int(round((self.x_max - self.x_min) / self.cell))

    @property
    def height(self) -> int:
        """Number of cells along y (rows)."""
        return int(round((self.y_max - self.y_min) / self.cell))

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` = (rows along y, columns along x)."""
        return self.height, self.width

    def scaled(self, factor: float) -> BEVGrid:
        """The same extent with cells ``factor`` times larger."""
        return BEVGrid(self.x_min, self.x_max, self.y_min, self.y_max, self.cell * factor)

    def cell_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """Metric ``(x, y)`` of every cell centre, each of shape ``(H, W)``."""
        xs = self.x_min + (np.arange(self.width) + 0.5) * self.cell
        ys = self.y_min + (np.arange(self.height) + 0.5) * self.cell
        gx, gy = np.meshgrid(xs, ys)
        return gx, gy


def wrap_angle(a: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles to ``[-pi, pi)``."""
    return (np.asarray(a) + math.pi) % (2 * math.pi) - math.pi


def box_corners_bev(boxes: np.ndarray) -> np.ndarray:
    """BEV corners of boxes ``(N, >=7)`` as ``(N, 4, 2)``, counter-clockwise from front-left."""
    boxes = np.asarray(boxes, dtype=np.float64)
    x, y, l, w, yaw = boxes[:, 0], boxes[:, 1], boxes[:, 3], boxes[:, 4], boxes[:, 6]
    local = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])  # (4, 2) in (l, w) units
    pts = local[None] * np.stack([l, w], -1)[:, None]  # (N, 4, 2)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    rx = pts[..., 0] * c - pts[..., 1] * s + x[:, None]
    ry = pts[..., 0] * s + pts[..., 1] * c + y[:, None]
    return np.stack([rx, ry], -1)


def box_corners_3d(boxes: np.ndarray) -> np.ndarray:
    """3D corners of boxes ``(N, >=7)`` as ``(N, 8, 3)``: 4 bottom corners then 4 top corners."""
    boxes = np.asarray(boxes, dtype=np.float64)
    bev = box_corners_bev(boxes)  # (N, 4, 2)
    z0 = (boxes[:, 2] - boxes[:, 5] / 2)[:, None, None]
    z1 = (boxes[:, 2] + boxes[:, 5] / 2)[:, None, None]
    bottom = np.concatenate([bev, np.broadcast_to(z0, bev.shape[:2] + (1,))], -1)
    top = np.concatenate([bev, np.broadcast_to(z1, bev.shape[:2] + (1,))], -1)
    return np.concatenate([bottom, top], 1)


def points_in_boxes(points: np.ndarray, boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Boolean ``(N_points, N_boxes)``: is each point inside (or on) each box.

    ``points`` is ``(N, >=3)`` xyz; ``boxes`` is ``(M, >=7)``. ``margin`` (m) grows every box.
    """
    pts = np.asarray(points, dtype=np.float64)[:, :3]
    boxes = np.asarray(boxes, dtype=np.float64)
    if len(boxes) == 0 or len(pts) == 0:
        return np.zeros((len(pts), len(boxes)), dtype=bool)
    d = pts[:, None, :] - boxes[None, :, :3]  # (N, M, 3)
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    lx = d[..., 0] * c + d[..., 1] * s
    ly = -d[..., 0] * s + d[..., 1] * c
    return (
        (np.abs(lx) <= boxes[:, 3] / 2 + margin)
        & (np.abs(ly) <= boxes[:, 4] / 2 + margin)
        & (np.abs(d[..., 2]) <= boxes[:, 5] / 2 + margin)
    )
