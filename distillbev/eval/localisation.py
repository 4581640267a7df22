"""Where matched detections are off: along the line of sight (depth) or across it.

The official mATE is a mean centre distance; it does not say whether a camera detector places objects
too far, too near, or beside them. Lifting images to BEV makes the error along the viewing ray
(depth) the one to watch, and a *signed* mean shows a systematic bias (a depth-bin convention, a
wrong intrinsic) that noise alone would not. Matches are made as in :mod:`distillbev.eval.motion`
(per class, highest score first, nearest free GT centre within ``dist_th`` metres, on the boxes the
devkit kept), and each pair's centre error is split in the ego frame (the devkit's ``ego_translation``,
from the ego position to the box in xy):

- ``radial``: predicted range minus GT range (m; > 0: placed too far);
- ``lateral``: the error across the GT's line of sight (m, unsigned).

Per class and over all classes (``all``): ``n``, ``radial_bias`` (mean signed radial error),
``radial_abs`` (mean |radial|), ``lateral_abs`` (mean |lateral|), and ``radial_bias_rel`` (mean of
radial / GT range, so that a depth scale error reads as a constant share).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from nuscenes.eval.common.data_classes import EvalBoxes

from distillbev.eval.motion import DIST_TH, MIN_SCORE, match_class
from distillbev.structures import CLASS_NAMES

LOC_KEYS = ("n", "radial_bias", "radial_abs", "lateral_abs", "radial_bias_rel")


def split_error(gt_xy: np.ndarray, pred_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed radial and unsigned lateral error of predicted centres ``pred_xy`` [N, 2] against GT centres
    ``gt_xy`` [N, 2], both relative to the ego position."""
    gt_xy = np.asarray(gt_xy, dtype=np.float64).reshape(-1, 2)
    pred_xy = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    rng = np.linalg.norm(gt_xy, axis=1)
    if np.any(rng <= 0):
        raise ValueError("a GT centre at the ego position has no line of sight")
    u = gt_xy / rng[:, None]
    err = pred_xy - gt_xy
    radial = np.linalg.norm(pred_xy, axis=1) - rng
    lateral = np.abs(u[:, 0] * err[:, 1] - u[:, 1] * err[:, 0])
    return radial, lateral


def _stats(gt_xy: list[Any], pred_xy: list[Any]) -> dict[str, float | int | None]:
    if not gt_xy:
        return {"n": 0, **{k: None for k in LOC_KEYS[1:]}}
    g, p = np.asarray(gt_xy), np.asarray(pred_xy)
    radial, lateral = split_error(g, p)
    return {
        "n": len(radial),
        "radial_bias": float(radial.mean()),
        "radial_abs": float(np.abs(radial).mean()),
        "lateral_abs": float(lateral.mean()),
        "radial_bias_rel": float((radial / np.linalg.norm(g, axis=1)).mean()),
    }


def localisation_breakdown(
    gt: EvalBoxes, pred: EvalBoxes, dist_th: float = DIST_TH, min_score: float = MIN_SCORE
) -> dict[str, float | int | None]:
    """Flat dict ``loc/<key>/<class>`` and ``loc/<key>/all`` (keys in :data:`LOC_KEYS`). The boxes must
    carry ``ego_translation`` (the devkit's ``add_center_dist``, done by ``DetectionEval``)."""
    out: dict[str, float | int | None] = {}
    all_g: list[Any] = []
    all_p: list[Any] = []
    for name in CLASS_NAMES:
        pairs = match_class(gt, pred, name, dist_th, min_score)
        g = [tuple(b.ego_translation[:2]) for b, _ in pairs]
        p = [tuple(b.ego_translation[:2]) for _, b in pairs]
        all_g += g
        all_p += p
        for key, value in _stats(g, p).items():
            out[f"loc/{key}/{name}"] = value
    for key, value in _stats(all_g, all_p).items():
        out[f"loc/{key}/all"] = value
    return out
