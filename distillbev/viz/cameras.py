"""3D boxes projected onto the six cameras, as a 2x3 mosaic PNG (headless, OpenCV drawing).

Ground truth is drawn in green, predictions in their class colour; the front face of every box
carries a cross so the heading is visible. Box edges that pass behind a camera are clipped at a near
plane before projection, so boxes beside or behind the car never smear across the image.
``load_sample_for_viz`` reads everything a mosaic or BEV plot needs from any nuScenes-format
dataroot with the devkit alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from distillbev.io import atomic_path
from distillbev.structures import CAMERA_NAMES, CLASS_NAMES, LIDAR_NAME, box_corners_3d

#: RGB colour of ground-truth boxes.
GT_COLOR: tuple[int, int, int] = (40, 220, 40)
#: RGB colour of predicted boxes, per class (no pure green, which is reserved for ground truth).
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "car": (255, 140, 0),
    "truck": (230, 25, 75),
    "construction_vehicle": (170, 110, 40),
    "bus": (240, 50, 230),
    "trailer": (145, 30, 180),
    "barrier": (128, 128, 128),
    "motorcycle": (0, 130, 200),
    "bicycle": (70, 240, 240),
    "pedestrian": (255, 225, 25),
    "traffic_cone": (250, 190, 212),
}
#: The 12 edges of ``box_corners_3d`` (bottom 0-3 counter-clockwise from front-left, top 4-7).
BOX_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7),
)
#: Diagonals of the front face (corners 0, 3, 7, 4), drawn as the heading cross.
FRONT_CROSS: tuple[tuple[int, int], ...] = ((0, 7), (3, 4))


def to_numpy(x: Any, dtype: type = np.float64) -> np.ndarray:
    """A numpy array from an array, list or torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def unpack_predictions(pred: Any, score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes (K, 9), labels (K,))`` of a ``(boxes, scores, labels)`` tuple, a ``Detections`` or a
    ``(boxes, labels)`` tuple (no scores: all kept), keeping scores >= ``score_threshold``."""
    if pred is None:
        return np.zeros((0, 9)), np.zeros(0, dtype=np.int64)
    if all(hasattr(pred, a) for a in ("boxes", "scores", "labels")):
        boxes, scores, labels = pred.boxes, pred.scores, pred.labels
    elif len(pred) == 2:
        boxes, labels = pred
        scores = np.ones(len(to_numpy(labels).reshape(-1)))
    else:
        boxes, scores, labels = pred
    boxes = to_numpy(boxes).reshape(-1, 9)
    keep = to_numpy(scores).reshape(-1) >= score_threshold
    return boxes[keep], to_numpy(labels, np.int64).reshape(-1)[keep]


def project_box_edges(
    boxes: np.ndarray, intrinsic: np.ndarray, cam2lidar: np.ndarray, near: float = 0.1, heading: bool = True
) -> list[np.ndarray]:
    """Pixel segments of each box's edges, clipped at depth ``near`` (m) in front of the camera.

    ``boxes`` (M, >=7) are in the LiDAR frame; returns, per box, an ``(E, 2, 2)`` array of segments
    ``[[u0, v0], [u1, v1]]`` (E = 0 when the box is entirely behind the camera). Segments may still
    lie outside the image; drawing clips them.
    """
    boxes = to_numpy(boxes)
    if boxes.size == 0:
        return []
    lidar2cam = np.linalg.inv(to_numpy(cam2lidar))
    k = to_numpy(intrinsic)
    edges = BOX_EDGES + (FRONT_CROSS if heading else ())
    out = []
    for corners in box_corners_3d(boxes.reshape(len(boxes), -1)):
        cam = corners @ lidar2cam[:3, :3].T + lidar2cam[:3, 3]  # (8, 3) camera frame, z forward
        segs = []
        for i, j in edges:
            p, q = cam[i], cam[j]
            if p[2] < near and q[2] < near:
                continue
            if p[2] < near:
                p = p + (near - p[2]) / (q[2] - p[2]) * (q - p)
            elif q[2] < near:
                q = q + (near - q[2]) / (p[2] - q[2]) * (p - q)
            uv = np.stack([p, q]) @ k.T  # (2, 3)
            segs.append(uv[:, :2] / uv[:, 2:3])
        out.append(np.array(segs).reshape(-1, 2, 2))
    return out


def draw_boxes(
    image: np.ndarray,
    intrinsic: np.ndarray,
    cam2lidar: np.ndarray,
    boxes: np.ndarray,
    colors: Sequence[tuple[int, int, int]],
    thickness: int = 2,
) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 with the projected edges of ``boxes`` drawn in ``colors``."""
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    h, w = out.shape[:2]
    limit = 1e6  # far outside any image; keeps integer conversion safe before clipping
    for segs, color in zip(project_box_edges(boxes, intrinsic, cam2lidar), colors, strict=True):
        for (u0, v0), (u1, v1) in np.clip(segs, -limit, limit):
            p0, p1 = (int(round(u0)), int(round(v0))), (int(round(u1)), int(round(v1)))
            ok, p0, p1 = cv2.clipLine((0, 0, w, h), p0, p1)
            if ok:
                cv2.line(out, p0, p1, tuple(int(c) for c in color), thickness, cv2.LINE_AA)
    return out


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Atomically write an RGB uint8 image as PNG."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, format="PNG")
    return Path(path)


def render_camera_mosaic(
    images: Sequence[np.ndarray],
    intrinsics: np.ndarray,
    cam2lidar: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    pred: Any = None,
    out_path: str | Path | None = None,
    score_threshold: float = 0.3,
    scale: float = 0.5,
    camera_names: Sequence[str] = CAMERA_NAMES,
) -> np.ndarray:
    """Draw GT (green) and predicted (class colour) boxes on 6 cameras and tile them 2x3.

    ``images``: 6 RGB ``(H, W, 3)`` uint8 in ``CAMERA_NAMES`` order; ``intrinsics`` (6, 3, 3);
    ``cam2lidar`` (6, 4, 4); boxes (M, 9) in the LiDAR frame; ``pred`` a ``(boxes, scores, labels)``
    tuple or ``Detections`` (scores below ``score_threshold`` hidden). Tiles are the first image's
    size times ``scale``. Returns the mosaic (RGB) and writes it to ``out_path`` as PNG if given.
    """
    if len(images) != 6 or len(intrinsics) != 6 or len(cam2lidar) != 6:
        raise ValueError(
            f"expected 6 cameras, got {len(images)} images, {len(intrinsics)} intrinsics, "
            f"{len(cam2lidar)} poses"
        )
    gt = to_numpy(gt_boxes).reshape(-1, 9)
    if len(to_numpy(gt_labels).reshape(-1)) != len(gt):
        raise ValueError(f"{len(gt)} GT boxes but {len(to_numpy(gt_labels).reshape(-1))} GT labels")
    pb, pl = unpack_predictions(pred, score_threshold)
    boxes = np.concatenate([gt, pb])
    colors = [GT_COLOR] * len(gt) + [CLASS_COLORS[CLASS_NAMES[int(c)]] for c in pl]
    th, tw = int(round(images[0].shape[0] * scale)), int(round(images[0].shape[1] * scale))
    tiles = []
    for cam in range(6):
        img = np.asarray(images[cam])
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(
                f"image {cam} ({camera_names[cam]}): expected (H, W, 3) uint8, got {img.shape} {img.dtype}"
            )
        thickness = max(1, int(round(2 / scale)))
        drawn = draw_boxes(img, intrinsics[cam], cam2lidar[cam], boxes, colors, thickness=thickness)
        tile = cv2.resize(drawn, (tw, th), interpolation=cv2.INTER_AREA)
        fs = float(np.clip(th / 640, 0.2, 1.0))  # label size follows the tile size
        org = (max(2, int(10 * fs)), max(8, int(34 * fs)))
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(tile, camera_names[cam], org, font, fs, (255, 255, 255), max(1, int(2 * fs)), cv2.LINE_AA)
        tiles.append(tile)
    mosaic = np.concatenate([np.concatenate(tiles[:3], 1), np.concatenate(tiles[3:], 1)], 0)  # (2H, 3W, 3)
    if out_path is not None:
        save_png(mosaic, out_path)
    return mosaic


def load_sample_for_viz(nusc: Any, sample_token: str) -> dict[str, Any]:
    """Everything the mosaic and BEV plot need for one sample, read with the devkit only.

    Returns ``images`` (6 RGB uint8 arrays, ``CAMERA_NAMES`` order), ``image_paths``, ``intrinsics``
    (6, 3, 3), ``cam2lidar`` (6, 4, 4; each camera's own ego pose), ``points`` (P, 4) x, y, z,
    intensity, ``gt_boxes`` (M, 9) in the key LIDAR_TOP frame (velocity from ``box_velocity`` rotated
    into that frame, NaN -> 0), ``gt_labels`` (M,), ``ann_tokens``, ``num_lidar_pts`` and
    ``lidar2global`` (4, 4). Only annotations of the 10 detection classes are kept.
    """
    from nuscenes.eval.detection.utils import category_to_detection_name
    from nuscenes.utils.geometry_utils import transform_matrix
    from pyquaternion import Quaternion

    from distillbev.data.nuscenes import read_image, read_points

    def pose_of(sd: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        ep = nusc.get("ego_pose", sd["ego_pose_token"])
        sensor2ego = transform_matrix(cs["translation"], Quaternion(cs["rotation"]))
        return transform_matrix(ep["translation"], Quaternion(ep["rotation"])) @ sensor2ego, np.array(
            cs["camera_intrinsic"] or np.eye(3)
        )

    sample = nusc.get("sample", sample_token)
    lidar_sd = nusc.get("sample_data", sample["data"][LIDAR_NAME])
    lidar2global, _ = pose_of(lidar_sd)
    global2lidar = np.linalg.inv(lidar2global)
    images, paths, ks, c2l = [], [], [], []
    for cam in CAMERA_NAMES:
        if cam not in sample["data"]:
            raise KeyError(f"sample {sample_token} has no {cam} sample_data")
        sd = nusc.get("sample_data", sample["data"][cam])
        cam2global, k = pose_of(sd)
        path = os.path.join(nusc.dataroot, sd["filename"])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"sample {sample_token}: {cam} image {path} does not exist")
        images.append(read_image(Path(path)))
        paths.append(path)
        ks.append(k)
        c2l.append(global2lidar @ cam2global)
    lidar_path = os.path.join(nusc.dataroot, lidar_sd["filename"])
    points = read_points(Path(lidar_path))[:, :4]  # (P, 4)

    _, dev_boxes, _ = nusc.get_sample_data(lidar_sd["token"])
    rows, labels, tokens, npts = [], [], [], []
    for b in dev_boxes:
        name = category_to_detection_name(b.name)
        if name is None:
            continue
        r = b.orientation.rotation_matrix
        v_global = np.nan_to_num(nusc.box_velocity(b.token), nan=0.0)
        v = global2lidar[:3, :3] @ v_global
        w, l, h = b.wlh
        rows.append([*b.center, l, w, h, np.arctan2(r[1, 0], r[0, 0]), v[0], v[1]])
        labels.append(CLASS_NAMES.index(name))
        tokens.append(b.token)
        npts.append(nusc.get("sample_annotation", b.token)["num_lidar_pts"])
    return {
        "sample_token": sample_token,
        "images": images,
        "image_paths": paths,
        "intrinsics": np.stack(ks),
        "cam2lidar": np.stack(c2l),
        "points": points,
        "gt_boxes": np.array(rows, dtype=np.float64).reshape(-1, 9),
        "gt_labels": np.array(labels, dtype=np.int64),
        "ann_tokens": tokens,
        "num_lidar_pts": np.array(npts, dtype=np.int64),
        "lidar2global": lidar2global,
    }
