"""Image and BEV augmentation that keep cameras, LiDAR and boxes consistent (architectures §10).

Image augmentation is an affine map of pixel coordinates ``u' = A u + b`` (resize, crop, flip,
rotate) stored as ``post_rot`` (A in the top-left 2x2) and ``post_tran`` (b); the LSS geometry inverts
it. BEV augmentation is one 4x4 matrix ``M`` (flips @ scale * rotation) left-multiplied onto points,
boxes and every camera->LiDAR transform, so the student's BEV and the teacher's points stay aligned.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from distillbev.data.config import BEVAugConfig, ImageAugConfig


def image_affine(
    src_hw: tuple[int, int], cfg: ImageAugConfig, rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw (``rng`` given) or fix (test) the image augmentation: returns A (2, 2) and b (2,)."""
    h, w = src_hw
    fh, fw = cfg.final_size
    base = fw / w
    if rng is not None:
        r = base * (1 + rng.uniform(*cfg.resize_jitter))
    else:
        r = base * (1 + cfg.test_resize_offset)
    rh, rw = int(h * r), int(w * r)
    crop_y = max(rh - fh, 0)  # keep the bottom rows (drop the sky)
    crop_x = int(rng.uniform(0, max(rw - fw, 0))) if rng is not None else max(rw - fw, 0) // 2
    A = np.eye(2) * r
    b = -np.array([crop_x, crop_y], dtype=np.float64)
    if rng is not None and cfg.flip and rng.random() < 0.5:
        A = np.array([[-1.0, 0.0], [0.0, 1.0]]) @ A
        b = np.array([-b[0] + fw, b[1]])
    if rng is not None and cfg.rotate_deg > 0:
        a = math.radians(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
        rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        c = np.array([fw / 2, fh / 2])
        A, b = rot @ A, rot @ b + c - rot @ c
    return A, b


def warp_image(img: np.ndarray, A: np.ndarray, b: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Apply the pixel map ``u' = A u + b`` (pixel centres at half-integers) in one resampling."""
    m = np.concatenate([A, (b + A @ np.array([0.5, 0.5]) - 0.5)[:, None]], 1)
    return cv2.warpAffine(img, m, (out_hw[1], out_hw[0]), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def post_matrices(A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``post_rot`` (3, 3) and ``post_tran`` (3,) in the BEVDet layout."""
    post_rot = np.eye(3)
    post_rot[:2, :2] = A
    post_tran = np.zeros(3)
    post_tran[:2] = b
    return post_rot, post_tran


def bev_matrix(cfg: BEVAugConfig, rng: np.random.Generator) -> np.ndarray:
    """Draw the BEV augmentation 4x4 ``M`` = flips @ (scale * rotation about z)."""
    theta = rng.uniform(-cfg.rotate, cfg.rotate)
    s = rng.uniform(*cfg.scale)
    c, si = math.cos(theta), math.sin(theta)
    m = np.eye(4)
    m[:3, :3] = s * np.array([[c, -si, 0.0], [si, c, 0.0], [0.0, 0.0, 1.0]])
    if cfg.flip_y and rng.random() < 0.5:  # y -> -y
        m = np.diag([1.0, -1.0, 1.0, 1.0]) @ m
    if cfg.flip_x and rng.random() < 0.5:  # x -> -x
        m = np.diag([-1.0, 1.0, 1.0, 1.0]) @ m
    return m


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 4x4 (similarity) transform to the xyz columns of points (N, >=3)."""
    out = points.copy()
    out[:, :3] = points[:, :3] @ m[:3, :3].T + m[:3, 3]
    return out


def transform_boxes(boxes: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 4x4 similarity ``m`` (rotation about z, uniform scale, axis flips) to boxes (M, 9)."""
    out = boxes.copy()
    if len(boxes) == 0:
        return out
    lin = m[:3, :3]
    scale = abs(np.linalg.det(lin)) ** (1 / 3)
    out[:, :3] = boxes[:, :3] @ lin.T + m[:3, 3]
    out[:, 3:6] = boxes[:, 3:6] * scale
    heading = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6])], 1) @ lin[:2, :2].T
    out[:, 6] = np.arctan2(heading[:, 1], heading[:, 0])
    out[:, 7:9] = boxes[:, 7:9] @ lin[:2, :2].T
    return out
