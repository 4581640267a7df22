"""An oracle diagnostic: how much of a detector's NDS its front/back heading errors cost.

Every prediction whose heading is more than 90 degrees from its nearest ground-truth box of the same
class (centres within ``dist_th`` m in xy, the devkit's evaluable GT) is turned by pi; nothing else
changes. Scoring the turned result file with the official metrics gives the NDS the detector would have
if it told every object's front from its back (docs/architectures.md, "Image-plane heading"). Barriers
(yaw modulo pi in the devkit) and cones (no yaw) are left as they are.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from nuscenes import NuScenes
from nuscenes.eval.common.utils import angle_diff, quaternion_yaw
from pyquaternion import Quaternion

from distillbev.eval.fake_predictions import gt_boxes_of_sample

#: Classes whose heading is left alone (no yaw, or a yaw only modulo pi).
UNTURNED = frozenset({"traffic_cone", "barrier"})


def turn_headings_to_gt(
    nusc: NuScenes, results: dict[str, Any], dist_th: float = 2.0
) -> tuple[dict[str, Any], int, int]:
    """A copy of ``results`` (the result-file dict) with reversed headings turned by pi, and the counts
    ``(matched, turned)`` of predictions with a same-class GT centre within ``dist_th`` m."""
    out = copy.deepcopy(results)
    matched = turned = 0
    half_turn = Quaternion(axis=[0.0, 0.0, 1.0], angle=np.pi)
    for token, preds in out["results"].items():
        gt: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # class -> (centres (K, 2), yaws (K,))
        boxes = gt_boxes_of_sample(nusc, token)
        for name in {g["detection_name"] for g in boxes}:
            of_class = [g for g in boxes if g["detection_name"] == name]
            centres = np.array([g["translation"][:2] for g in of_class])
            yaws = np.array([quaternion_yaw(Quaternion(g["rotation"])) for g in of_class])
            gt[name] = (centres, yaws)
        for p in preds:
            if p["detection_name"] in UNTURNED or p["detection_name"] not in gt:
                continue
            centres, yaws = gt[p["detection_name"]]
            d = np.linalg.norm(centres - np.asarray(p["translation"][:2]), axis=1)
            i = int(np.argmin(d))
            if d[i] >= dist_th:
                continue
            matched += 1
            q = Quaternion(p["rotation"])
            if abs(angle_diff(quaternion_yaw(q), yaws[i], 2 * np.pi)) > np.pi / 2:
                turned += 1
                p["rotation"] = [float(v) for v in (half_turn * q).elements]
    return out, matched, turned
