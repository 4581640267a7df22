"""Detections in the key LiDAR frame -> the nuScenes detection result JSON, and back from disk.

The result file (nuScenes submission format) is ``{"meta": {...}, "results": {sample_token: [box, ...]}}``
with every sample token of the evaluated split present (an empty list where nothing was detected).
Each box is in the **global** frame: ``translation`` (box centre), ``size`` = (w, l, h), ``rotation``
(w, x, y, z quaternion), ``velocity`` (vx, vy), plus ``detection_name`` (one of the 10 classes),
``detection_score`` (> 0) and ``attribute_name`` (one of the 8 nuScenes attributes or ``''``).

The devkit's own checks are terse asserts; everything here is checked first, with errors that name
the file, the sample token, the box index and the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distillbev.io import write_json
from distillbev.structures import ATTRIBUTE_NAMES, CLASS_NAMES, default_attribute

#: The devkit refuses samples with more boxes than this (``max_boxes_per_sample``).
MAX_BOXES_PER_SAMPLE = 500
#: Scores are floored here: a zero score breaks the devkit's TP-error computation.
MIN_SCORE = 1e-6
#: ``meta`` written when the caller gives none (the devkit requires the key, not its content).
DEFAULT_META: dict[str, bool] = {
    "use_camera": True,
    "use_lidar": False,
    "use_radar": False,
    "use_map": False,
    "use_external": False,
}
_BOX_FIELDS = (
    "sample_token",
    "translation",
    "size",
    "rotation",
    "velocity",
    "detection_name",
    "detection_score",
    "attribute_name",
)
_VECTOR_LENGTHS = {"translation": 3, "size": 3, "rotation": 4, "velocity": 2}


class ResultsError(ValueError):
    """A result dict or file that the nuScenes evaluation would reject (or silently mis-score)."""


def _to_numpy(x: Any, dtype: type = np.float64) -> np.ndarray:
    """A numpy copy of an array, list or torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def yaw_quaternion(yaw: np.ndarray) -> np.ndarray:
    """Quaternions ``(N, 4)`` (w, x, y, z) of rotations by ``yaw`` (N,) about +z."""
    yaw = np.asarray(yaw, dtype=np.float64)
    return np.stack([np.cos(yaw / 2), np.zeros_like(yaw), np.zeros_like(yaw), np.sin(yaw / 2)], -1)


def matrix_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(N, 4)`` (w, x, y, z, with w >= 0) of rotation matrices ``(N, 3, 3)``.

    Shepperd's method: pick the largest of the four diagonal combinations for numerical stability,
    so float32 poses that are not exactly orthonormal still give a clean result.
    """
    rot = np.asarray(rot, dtype=np.float64).reshape(-1, 3, 3)
    m = rot
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = np.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1)  # (N, 4)
    pick = np.argmax(cand, -1)
    q = np.zeros((len(m), 4))
    for i in range(len(m)):
        r = m[i]
        match pick[i]:
            case 0:
                s = 2.0 * math.sqrt(max(1.0 + tr[i], 1e-12))
                q[i] = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
            case 1:
                s = 2.0 * math.sqrt(max(1.0 + r[0, 0] - r[1, 1] - r[2, 2], 1e-12))
                q[i] = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
            case 2:
                s = 2.0 * math.sqrt(max(1.0 + r[1, 1] - r[0, 0] - r[2, 2], 1e-12))
                q[i] = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
            case _:
                s = 2.0 * math.sqrt(max(1.0 + r[2, 2] - r[0, 0] - r[1, 1], 1e-12))
                q[i] = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return q * np.where(q[:, :1] < 0, -1.0, 1.0)


def boxes_to_global(boxes: np.ndarray, lidar2global: np.ndarray) -> dict[str, np.ndarray]:
    """Convert ``(K, 9)`` LiDAR-frame boxes to nuScenes global-frame fields.

    Returns arrays ``translation`` (K, 3), ``size`` (K, 3) as (w, l, h), ``rotation`` (K, 4) as
    (w, x, y, z) and ``velocity`` (K, 2); velocities are rotated (not translated) into global.
    """
    boxes = _to_numpy(boxes).reshape(-1, 9)
    t = _to_numpy(lidar2global).reshape(4, 4)
    rot, trans = t[:3, :3], t[:3, 3]
    centre = boxes[:, :3] @ rot.T + trans  # (K, 3)
    cy, sy = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    rz = np.zeros((len(boxes), 3, 3))
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = cy, -sy, sy, cy, 1.0
    quat = matrix_to_quaternion(rot[None] @ rz)  # (K, 4)
    vel3 = np.concatenate([boxes[:, 7:9], np.zeros((len(boxes), 1))], 1)  # (K, 3), vz = 0
    velocity = (vel3 @ rot.T)[:, :2]
    size = boxes[:, [4, 3, 5]]  # (w, l, h)
    return {"translation": centre, "size": size, "rotation": quat, "velocity": velocity}


def results_to_detections(
    entries: Sequence[Mapping[str, Any]], lidar2global: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of the conversion: one sample's result boxes -> ``(boxes (K, 9), scores (K,), labels (K,))``
    in the LiDAR frame that ``lidar2global`` maps to global (yaw from the rotated heading axis)."""
    g2l = np.linalg.inv(_to_numpy(lidar2global).reshape(4, 4))
    rows, scores, labels = [], [], []
    for e in entries:
        w, x, y, z = (float(v) for v in e["rotation"])
        heading = np.array([1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)])  # R[:, 0]
        heading = g2l[:3, :3] @ heading
        centre = g2l[:3, :3] @ np.asarray(e["translation"], dtype=np.float64) + g2l[:3, 3]
        vel = g2l[:3, :3] @ np.array([*e["velocity"], 0.0])
        sw, sl, sh = e["size"]
        rows.append([*centre, sl, sw, sh, math.atan2(heading[1], heading[0]), vel[0], vel[1]])
        scores.append(float(e["detection_score"]))
        labels.append(CLASS_NAMES.index(e["detection_name"]))
    return np.array(rows, dtype=np.float64).reshape(-1, 9), np.array(scores), np.array(labels, dtype=np.int64)


def _unpack(dets: Any) -> tuple[Any, Any, Any]:
    """``(boxes, scores, labels)`` from a tuple or a ``Detections``-like object."""
    if all(hasattr(dets, a) for a in ("boxes", "scores", "labels")):
        return dets.boxes, dets.scores, dets.labels
    boxes, scores, labels = dets
    return boxes, scores, labels


def _label_names(labels: Any, token: str) -> list[str]:
    """Class names from label indices or names, with an error naming the sample and the bad label."""
    if isinstance(labels, Sequence) and not isinstance(labels, str) and labels and isinstance(labels[0], str):
        names = list(labels)
    else:
        idx = _to_numpy(labels, np.float64).reshape(-1)
        names = []
        for i, v in enumerate(idx):
            if not float(v).is_integer() or not 0 <= int(v) < len(CLASS_NAMES):
                raise ResultsError(
                    f"sample {token}: box {i}: unknown class index {int(v) if float(v).is_integer() else v} "
                    "in labels; "
                    f"expected 0..{len(CLASS_NAMES) - 1} ({', '.join(CLASS_NAMES)})"
                )
            names.append(CLASS_NAMES[int(v)])
    for i, n in enumerate(names):
        if n not in CLASS_NAMES:
            raise ResultsError(
                f"sample {token}: box {i}: unknown detection_name {n!r}; "
                f"expected one of {', '.join(CLASS_NAMES)}"
            )
    return names


def detections_to_results(
    per_sample: Mapping[str, Any],
    lidar2global: Mapping[str, Any],
    all_tokens: Sequence[str],
    meta: Mapping[str, Any] | None = None,
    attributes: Mapping[str, Sequence[str]] | None = None,
    max_boxes: int = MAX_BOXES_PER_SAMPLE,
) -> dict[str, Any]:
    """Build the nuScenes result dict from per-sample detections in the key LiDAR frame.

    ``per_sample[token]`` is ``(boxes (K, 9), scores (K,), labels (K,))`` (arrays or tensors; labels
    are class indices or names) or a ``Detections``; boxes must be in the **un-augmented** key
    LIDAR_TOP frame that ``lidar2global[token]`` (4x4) maps to global. Every token of ``all_tokens``
    (the split) appears in the output, with ``[]`` where ``per_sample`` has nothing; a token of
    ``per_sample`` outside the split is an error. ``attributes[token]`` optionally gives one attribute
    name per box; otherwise ``structures.default_attribute`` picks it from class and speed. NaN
    velocities become 0; NaN geometry or scores, and sizes <= 0, are errors. Scores are floored at
    ``MIN_SCORE``; only the ``max_boxes`` highest-scoring boxes of a sample are kept.
    """
    split = list(all_tokens)
    extra = sorted(set(per_sample) - set(split))
    if extra:
        raise ResultsError(
            f"{len(extra)} sample token(s) with detections are not in the split, e.g. {extra[0]}"
        )
    results: dict[str, list[dict[str, Any]]] = {}
    for token in split:
        if token not in per_sample:
            results[token] = []
            continue
        boxes, scores, labels = _unpack(per_sample[token])
        boxes = _to_numpy(boxes)
        if boxes.size == 0:
            results[token] = []
            continue
        if boxes.ndim != 2 or boxes.shape[1] < 9:
            raise ResultsError(f"sample {token}: boxes must be (K, 9), got shape {tuple(boxes.shape)}")
        boxes = boxes[:, :9].copy()
        scores = _to_numpy(scores).reshape(-1)
        names = _label_names(labels, token)
        if not len(boxes) == len(scores) == len(names):
            raise ResultsError(
                f"sample {token}: {len(boxes)} boxes, {len(scores)} scores and {len(names)} labels differ"
            )
        attrs = None if attributes is None or token not in attributes else list(attributes[token])
        if attrs is not None and len(attrs) != len(boxes):
            raise ResultsError(f"sample {token}: {len(attrs)} attributes for {len(boxes)} boxes")
        bad = ~np.isfinite(boxes[:, :7])
        if bad.any():
            i, j = np.argwhere(bad)[0]
            field = ("x", "y", "z", "l", "w", "h", "yaw")[j]
            raise ResultsError(f"sample {token}: box {i}: field {field} is {boxes[i, j]} (must be finite)")
        if (boxes[:, 3:6] <= 0).any():
            i, j = np.argwhere(boxes[:, 3:6] <= 0)[0]
            raise ResultsError(
                f"sample {token}: box {i}: size field {'lwh'[j]} = {boxes[i, 3 + j]} (sizes must be > 0)"
            )
        if not np.isfinite(scores).all() or (scores < 0).any():
            i = int(np.argwhere(~np.isfinite(scores) | (scores < 0))[0, 0])
            raise ResultsError(
                f"sample {token}: box {i}: detection_score {scores[i]} (must be finite and >= 0)"
            )
        boxes[:, 7:9] = np.nan_to_num(boxes[:, 7:9], nan=0.0, posinf=0.0, neginf=0.0)
        if token not in lidar2global:
            raise ResultsError(f"sample {token}: no lidar2global pose given")
        order = np.argsort(-scores, kind="stable")[:max_boxes]
        g = boxes_to_global(boxes[order], lidar2global[token])
        entries = []
        for k, i in enumerate(order):
            if attrs is not None:
                attr = attrs[i]
                if attr not in ATTRIBUTE_NAMES and attr != "":
                    raise ResultsError(f"sample {token}: box {i}: unknown attribute_name {attr!r}")
            else:
                attr = default_attribute(CLASS_NAMES.index(names[i]), float(np.hypot(*boxes[i, 7:9])))
            entries.append(
                {
                    "sample_token": token,
                    "translation": g["translation"][k].tolist(),
                    "size": g["size"][k].tolist(),
                    "rotation": g["rotation"][k].tolist(),
                    "velocity": g["velocity"][k].tolist(),
                    "detection_name": names[i],
                    "detection_score": max(float(scores[i]), MIN_SCORE),
                    "attribute_name": attr,
                }
            )
        results[token] = entries
    return {"meta": dict(DEFAULT_META if meta is None else meta), "results": results}


def _check_box(box: Any, token: str, i: int, where: str) -> None:
    """Validate one result box; errors name ``where`` (file or 'results'), the token, index and field."""
    at = f"{where}: sample {token}: box {i}"
    if not isinstance(box, dict):
        raise ResultsError(f"{at}: expected an object, got {type(box).__name__}")
    missing = [f for f in _BOX_FIELDS if f not in box]
    if missing:
        raise ResultsError(f"{at}: missing field(s) {', '.join(missing)}")
    if box["sample_token"] != token:
        raise ResultsError(f"{at}: sample_token {box['sample_token']!r} differs from its key")
    for field, n in _VECTOR_LENGTHS.items():
        v = box[field]
        ok = isinstance(v, list | tuple) and len(v) == n and all(isinstance(x, int | float) for x in v)
        if not ok or not all(math.isfinite(x) for x in v):
            raise ResultsError(f"{at}: field {field} must be {n} finite numbers, got {v!r}")
    if min(box["size"]) <= 0:
        raise ResultsError(f"{at}: field size {box['size']} (sizes must be > 0)")
    if box["detection_name"] not in CLASS_NAMES:
        raise ResultsError(
            f"{at}: unknown detection_name {box['detection_name']!r}; "
            f"expected one of {', '.join(CLASS_NAMES)}"
        )
    if box["attribute_name"] not in ATTRIBUTE_NAMES and box["attribute_name"] != "":
        raise ResultsError(f"{at}: unknown attribute_name {box['attribute_name']!r}")
    s = box["detection_score"]
    if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s) or s <= 0:
        raise ResultsError(f"{at}: field detection_score must be a finite number > 0, got {s!r}")


def validate_results(results: Any, where: str = "results", tokens: Sequence[str] | None = None) -> None:
    """Check a result dict against everything the devkit requires (keys, sample tokens,
    box fields, scores > 0).

    ``tokens``, if given, is the split: each must be present. Errors name ``where``, the sample token,
    the box index and the field.
    """
    if not isinstance(results, dict):
        raise ResultsError(f"{where}: expected a JSON object with 'meta' and 'results'")
    for key in ("meta", "results"):
        if key not in results:
            raise ResultsError(f"{where}: missing top-level key {key!r}")
    if not isinstance(results["meta"], dict):
        raise ResultsError(f"{where}: 'meta' must be an object")
    per_sample = results["results"]
    if not isinstance(per_sample, dict):
        raise ResultsError(f"{where}: 'results' must be an object mapping sample tokens to lists")
    for token, boxes in per_sample.items():
        if not isinstance(boxes, list):
            raise ResultsError(f"{where}: sample {token}: expected a list of boxes")
        if len(boxes) > MAX_BOXES_PER_SAMPLE:
            raise ResultsError(
                f"{where}: sample {token}: {len(boxes)} boxes (at most {MAX_BOXES_PER_SAMPLE})"
            )
        for i, box in enumerate(boxes):
            _check_box(box, token, i, where)
    if tokens is not None:
        missing = [t for t in tokens if t not in per_sample]
        if missing:
            raise ResultsError(f"{where}: {len(missing)} split sample token(s) missing, e.g. {missing[0]}")


def write_results(results: dict[str, Any], path: str | Path) -> Path:
    """Validate and atomically write a result dict as JSON; returns the path."""
    path = Path(path)
    validate_results(results, where=str(path))
    write_json(path, results, indent=None)
    return path


def load_results(path: str | Path, tokens: Sequence[str] | None = None) -> dict[str, Any]:
    """Read and validate a result JSON; errors name the file and the offending entry."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"result file {path} does not exist")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not valid JSON ({e})") from None
    validate_results(results, where=str(path), tokens=tokens)
    return results
