"""Which way objects face, by their lateral offset from the ego: the handedness a dataset's traffic has.

In the LiDAR frame of nuScenes (x to the right of the ego, y ahead) a right-hand-traffic road puts
oncoming vehicles on the left (x < 0, heading towards -y) and vehicles going the ego's way on the
right. Where that holds, a detector can tell a vehicle's front from its back from where it drives,
unless its training mirrors scenes (docs/architectures.md, "BEV augmentation and handedness").
``side_table`` measures it: per lateral bin, how many objects of a class and what share of them head
ahead (sin(yaw) > 0, towards +y).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillbev.structures import class_index

__all__ = ["SideRow", "side_table"]


@dataclass(frozen=True)
class SideRow:
    """One lateral bin ``[x_low, x_high)`` (m): object count and the share heading ahead (+y)."""

    x_low: float
    x_high: float
    n: int
    ahead: float


def side_table(
    boxes: np.ndarray,
    labels: np.ndarray,
    class_name: str,
    bin_width: float = 2.0,
    x_limit: float = 16.0,
    y_limit: float = 40.0,
    min_speed: float | None = None,
    max_speed: float | None = None,
    min_count: int = 1,
) -> list[SideRow]:
    """Rows for ``class_name`` over ``boxes`` (N, 9) ``(x, y, z, l, w, h, yaw, vx, vy)`` in a LiDAR frame.

    Only boxes with ``|y| < y_limit`` and ``|x| < x_limit`` count; ``min_speed`` / ``max_speed`` (m/s)
    keep moving or static ones. Bins holding fewer than ``min_count`` boxes are left out.
    """
    if boxes.ndim != 2 or boxes.shape[1] < 9 or len(boxes) != len(labels):
        raise ValueError(
            f"side_table: boxes must be (N, 9) with N labels, got {boxes.shape} and {len(labels)} labels"
        )
    if bin_width <= 0:
        raise ValueError(f"side_table: bin_width must be > 0, got {bin_width}")
    keep = labels == class_index(class_name)
    keep &= (np.abs(boxes[:, 1]) < y_limit) & (np.abs(boxes[:, 0]) < x_limit)
    speed = np.linalg.norm(boxes[:, 7:9], axis=1)
    if min_speed is not None:
        keep &= speed > min_speed
    if max_speed is not None:
        keep &= speed <= max_speed
    b = boxes[keep]
    edges = np.arange(-x_limit, x_limit + 1e-9, bin_width)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (b[:, 0] >= lo) & (b[:, 0] < hi)
        n = int(inside.sum())
        if n >= max(min_count, 1):
            rows.append(SideRow(float(lo), float(hi), n, float(np.mean(np.sin(b[inside, 6]) > 0))))
    return rows
