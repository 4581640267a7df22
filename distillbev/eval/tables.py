"""Metric tables: the 7 nuScenes headline metrics with per-class AP and TP errors (rich and markdown).

Input is the flat dict of :func:`distillbev.eval.nuscenes_eval.evaluate`; undefined values (None or
NaN, e.g. the orientation error of traffic cones) print as ``-``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from distillbev.eval.localisation import LOC_KEYS
from distillbev.eval.motion import DIST_TH, MIN_SCORE, MOTION_KEYS, MOVING_SPEED
from distillbev.io import write_text
from distillbev.structures import CLASS_NAMES

_TP = ("ATE", "ASE", "AOE", "AVE", "AAE")
_HEADLINE = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")


def _fmt(x: Any, digits: int = 3) -> str:
    """A metric value to text; None / NaN / missing -> '-'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{float(x):.{digits}f}"


def _check(metrics: dict[str, Any]) -> None:
    """Clear error when the dict is not a metrics dict."""
    missing = [k for k in _HEADLINE if k not in metrics]
    if missing:
        raise KeyError(f"metrics dict lacks {', '.join(missing)} (expected the output of evaluate())")


def _class_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """Per-class rows ``[class, AP, ATE, ..., AAE]`` followed by the mean row."""
    rows = [
        [n, _fmt(metrics.get(f"AP/{n}"))] + [_fmt(metrics.get(f"{t}/{n}")) for t in _TP] for n in CLASS_NAMES
    ]
    rows.append(["mean", _fmt(metrics["mAP"])] + [_fmt(metrics[f"m{t}"]) for t in _TP])
    return rows


def _distance_bins(metrics: dict[str, Any]) -> list[str]:
    """Distance-bin tags (e.g. ``0-20m``) present in the dict, in insertion order."""
    return [k[len("mAP_"):] for k in metrics if k.startswith("mAP_")]


def format_metrics_table(metrics: dict[str, Any], title: str | None = None) -> Table:
    """A rich Table: one row per class (AP and the five TP errors) and a mean row; NDS in the title."""
    _check(metrics)
    head = f"NDS {_fmt(metrics['NDS'])} | mAP {_fmt(metrics['mAP'])}"
    table = Table(title=f"{title}: {head}" if title else head)
    table.add_column("class")
    for col in ("AP",) + _TP:
        table.add_column(col, justify="right")
    rows = _class_rows(metrics)
    for row in rows[:-1]:
        table.add_row(*row)
    table.add_section()
    table.add_row(*rows[-1], style="bold")
    return table


def format_distance_table(metrics: dict[str, Any]) -> Table | None:
    """A rich Table of AP per ego-distance bin (None when the dict has no distance bins)."""
    bins = _distance_bins(metrics)
    if not bins:
        return None
    table = Table(title="AP by ego distance")
    table.add_column("class")
    for b in bins:
        table.add_column(b, justify="right")
    for n in CLASS_NAMES:
        table.add_row(n, *[_fmt(metrics.get(f"AP_{b}/{n}")) for b in bins])
    table.add_section()
    table.add_row("mAP (classes present)", *[_fmt(metrics[f"mAP_{b}"]) for b in bins], style="bold")
    return table


_MOTION_HEADERS = {  # column header of each key of distillbev.eval.motion.MOTION_KEYS
    "n": "n",
    "heading30": "<30",
    "flipped": ">150",
    "heading30_moving": "<30mv",
    "heading30_static": "<30st",
    "speed_pred": "v_pred",
    "speed_gt": "v_gt",
    "ave_moving": "AVEmv",
    "ave_static": "AVEst",
}


def _breakdown_table(
    metrics: dict[str, Any],
    prefix: str,
    keys: tuple[str, ...],
    headers: dict[str, str],
    names: tuple[str, ...],
    title: str,
    caption: str,
) -> Table | None:
    """A rich Table of ``<prefix>/<key>/<name>`` values, a row per name present (``all`` in its own section);
    None when the dict has none."""
    names = tuple(n for n in names if f"{prefix}/n/{n}" in metrics)
    if not names:
        return None
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD)
    table.add_column("class")
    for key in keys:
        table.add_column(headers[key], justify="right", no_wrap=True)
    for n in names:
        if n == "all":
            table.add_section()
        table.add_row(n, *[_fmt(metrics.get(f"{prefix}/{k}/{n}"), 0 if k == "n" else 2) for k in keys])
    return table


def format_motion_table(metrics: dict[str, Any]) -> Table | None:
    """A rich Table of the heading / velocity breakdown (None when the dict has none)."""
    return _breakdown_table(
        metrics, "motion", MOTION_KEYS, _MOTION_HEADERS, CLASS_NAMES,
        title="heading and velocity of matched detections",
        caption=f"score >= {MIN_SCORE:g}, centre within {DIST_TH:g} m; <30 / >150: share of headings within"
        f" 30 / past 150 deg (mv: moving > {MOVING_SPEED:g} m/s, st: static); v: mean speed of moving ones;"
        " AVE: velocity error (m/s)",
    )


_LOC_HEADERS = {  # column header of each key of distillbev.eval.localisation.LOC_KEYS
    "n": "n",
    "radial_bias": "radial bias",
    "radial_abs": "|radial|",
    "lateral_abs": "|lateral|",
    "radial_bias_rel": "bias/range",
}


def format_localisation_table(metrics: dict[str, Any]) -> Table | None:
    """A rich Table of the radial / lateral split of the centre error (None when the dict has none)."""
    return _breakdown_table(
        metrics, "loc", LOC_KEYS, _LOC_HEADERS, (*CLASS_NAMES, "all"),
        title="centre error of matched detections along / across the line of sight",
        caption=f"score >= {MIN_SCORE:g}, centre within {DIST_TH:g} m; radial: predicted minus GT range"
        " (m, > 0: too far); lateral: across the line of sight (m); bias/range: mean radial error / GT range",
    )


def print_metrics(metrics: dict[str, Any], title: str | None = None, console: Console | None = None) -> None:
    """Print the headline line, the per-class table and (if present) the per-distance and motion tables."""
    console = console or Console()
    _check(metrics)
    console.print("  ".join(f"{k} {_fmt(metrics[k], 4)}" for k in _HEADLINE))
    console.print(format_metrics_table(metrics, title))
    dist = format_distance_table(metrics)
    if dist is not None:
        console.print(dist)
    motion = format_motion_table(metrics)
    if motion is not None:
        console.print(motion)
    loc = format_localisation_table(metrics)
    if loc is not None:
        console.print(loc)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def metrics_markdown(metrics: dict[str, Any], title: str | None = None) -> str:
    """The same tables as :func:`print_metrics`, as markdown text."""
    _check(metrics)
    parts = [f"### {title}\n" if title else ""]
    parts.append(_md_table(list(_HEADLINE), [[_fmt(metrics[k], 4) for k in _HEADLINE]]))
    parts.append("")
    parts.append(_md_table(["class", "AP", *_TP], _class_rows(metrics)))
    bins = _distance_bins(metrics)
    if bins:
        rows = [[n] + [_fmt(metrics.get(f"AP_{b}/{n}")) for b in bins] for n in CLASS_NAMES]
        rows.append(["mAP (classes present)"] + [_fmt(metrics[f"mAP_{b}"]) for b in bins])
        parts += ["", _md_table(["class", *bins], rows)]
    return "\n".join(p for p in parts if p is not None).lstrip("\n") + "\n"


def comparison_markdown(runs: dict[str, dict[str, Any]], title: str | None = None) -> str:
    """One markdown row per run (e.g. teacher, baseline student, distilled student): headline metrics.

    ``runs`` maps a run name to its metrics dict; a run without metrics (None or {}) prints dashes.
    """
    rows = [[name] + [_fmt((m or {}).get(k), 4) for k in _HEADLINE] for name, m in runs.items()]
    text = _md_table(["run", *_HEADLINE], rows)
    return (f"### {title}\n\n" if title else "") + text + "\n"


def format_comparison_table(runs: dict[str, dict[str, Any]], title: str | None = None) -> Table:
    """The rich version of :func:`comparison_markdown`."""
    table = Table(title=title)
    table.add_column("run")
    for k in _HEADLINE:
        table.add_column(k, justify="right")
    for name, m in runs.items():
        table.add_row(name, *[_fmt((m or {}).get(k), 4) for k in _HEADLINE])
    return table


def save_metrics_markdown(metrics: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Atomically write :func:`metrics_markdown` to ``path``."""
    write_text(path, metrics_markdown(metrics, title))
    return Path(path)
