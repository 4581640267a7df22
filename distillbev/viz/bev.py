"""Bird's-eye-view plot: LiDAR points, ground-truth boxes and optional predictions (matplotlib Agg).

x (forward) points right and y (left) points up, so the plot reads like a map seen from above with the
ego vehicle (the triangle at the origin) driving to the right. Every box carries a heading tick from
its centre to the middle of its front edge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon

from distillbev.io import atomic_path
from distillbev.structures import CLASS_NAMES, box_corners_bev
from distillbev.viz.cameras import CLASS_COLORS, GT_COLOR, to_numpy, unpack_predictions


def _rgb(color: tuple[int, int, int]) -> tuple[float, float, float]:
    """0-255 RGB to matplotlib's 0-1 RGB."""
    return tuple(c / 255.0 for c in color)


def _draw_boxes(ax: Any, boxes: np.ndarray, colors: list[tuple[float, float, float]], style: str) -> None:
    """Outline each box and draw its heading tick."""
    if len(boxes) == 0:
        return
    corners = box_corners_bev(boxes)  # (M, 4, 2), front-left, rear-left, rear-right, front-right
    front_mid = (corners[:, 0] + corners[:, 3]) / 2  # (M, 2)
    for c, f, b, col in zip(corners, front_mid, boxes, colors, strict=True):
        ax.add_patch(Polygon(c, closed=True, fill=False, edgecolor=col, linewidth=1.2, linestyle=style))
        ax.plot([b[0], f[0]], [b[1], f[1]], color=col, linewidth=1.2, linestyle=style)


def render_bev(
    points: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    pred: Any = None,
    out_path: str | Path | None = None,
    range: float = 51.2,  # the public keyword is `range` (shadows the builtin here only)
    score_threshold: float = 0.3,
    title: str | None = None,
    size_inches: float = 8.0,
) -> Figure:
    """Plot a sample from above and write it as PNG to ``out_path`` (atomically) if given.

    ``points`` (P, >=3) and boxes (M, 9) are in the LiDAR frame; points are coloured by height.
    Ground truth is solid green, predictions (a ``(boxes, scores, labels)`` tuple or ``Detections``,
    scores below ``score_threshold`` hidden) are dashed in their class colour. ``range`` (m) is the
    half-width of the plotted square. Returns the figure.
    """
    pts = to_numpy(points, np.float32)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"points must be (P, >=3), got shape {pts.shape}")
    gt = to_numpy(gt_boxes).reshape(-1, 9)
    if len(to_numpy(gt_labels).reshape(-1)) != len(gt):
        raise ValueError(f"{len(gt)} GT boxes but {len(to_numpy(gt_labels).reshape(-1))} GT labels")
    pb, pl = unpack_predictions(pred, score_threshold)

    fig = Figure(figsize=(size_inches, size_inches), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    inside = (np.abs(pts[:, 0]) <= range) & (np.abs(pts[:, 1]) <= range)
    ax.scatter(pts[inside, 0], pts[inside, 1], s=0.3, c=pts[inside, 2], cmap="viridis", vmin=-2.5, vmax=2.5,
               linewidths=0, rasterized=True)
    _draw_boxes(ax, gt, [_rgb(GT_COLOR)] * len(gt), "-")
    _draw_boxes(ax, pb, [_rgb(CLASS_COLORS[CLASS_NAMES[int(c)]]) for c in pl], "--")
    ego = np.array([[2.0, 0.0], [-1.0, 1.2], [-1.0, -1.2]])  # triangle pointing +x
    ax.add_patch(Polygon(ego, closed=True, color="red", zorder=5))

    handles = [Line2D([], [], color=_rgb(GT_COLOR), label="ground truth")]
    handles += [
        Line2D([], [], color=_rgb(CLASS_COLORS[CLASS_NAMES[c]]), linestyle="--", label=CLASS_NAMES[c])
        for c in sorted({int(c) for c in pl})
    ]
    ax.legend(handles=handles, loc="upper right", fontsize=7)
    ax.set_xlim(-range, range)
    ax.set_ylim(-range, range)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, forward)")
    ax.set_ylabel("y (m, left)")
    if title:
        ax.set_title(title)
    if out_path is not None:
        with atomic_path(out_path) as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight")
    return fig
