"""Image and BEV augmentation that keep cameras, LiDAR and boxes consistent.

Image augmentation is an affine map of continuous pixel coordinates ``u' = A u + b`` (resize, crop,
flip, rotate; pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``) stored as ``post_rot`` (A in the top-left
2x2) and ``post_tran`` (b); the LSS geometry inverts it and the depth targets apply it. BEV augmentation
is one 4x4 matrix ``M = flips @ (s R_theta)`` left-multiplied onto points, boxes and every
camera->LiDAR transform, so the student's BEV and the teacher's points stay aligned cell for cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from distillbev.data.config import BEVAugConfig, ImageAugConfig
from distillbev.data.geometry import transform_boxes, transform_points

__all__ = [
    "ImageAug",
    "bev_matrix",
    "image_affine",
    "post_matrices",
    "transform_boxes",
    "transform_points",
    "warp_image",
    "warp_labels",
]


@dataclass(frozen=True)
class ImageAug:
    """One camera's image augmentation draw: the pixel map ``u' = A u + b`` and the sizes involved."""

    A: np.ndarray  # (2, 2)
    b: np.ndarray  # (2,)
    resize: float  # r
    resized_hw: tuple[int, int]  # (floor(H r), floor(W r)) before the crop
    out_hw: tuple[int, int]  # network input (H, W)


def image_affine(src_hw: tuple[int, int], cfg: ImageAugConfig, rng: np.random.Generator | None) -> ImageAug:
    """Draw (``rng`` given: train) or fix (``None``: test) one camera's augmentation, BEVDet style:
    r = W_out / W_src + U(jitter) (test: + offset); crop keeps the bottom rows, horizontal offset
    U(0, W_r - W_out) (test: centred); flip p = 0.5; rotation U(-a, a) degrees about the crop centre.
    ``A = Rot Flip (r I)``, ``b = Rot (Flip (-crop) + flip_b) + c - Rot c``."""
    h, w = src_hw
    fh, fw = cfg.final_size
    r = fw / w + (rng.uniform(*cfg.resize_jitter) if rng is not None else cfg.test_resize_offset)
    rh, rw = int(h * r), int(w * r)
    if rh < 1 or rw < 1:
        raise ValueError(f"image resize {r:.4f} of a {h}x{w} image leaves nothing; check image.resize_jitter")
    crop_y = max(rh - fh, 0)  # keep the bottom rows (drop the sky)
    crop_x = int(rng.uniform(0, max(rw - fw, 0))) if rng is not None else max(rw - fw, 0) // 2
    A = np.eye(2) * r
    b = -np.array([crop_x, crop_y], dtype=np.float64)
    if rng is not None and cfg.flip and rng.random() < 0.5:
        flip = np.array([[-1.0, 0.0], [0.0, 1.0]])
        A, b = flip @ A, flip @ b + np.array([fw, 0.0])
    if rng is not None and cfg.rotate_deg > 0:
        a = math.radians(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
        rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        c = np.array([fw / 2, fh / 2])
        A, b = rot @ A, rot @ b + c - rot @ c
    return ImageAug(A, b, r, (rh, rw), (fh, fw))


def _warp(
    img: np.ndarray, A: np.ndarray, b: np.ndarray, out_hw: tuple[int, int], flags: int = cv2.INTER_LINEAR
) -> np.ndarray:
    # cv2 places pixel centres at integers: u_cv = u - 0.5, so u'_cv = A u_cv + (b + A (0.5, 0.5) - 0.5).
    m = np.concatenate([A, (b + A @ np.array([0.5, 0.5]) - 0.5)[:, None]], 1)
    return cv2.warpAffine(img, m, (out_hw[1], out_hw[0]), flags=flags, borderValue=0)


def warp_image(img: np.ndarray, aug: ImageAug) -> np.ndarray:
    """The augmented image ``(H_out, W_out, C)``: pixel ``u'`` shows source position ``A^-1 (u' - b)``,
    bilinear, black outside. A downscale (r < 1) is anti-aliased by a Gaussian pre-blur of
    sigma = (1/r - 1) / 2 source pixels; a symmetric blur moves nothing, so ``A, b`` stay exact."""
    if aug.resize < 1.0:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=(1.0 / aug.resize - 1.0) / 2)
    return _warp(img, aug.A, aug.b, aug.out_hw)


def warp_labels(labels: np.ndarray, aug: ImageAug) -> np.ndarray:
    """A per-pixel label map ``(H, W)`` (uint8) through the same map as ``warp_image``, nearest neighbour
    (no blur, no mixing of labels), 0 outside the source image."""
    return _warp(labels, aug.A, aug.b, aug.out_hw, cv2.INTER_NEAREST)


def post_matrices(aug: ImageAug) -> tuple[np.ndarray, np.ndarray]:
    """``post_rot`` (3, 3) and ``post_tran`` (3,) in the BEVDet layout."""
    post_rot = np.eye(3)
    post_rot[:2, :2] = aug.A
    post_tran = np.zeros(3)
    post_tran[:2] = aug.b
    return post_rot, post_tran


def bev_matrix(cfg: BEVAugConfig, rng: np.random.Generator) -> np.ndarray:
    """Draw the BEV augmentation ``M`` (4, 4) = flip_x @ flip_y @ (s R_theta): rotation U(-rotate, rotate)
    about z, scale U(scale), then a y-flip (y -> -y) and an x-flip (x -> -x), each with p = 0.5; with
    ``flip_together`` one coin decides both (a half turn, handedness kept)."""
    theta = rng.uniform(-cfg.rotate, cfg.rotate)
    s = rng.uniform(*cfg.scale)
    c, si = math.cos(theta), math.sin(theta)
    m = np.eye(4)
    m[:3, :3] = s * np.array([[c, -si, 0.0], [si, c, 0.0], [0.0, 0.0, 1.0]])
    coin_y = rng.random() < 0.5
    coin_x = coin_y if cfg.flip_together else rng.random() < 0.5
    if coin_y and cfg.flip_y:
        m = np.diag([1.0, -1.0, 1.0, 1.0]) @ m
    if coin_x and cfg.flip_x:
        m = np.diag([-1.0, 1.0, 1.0, 1.0]) @ m
    return m
