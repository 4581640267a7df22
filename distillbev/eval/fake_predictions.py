"""Ground-truth-derived "predictions" (perfect or deterministically perturbed) in the result format.

Used by the demo and the tests to check the evaluation path end to end: perfect predictions must score
mAP = NDS = 1 with zero TP errors, and every kind of noise must cost something. Boxes come straight
from the devkit's annotations (global frame), so no conversion of ours is involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from nuscenes import NuScenes
from nuscenes.eval.detection.utils import category_to_detection_name

from distillbev.eval.nuscenes_eval import split_sample_tokens
from distillbev.eval.results import DEFAULT_META, validate_results
from distillbev.structures import CLASS_NAMES

#: Attributes a class may carry (a flipped attribute stays valid for the class).
CLASS_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    **{c: ("vehicle.moving", "vehicle.parked", "vehicle.stopped")
       for c in ("car", "truck", "construction_vehicle", "bus", "trailer")},
    "motorcycle": ("cycle.with_rider", "cycle.without_rider"),
    "bicycle": ("cycle.with_rider", "cycle.without_rider"),
    "pedestrian": ("pedestrian.moving", "pedestrian.sitting_lying_down", "pedestrian.standing"),
    "barrier": (),
    "traffic_cone": (),
}
#: Typical (w, l, h) in metres per class, for false positives.
TYPICAL_SIZE: dict[str, tuple[float, float, float]] = {
    "car": (1.9, 4.6, 1.7),
    "truck": (2.5, 7.0, 3.0),
    "construction_vehicle": (2.8, 6.5, 3.2),
    "bus": (2.9, 11.0, 3.5),
    "trailer": (2.9, 12.0, 3.9),
    "barrier": (2.5, 0.5, 1.0),
    "motorcycle": (0.8, 2.1, 1.5),
    "bicycle": (0.6, 1.7, 1.3),
    "pedestrian": (0.7, 0.7, 1.75),
    "traffic_cone": (0.4, 0.4, 1.0),
}


@dataclass(frozen=True)
class NoiseSpec:
    """How to perturb ground truth into plausible predictions (all zero = perfect)."""

    sigma_xy: float = 0.0  # std of the centre offset in x and y (m)
    size_frac: float = 0.0  # std of the relative size error (fraction of each dimension)
    sigma_yaw: float = 0.0  # std of the heading error (rad)
    sigma_velocity: float = 0.0  # std of the velocity error per axis (m/s)
    miss_rate: float = 0.0  # probability that a ground-truth box is not predicted
    attribute_flip_rate: float = 0.0  # probability of a wrong (but class-valid) attribute
    false_positives: int = 0  # false positives per sample, drawn uniformly from 0..false_positives

    @classmethod
    def typical(cls) -> NoiseSpec:
        """A moderate detector's noise: 0.3 m, 8 %, 0.15 rad, 0.4 m/s,
        10 % missed, 10 % wrong attributes, 0-3 false positives per sample."""
        return cls(0.3, 0.08, 0.15, 0.4, 0.1, 0.1, 3)

    def __post_init__(self) -> None:
        for name in ("sigma_xy", "size_frac", "sigma_yaw", "sigma_velocity", "false_positives"):
            if getattr(self, name) < 0:
                raise ValueError(f"NoiseSpec.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("miss_rate", "attribute_flip_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"NoiseSpec.{name} must be in [0, 1], got {getattr(self, name)}")


def _yaw_quat(angle: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation by ``angle`` about +z."""
    return np.array([np.cos(angle / 2), 0.0, 0.0, np.sin(angle / 2)])


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of (w, x, y, z) quaternions."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ]
    )


def gt_boxes_of_sample(nusc: NuScenes, sample_token: str) -> list[dict[str, Any]]:
    """The evaluable ground truth of a sample as perfect result boxes (score 1).

    Skips non-detection categories and boxes with no LiDAR/radar point (the devkit drops those from
    the ground truth, so predicting them would be false positives); velocity from
    ``nusc.box_velocity`` with NaN written as 0; the annotation's own attribute ('' if none).
    """
    out = []
    for ann_token in nusc.get("sample", sample_token)["anns"]:
        ann = nusc.get("sample_annotation", ann_token)
        name = category_to_detection_name(ann["category_name"])
        if name is None or ann["num_lidar_pts"] + ann["num_radar_pts"] == 0:
            continue
        vel = np.nan_to_num(nusc.box_velocity(ann_token)[:2], nan=0.0)
        attrs = ann["attribute_tokens"]
        attr = nusc.get("attribute", attrs[0])["name"] if attrs else ""
        out.append(
            {
                "sample_token": sample_token,
                "translation": [float(v) for v in ann["translation"]],
                "size": [float(v) for v in ann["size"]],
                "rotation": [float(v) for v in ann["rotation"]],
                "velocity": [float(v) for v in vel],
                "detection_name": name,
                "detection_score": 1.0,
                "attribute_name": attr,
            }
        )
    return out


def _perturb(box: dict[str, Any], noise: NoiseSpec, rng: np.random.Generator) -> dict[str, Any]:
    """One noisy copy of a perfect box, with a random score in [0.5, 1)."""
    t = np.array(box["translation"])
    t[:2] += rng.normal(0.0, noise.sigma_xy, 2)
    size = np.array(box["size"]) * np.clip(1.0 + rng.normal(0.0, noise.size_frac, 3), 0.2, None)
    rot = _quat_mul(_yaw_quat(rng.normal(0.0, noise.sigma_yaw)), np.array(box["rotation"]))
    vel = np.array(box["velocity"]) + rng.normal(0.0, noise.sigma_velocity, 2)
    attr = box["attribute_name"]
    choices = [a for a in CLASS_ATTRIBUTES[box["detection_name"]] if a != attr]
    if choices and rng.random() < noise.attribute_flip_rate:
        attr = choices[int(rng.integers(len(choices)))]
    score = float(rng.uniform(0.5, 1.0))
    return {
        **box,
        "translation": t.tolist(),
        "size": size.tolist(),
        "rotation": (rot / np.linalg.norm(rot)).tolist(),
        "velocity": vel.tolist(),
        "attribute_name": attr,
        "detection_score": score,
    }


def _false_positive(nusc: NuScenes, token: str, rng: np.random.Generator) -> dict[str, Any]:
    """A random low-score box of a random class within 40 m of the ego vehicle."""
    sd = nusc.get("sample_data", nusc.get("sample", token)["data"]["LIDAR_TOP"])
    ego = np.array(nusc.get("ego_pose", sd["ego_pose_token"])["translation"])
    name = CLASS_NAMES[int(rng.integers(len(CLASS_NAMES)))]
    w, l, h = TYPICAL_SIZE[name]
    r, a = rng.uniform(3.0, 40.0), rng.uniform(-np.pi, np.pi)
    attrs = CLASS_ATTRIBUTES[name]
    return {
        "sample_token": token,
        "translation": [float(ego[0] + r * np.cos(a)), float(ego[1] + r * np.sin(a)), float(ego[2] + h / 2)],
        "size": [w, l, h],
        "rotation": _yaw_quat(rng.uniform(-np.pi, np.pi)).tolist(),
        "velocity": [0.0, 0.0],
        "detection_name": name,
        "detection_score": float(rng.uniform(0.05, 0.5)),
        "attribute_name": attrs[int(rng.integers(len(attrs)))] if attrs else "",
    }


def gt_predictions(
    nusc: NuScenes, split: str, noise: NoiseSpec | None = None, seed: int = 0
) -> dict[str, Any]:
    """A result dict for every sample of ``split``, copied from the ground truth.

    With ``noise`` None the predictions are perfect (score 1). With a ``NoiseSpec`` each box is
    perturbed, dropped with ``miss_rate``, and false positives are added; the output depends only on
    the dataset, ``noise`` and ``seed`` (one generator, samples and annotations in a fixed order).
    """
    rng = np.random.default_rng(seed)
    results: dict[str, list[dict[str, Any]]] = {}
    for token in split_sample_tokens(nusc, split):
        boxes = gt_boxes_of_sample(nusc, token)
        if noise is not None:
            kept = [b for b in boxes if rng.random() >= noise.miss_rate]
            boxes = [_perturb(b, noise, rng) for b in kept]
            n_fp = int(rng.integers(noise.false_positives + 1))
            boxes += [_false_positive(nusc, token, rng) for _ in range(n_fp)]
        results[token] = boxes[:500]
    out = {"meta": dict(DEFAULT_META, use_camera=False), "results": results}
    validate_results(out, where=f"gt_predictions({split!r})")
    return out
