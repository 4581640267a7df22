"""Heading and velocity of matched detections, split by whether the object moves.

The official mAOE / mAVE say how wrong headings and velocities are, not how: a detector that gets
moving cars right but flips parked ones front-to-back, or one whose velocity branch still answers
0 m/s, has the same kind of number. This breakdown matches detections to ground truth the way the
devkit does (per class, highest score first, nearest free GT centre within ``dist_th`` metres, on the
boxes the devkit kept after its range and point filters) and reports, per class:

- ``heading30`` / ``flipped``: share of matches whose heading is within 30 degrees of the GT / more than
  150 degrees off (front and back swapped), with the devkit's yaw period (pi for barriers);
- the same heading share for moving (GT speed > ``moving_speed`` m/s) and static objects;
- ``speed_pred`` / ``speed_gt``: mean predicted and GT speed over moving matches, and ``ave_moving`` /
  ``ave_static``: mean velocity error (m/s) of moving and static matches.

Traffic cones have neither heading nor velocity in the devkit and are left out; barriers have no velocity.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from nuscenes.eval.common.data_classes import EvalBoxes
from nuscenes.eval.common.utils import yaw_diff

from distillbev.structures import CLASS_NAMES

DIST_TH = 2.0  # m, the devkit's TP threshold
MIN_SCORE = 0.3
MOVING_SPEED = 0.5  # m/s
NO_HEADING = ("traffic_cone",)
NO_VELOCITY = ("traffic_cone", "barrier")
MOTION_KEYS = (
    "n",
    "heading30",
    "flipped",
    "heading30_moving",
    "heading30_static",
    "speed_pred",
    "speed_gt",
    "ave_moving",
    "ave_static",
)


def match_class(
    gt: EvalBoxes, pred: EvalBoxes, name: str, dist_th: float, min_score: float
) -> list[tuple[Any, Any]]:
    """``(gt_box, pred_box)`` pairs of class ``name``: predictions with score >= ``min_score`` taken by
    descending score, each matched to the nearest not yet matched GT centre (xy) within ``dist_th``."""
    preds = [b for b in pred.all if b.detection_name == name and b.detection_score >= min_score]
    preds.sort(key=lambda b: -b.detection_score)
    centres: dict[str, np.ndarray] = {}
    boxes: dict[str, list[Any]] = {}
    for token in gt.sample_tokens:
        boxes[token] = [b for b in gt[token] if b.detection_name == name]
        centres[token] = np.array([b.translation[:2] for b in boxes[token]], dtype=np.float64).reshape(-1, 2)
    taken = {token: np.zeros(len(b), dtype=bool) for token, b in boxes.items()}
    pairs = []
    for p in preds:
        c = centres.get(p.sample_token)
        if c is None or len(c) == 0:
            continue
        d = np.linalg.norm(c - np.asarray(p.translation[:2], dtype=np.float64), axis=1)
        d[taken[p.sample_token]] = np.inf
        i = int(np.argmin(d))
        if d[i] < dist_th:
            taken[p.sample_token][i] = True
            pairs.append((boxes[p.sample_token][i], p))
    return pairs


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def motion_breakdown(
    gt: EvalBoxes,
    pred: EvalBoxes,
    dist_th: float = DIST_TH,
    min_score: float = MIN_SCORE,
    moving_speed: float = MOVING_SPEED,
) -> dict[str, float | int | None]:
    """Flat dict ``motion/<key>/<class>`` (keys in :data:`MOTION_KEYS`; None where nothing to average)."""
    out: dict[str, float | int | None] = {}
    for name in CLASS_NAMES:
        if name in NO_HEADING:
            continue
        period = math.pi if name == "barrier" else 2 * math.pi
        stats: dict[str, list[float]] = {k: [] for k in MOTION_KEYS[1:]}
        pairs = match_class(gt, pred, name, dist_th, min_score)
        for g, p in pairs:
            err = math.degrees(yaw_diff(g, p, period))
            within, flipped = float(err < 30.0), float(err > 150.0)
            stats["heading30"].append(within)
            stats["flipped"].append(flipped)
            v_gt = np.asarray(g.velocity, dtype=np.float64)
            if name in NO_VELOCITY or not np.all(np.isfinite(v_gt)):
                continue
            v_pred = np.asarray(p.velocity, dtype=np.float64)
            moving = float(np.linalg.norm(v_gt)) > moving_speed
            stats["heading30_moving" if moving else "heading30_static"].append(within)
            err_v = float(np.linalg.norm(v_pred - v_gt))
            if moving:
                stats["speed_pred"].append(float(np.linalg.norm(v_pred)))
                stats["speed_gt"].append(float(np.linalg.norm(v_gt)))
                stats["ave_moving"].append(err_v)
            else:
                stats["ave_static"].append(err_v)
        out[f"motion/n/{name}"] = len(pairs)
        for key, values in stats.items():
            out[f"motion/{key}/{name}"] = _mean(values)
    return out
