"""The figures of ``distillbev report``, each returned as PNG bytes (matplotlib Agg, no pyplot state):
training curves, BEV views of ground truth vs detections, per-class and per-distance AP bars."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon
from matplotlib.ticker import MaxNLocator

from distillbev.structures import CLASS_NAMES, box_corners_bev

#: Colours of the report: one per run role, and the BEV view's ground truth / detections.
ROLE_COLORS = {"teacher": "#8c8c8c", "baseline": "#3b75af", "distilled": "#e8772e"}
GT_CYAN = "#00e5ff"
DET_YELLOW = "#ffd400"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor=fig.get_facecolor())
    return buf.getvalue()


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """A centred moving average that keeps the ends (shorter windows there)."""
    if window <= 1 or len(y) < 3:
        return y
    kernel = np.ones(window)
    num = np.convolve(y, kernel, mode="same")
    den = np.convolve(np.ones_like(y), kernel, mode="same")
    return num / den


def loss_series(rows: list[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-step series of a ``log.jsonl``: ``detection`` (the student's own terms: every ``loss/*``
    but the distillation terms ``loss/kd_*`` and the total), ``distillation`` (all ``kd`` terms) and
    ``kd <layer>`` per distilled layer. Each maps to ``(steps, values)``."""
    out: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        losses = {k[5:]: v for k, v in r.items() if k.startswith("loss/") and isinstance(v, (int, float))}
        if not losses:
            continue
        kd = {k: v for k, v in losses.items() if k.startswith("kd_")}
        det = [v for k, v in losses.items() if not k.startswith("kd_") and k != "total"]
        out.setdefault("detection", []).append((r["step"], float(sum(det))))
        if kd:
            out.setdefault("distillation", []).append((r["step"], float(sum(kd.values()))))
            for layer in sorted({k.rsplit("_", 1)[-1] for k in kd}):
                total = sum(v for k, v in kd.items() if k.rsplit("_", 1)[-1] == layer)
                out.setdefault(f"kd {layer}", []).append((r["step"], float(total)))
    return {k: (np.array([s for s, _ in v]), np.array([x for _, x in v])) for k, v in out.items()}


def val_series(rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(epochs, values)`` of a logged validation metric (``val/<key>``), epochs counted from 1."""
    pts = [(r["epoch"] + 1, r[f"val/{key}"]) for r in rows if f"val/{key}" in r]
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts], dtype=float)


def training_curves(logs: dict[str, tuple[str, list[dict[str, Any]]]]) -> bytes:
    """Three panels: the detection loss of each run (thin: as logged, bold: smoothed), the distilled
    run's imitation loss per layer, and validation mAP / NDS per evaluated epoch.
    ``logs`` maps a role (baseline, distilled) to ``(label, log rows)``."""
    fig = _figure(15, 4.2)
    ax_det, ax_kd, ax_val = fig.subplots(1, 3)
    ratio = 1.0
    for role, (label, rows) in logs.items():
        series = loss_series(rows)
        if "detection" not in series:
            continue
        steps, y = series["detection"]
        color = ROLE_COLORS[role]
        ax_det.plot(steps, y, color=color, alpha=0.25, linewidth=0.8)
        ax_det.plot(steps, _smooth(y, max(1, len(y) // 25)), color=color, linewidth=2, label=label)
        ratio = max(ratio, float(np.max(y) / max(np.min(y), 1e-9)))
        if role == "distilled":
            layers = [k for k in series if k.startswith("kd ")]
            for i, k in enumerate(layers):
                s, v = series[k]
                ax_kd.plot(s, _smooth(v, max(1, len(v) // 25)), linewidth=1.6, label=k[3:], color=f"C{i + 2}")
            if "distillation" in series:
                s, v = series["distillation"]
                ax_kd.plot(
                    s, _smooth(v, max(1, len(v) // 25)), color="black", linewidth=2, label="all layers"
                )
        for key, marker in (("mAP", "o"), ("NDS", "s")):
            ep, val = val_series(rows, key)
            if len(ep):
                ax_val.plot(
                    ep,
                    val,
                    marker=marker,
                    color=color,
                    linestyle="-" if key == "mAP" else "--",
                    label=f"{label}: {key}",
                )
    if ratio > 20:
        ax_det.set_yscale("log")
    ax_det.set(title="detection loss (student's own terms)", xlabel="step", ylabel="loss")
    ax_kd.set(title="distillation loss of the distilled run, per layer", xlabel="step")
    ax_val.set(title="validation mAP / NDS", xlabel="epoch")
    ax_val.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_det, ax_kd, ax_val):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")  # where it covers the fewest points (one per run is common)
    if ax_val.lines:  # headroom above the points, so that the legend has a place that covers none
        lo, hi = ax_val.get_ylim()
        ax_val.set_ylim(lo, hi + 0.6 * (hi - lo))
    if not ax_kd.lines:
        ax_kd.text(0.5, 0.5, "no distilled run", ha="center", va="center", transform=ax_kd.transAxes)
    fig.tight_layout()
    return png_bytes(fig)


def _draw(ax: Any, boxes: np.ndarray, color: str, width: float, style: str = "-") -> None:
    if len(boxes) == 0:
        return
    corners = box_corners_bev(boxes)  # (M, 4, 2), front-left, rear-left, rear-right, front-right
    front = (corners[:, 0] + corners[:, 3]) / 2
    for c, f, b in zip(corners, front, boxes, strict=True):
        ax.add_patch(Polygon(c, closed=True, fill=False, edgecolor=color, linewidth=width, linestyle=style))
        ax.plot([b[0], f[0]], [b[1], f[1]], color=color, linewidth=width, linestyle=style)


def bev_comparison(
    points: np.ndarray,
    gt_boxes: np.ndarray,
    panels: Sequence[tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray]]],
    score_threshold: float = 0.3,
    half_range: float = 51.2,
    title: str = "",
) -> bytes:
    """One BEV panel per run on the same sample: LiDAR points (grey, for orientation), ground truth
    (cyan) and the run's detections with score >= ``score_threshold`` (yellow, dashed). x forward to
    the right, y left up; the ego is the red triangle. ``panels``: ``(title, (boxes, scores, labels))``
    with (M, 9) boxes in the sample's LiDAR frame."""
    fig = _figure(6.4 * len(panels), 6.8)
    fig.set_facecolor("#111111")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    pts = np.asarray(points, dtype=np.float32)
    inside = (np.abs(pts[:, 0]) <= half_range) & (np.abs(pts[:, 1]) <= half_range)
    pts = pts[inside][:: max(1, int(inside.sum()) // 60000)]
    for ax, (name, (boxes, scores, _)) in zip(axes, panels, strict=True):
        ax.set_facecolor("#111111")
        ax.scatter(pts[:, 0], pts[:, 1], s=0.15, c="#9a9a9a", linewidths=0, rasterized=True)
        _draw(ax, np.asarray(gt_boxes).reshape(-1, 9), GT_CYAN, 1.4)
        keep = np.asarray(scores) >= score_threshold
        _draw(ax, np.asarray(boxes).reshape(-1, 9)[keep], DET_YELLOW, 1.2, "--")
        ax.add_patch(Polygon([[2.0, 0.0], [-1.0, 1.2], [-1.0, -1.2]], closed=True, color="red", zorder=5))
        ax.set_xlim(-half_range, half_range)
        ax.set_ylim(-half_range, half_range)
        ax.set_aspect("equal")
        ax.tick_params(colors="#bbbbbb", labelsize=7)
        for s in ax.spines.values():
            s.set_color("#444444")
        best = f", best score {float(np.max(scores)):.2f}" if len(scores) else ""
        ax.set_title(
            f"{name}\n{int(keep.sum())} of {len(keep)} detections shown{best}; {len(gt_boxes)} GT",
            color="white",
            fontsize=10,
        )
    handles = [
        Line2D([], [], color=GT_CYAN, label="ground truth"),
        Line2D([], [], color=DET_YELLOW, linestyle="--", label=f"detection (score >= {score_threshold:g})"),
    ]
    axes[-1].legend(handles=handles, loc="upper right", fontsize=8, facecolor="#222222", labelcolor="white")
    if title:
        fig.suptitle(title, color="white", fontsize=10)
    fig.tight_layout()
    return png_bytes(fig, dpi=100)


def _bars(
    ax: Any, groups: Sequence[str], runs: dict[str, tuple[str, list[float | None]]], one_row: bool = True
) -> None:
    """Grouped bars: one group per entry of ``groups``, one bar per run (None = no value, no bar); the
    legend in one row at the top centre (``one_row``, a wide axes) or one column at the top right."""
    width = 0.8 / max(len(runs), 1)
    x = np.arange(len(groups))
    for i, (role, (label, values)) in enumerate(runs.items()):
        vals = [np.nan if v is None else v for v in values]
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, vals, width * 0.95, label=label, color=ROLE_COLORS.get(role, f"C{i}"))
        for p, v in zip(pos, vals, strict=True):
            if not math.isnan(v):
                ax.text(p, v + 0.005, f"{v:.2f}", ha="center", va="bottom", fontsize=6.5, rotation=90)
    ax.set_xticks(x, groups, rotation=25, ha="right")
    ax.grid(axis="y", alpha=0.3)
    top = max([v or 0 for _, values in runs.values() for v in values] + [0.05])
    ax.set_ylim(0, top * 1.4)  # headroom above the bars for their value labels and the legend
    if one_row:  # above the bars, in the headroom
        ax.legend(fontsize=8, loc="upper center", ncols=len(runs))
    else:
        ax.legend(fontsize=8, loc="upper right")


def per_class_ap(runs: dict[str, tuple[str, dict[str, Any]]]) -> bytes:
    """AP per class, one bar per run (``runs``: role -> (label, metrics))."""
    fig = _figure(13, 4.2)
    ax = fig.subplots()
    _bars(
        ax, CLASS_NAMES, {r: (lab, [m.get(f"AP/{n}") for n in CLASS_NAMES]) for r, (lab, m) in runs.items()}
    )
    ax.set(ylabel="AP", title="AP per class (mean over the 0.5/1/2/4 m match thresholds)")
    fig.tight_layout()
    return png_bytes(fig)


def distance_bins(metrics: dict[str, Any]) -> list[str]:
    """The distance-bin tags (``0-20m``) of a metrics dict, in order."""
    return [k[len("mAP_") :] for k in metrics if k.startswith("mAP_")]


def _class_bin_grid(metrics: dict[str, Any], bins: list[str]) -> np.ndarray:
    """AP per (class, bin), NaN where the bin has no ground truth of the class."""
    return np.array(
        [
            [np.nan if metrics.get(f"AP_{b}/{n}") is None else metrics[f"AP_{b}/{n}"] for b in bins]
            for n in CLASS_NAMES
        ],
        dtype=float,
    )


def per_distance_ap(runs: dict[str, tuple[str, dict[str, Any]]]) -> bytes:
    """mAP per ego-distance bin, one bar per run (left), and per class and bin (right): the gain of
    the distilled run over the baseline when both are in ``runs``, else the last run's AP."""
    bins: list[str] = []
    for _, m in runs.values():
        bins += [b for b in distance_bins(m) if b not in bins]
    fig = _figure(13, 4.2)
    ax, ax_cls = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    _bars(
        ax, bins, {r: (lab, [m.get(f"mAP_{b}") for b in bins]) for r, (lab, m) in runs.items()}, one_row=False
    )
    ax.set(ylabel="mAP (classes with GT in the bin)", title="mAP by distance from the ego")
    if "baseline" in runs and "distilled" in runs:
        grid = _class_bin_grid(runs["distilled"][1], bins) - _class_bin_grid(runs["baseline"][1], bins)
        lim = max(float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 0.0, 0.05)
        cmap, vmin, vmax, fmt = "RdYlGn", -lim, lim, "{:+.2f}"
        title = "AP gain (distilled − baseline) per class and distance"
    else:
        label, last = list(runs.values())[-1]
        grid = _class_bin_grid(last, bins)
        lim = max(float(np.nanmax(grid)) if np.isfinite(grid).any() else 0.0, 0.05)
        cmap, vmin, vmax, fmt = "viridis", 0.0, lim, "{:.2f}"
        title = f"AP per class and distance: {label}"
    im = ax_cls.imshow(grid.T, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax_cls.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=25, ha="right", fontsize=8)
    ax_cls.set_yticks(range(len(bins)), bins)
    for (j, i), v in np.ndenumerate(grid):
        text = "–" if np.isnan(v) else fmt.format(v)
        ax_cls.text(
            j, i, text, ha="center", va="center", fontsize=7, color="#777777" if np.isnan(v) else "black"
        )
    ax_cls.set_title(f"{title} (– = no GT there)")
    fig.colorbar(im, ax=ax_cls, fraction=0.03)
    fig.tight_layout()
    return png_bytes(fig)
