"""2D instance masks on disk: ``<folder>/<CAM>/<image stem>.png`` (ids) + ``.json`` (their classes).

The synthetic world writes its oracle masks as ``<dataroot>/masks``; a user's 2D segmenter can write
the same format. MVP paints points with them (``distillbev.data.virtual_points``) and image pretraining
reads them as per-pixel class targets (``class_map``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from distillbev.structures import CLASS_NAMES

#: Sub-folder of a dataroot that holds the synthetic world's oracle masks.
MASKS_DIR = "masks"


@dataclass
class CameraMasks:
    """Instance masks of one image at its native resolution."""

    ids: np.ndarray  # (H, W) int, 0 = background, k >= 1 = instance k
    labels: np.ndarray  # (K+1,) int64 class of id k (index into CLASS_NAMES); -1 = ignored (and id 0)
    scores: np.ndarray  # (K+1,) float32 detection score of id k


def read_instance_masks(png_path: str | Path, json_path: str | Path) -> CameraMasks:
    """Read one mask PNG (uint8/uint16, 0 = background) and its JSON instance list.

    The JSON is ``{"instances": [{"id": k, "detection_name": ..., "score"?: ...}, ...]}``; an instance
    whose ``detection_name`` is not a detection class (e.g. empty) is ignored; ``score`` defaults to 1.
    """
    ids = cv2.imread(str(png_path), cv2.IMREAD_UNCHANGED)
    if ids is None:
        raise FileNotFoundError(f"cannot read instance mask {png_path}")
    if ids.ndim != 2 or ids.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"{png_path}: expected a single-channel uint8/uint16 PNG, got {ids.dtype} {ids.shape}"
        )
    try:
        entries = json.loads(Path(json_path).read_text())["instances"]
    except FileNotFoundError:
        raise FileNotFoundError(f"missing instance list {json_path}") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{json_path}: not a mask instance list ({e})") from None
    ids = ids.astype(np.int32)
    k_max = max([int(ids.max())] + [int(e["id"]) for e in entries])
    labels = np.full(k_max + 1, -1, dtype=np.int64)
    scores = np.ones(k_max + 1, dtype=np.float32)
    known = np.zeros(k_max + 1, dtype=bool)
    for e in entries:
        k = int(e["id"])
        if k < 1:
            raise ValueError(f"{json_path}: instance id {k} must be >= 1 (0 is the background)")
        known[k] = True
        name = e.get("detection_name") or ""
        labels[k] = CLASS_NAMES.index(name) if name in CLASS_NAMES else -1
        scores[k] = float(e.get("score", 1.0))
    present = np.unique(ids)
    unknown = present[(present > 0) & ~known[present]]
    if len(unknown):
        raise ValueError(f"{png_path}: mask ids {unknown.tolist()} are not listed in {json_path}")
    return CameraMasks(ids, labels, scores)


def class_map(masks: CameraMasks) -> np.ndarray:
    """Per-pixel class ``(H, W)`` uint8: 0 = background or an ignored instance, ``k + 1`` = class ``k``
    of ``CLASS_NAMES``."""
    lut = (masks.labels + 1).clip(min=0).astype(np.uint8)  # ignored instances (-1) -> 0
    return lut[masks.ids]


def mask_paths(folder: str | Path, camera: str, image_file: str) -> tuple[Path, Path]:
    """The PNG and JSON of an image's masks under ``folder``."""
    base = Path(folder) / camera / Path(image_file).stem
    return base.with_suffix(".png"), base.with_suffix(".json")
