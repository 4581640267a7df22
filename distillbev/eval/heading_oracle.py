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
from pyquaternion import Quaternion

from distillbev.eval.fake_predictions import gt_boxes_of_sample

#: Classes whose heading is left alone (no yaw, or a yaw only modulo pi).
UNTURNED = frozenset({"traffic_cone", "barrier"})


def _yaw(rotation: list[float]) -> float:
    return float(Quaternion(rotation).yaw_pitch_roll[0])


def turn_headings_to_gt(
    nusc: NuScenes, results: dict[str, Any], dist_th: float = 2.0
) -> tuple[dict[str, Any], int, int]:
    """A copy of ``results`` (the result-file dict) with reversed headings turned by pi, and the counts
    ``(matched, turned)`` of predictions with a same-class GT centre within ``dist_th`` m."""
    out = copy.deepcopy(results)
    matched = turned = 0
    for token, preds in out["results"].items():
        gts = gt_boxes_of_sample(nusc, token)
        for p in preds:
            name = p["detection_name"]
            if name in UNTURNED:
                continue
            cand = [g for g in gts if g["detection_name"] == name]
            if not cand:
                continue
            centres = np.array([g["translation"][:2] for g in cand])
            d = np.linalg.norm(centres - np.asarray(p["translation"][:2]), axis=1)
            i = int(np.argmin(d))
            if d[i] >= dist_th:
                continue
            matched += 1
            diff = np.remainder(_yaw(p["rotation"]) - _yaw(cand[i]["rotation"]) + np.pi, 2 * np.pi) - np.pi
            if abs(diff) > np.pi / 2:
                turned += 1
                q = Quaternion(axis=[0.0, 0.0, 1.0], angle=np.pi) * Quaternion(p["rotation"])
                p["rotation"] = [float(v) for v in q.elements]
    return out, matched, turned
