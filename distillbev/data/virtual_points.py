"""MVP's input points: LiDAR points painted by 2D instance masks plus "virtual points" (Yin et al. 2021;
docs/architectures.md, MVP teacher), adapted to the synthetic world's instance masks.

This is data preparation: ``NuScenesDataset`` appends these points to each sample when
``data.reader.virtual_points`` is on (MVP runs); the network is CenterPoint with 17 point features
(``distillbev.models.mvp``).

For every 2D instance mask, up to ``num_samples_per_mask`` pixels are sampled uniformly inside it; each
takes the depth of the nearest (2D pixel distance) projected LiDAR point that falls inside the same
mask and is un-projected into the LiDAR frame (a virtual point). Real points inside a mask are
"painted" with the instance's class one-hot and score.

Point layout (``MVP_POINT_FEATURES`` = 17 columns):

====  =====================================================================================
0-2   x, y, z (m, key LiDAR frame)
3     intensity (``VIRTUAL_INTENSITY`` = -1 for virtual points, as MVP's released loader does)
4-13  one-hot class of the instance, in ``CLASS_NAMES`` order (all ones for ordinary points)
14    instance score (1 for ordinary points)
15    is-virtual flag: 1 virtual, 0 otherwise (MVP's raw/painted/virtual flag, already binarised)
16    time lag (s); 0 for virtual points (they come from the key-frame images)
====  =====================================================================================

Masks come from a ``MaskSource``: the synthetic world's oracle masks with a configurable
``MaskDegradation`` (so the "segmenter" is imperfect), or masks of a user's own 2D segmenter saved in
the same format (``FolderMaskSource``). Masks are at the native image resolution and go with the
native (un-augmented) intrinsics and the un-augmented camera->LiDAR transforms; the points must be in
the un-augmented key LiDAR frame (generate before BEV augmentation).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np

from distillbev.data.masks import CameraMasks, read_instance_masks
from distillbev.structures import CLASS_NAMES

MVP_POINT_FEATURES = 17
NUM_CLASSES = len(CLASS_NAMES)
COL_INTENSITY = 3
COL_ONE_HOT = slice(4, 4 + NUM_CLASSES)
COL_SCORE = 4 + NUM_CLASSES
COL_VIRTUAL = COL_SCORE + 1
COL_TIME_LAG = COL_VIRTUAL + 1
VIRTUAL_INTENSITY = -1.0


@dataclass(frozen=True)
class MaskDegradation:
    """How the oracle masks are corrupted to mimic a real 2D instance segmenter."""

    miss_rate: float = 0.1  # probability that a whole instance is missed
    dilate_px: int = 2  # grow (> 0) or erode (< 0) every mask by this many native pixels
    class_confusion: float = 0.05  # probability that an instance takes a uniformly random other class
    score_range: tuple[float, ...] = (0.5, 1.0)  # (low, high): score drawn uniformly per instance
    seed: int = 0  # the degradation is a fixed function of (seed, camera, image file), like an offline run

    def __post_init__(self) -> None:
        if not (0.0 <= self.miss_rate <= 1.0 and 0.0 <= self.class_confusion <= 1.0):
            raise ValueError(
                f"miss_rate ({self.miss_rate}) and class_confusion ({self.class_confusion}) must be in [0, 1]"
            )
        if len(self.score_range) != 2 or not 0.0 <= self.score_range[0] <= self.score_range[1] <= 1.0:
            raise ValueError(f"score_range {self.score_range} must satisfy 0 <= low <= high <= 1")


#: No corruption at all: the oracle masks with score 1.
PERFECT_MASKS = MaskDegradation(miss_rate=0.0, dilate_px=0, class_confusion=0.0, score_range=(1.0, 1.0))


@dataclass(frozen=True)
class MVPConfig:
    """Virtual-point generation (the network itself is ``CenterPointConfig`` with 17 point features)."""

    mask_source: Literal["synthetic", "folder"] = "synthetic"  # oracle masks of the world, or a folder
    mask_folder: str = ""  # "folder": <mask_folder>/<CAM>/<image stem>.png + .json (a user's 2D segmenter)
    degradation: MaskDegradation = field(default_factory=MaskDegradation)  # applied to "synthetic" masks only
    num_samples_per_mask: int = 50  # virtual points per 2D instance (fewer if the mask is smaller)
    max_time_lag: float = 0.0  # only points with a lag <= this (s) are painted / give depth; 0 = key frame
    duplicate_painted: bool = True  # MVP: append painted copies of masked points; False: paint in place
    min_depth: float = 0.5  # points closer to a camera than this (m, along its axis) are not projected
    seed: int = 0  # pixel sampling is a fixed function of (seed, sample)

    def __post_init__(self) -> None:
        if self.num_samples_per_mask < 1:
            raise ValueError(f"num_samples_per_mask must be >= 1, got {self.num_samples_per_mask}")


def stable_rng(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the string ``key`` (not on Python's hash seed)."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest])


# ----------------------------------------------------------------------------------------- mask files


def _instance_pixels(ids: np.ndarray) -> dict[int, np.ndarray]:
    """Flat pixel indices of every non-zero id (ascending ids), with one stable sort of the masked pixels."""
    flat = ids.reshape(-1)
    nz = np.flatnonzero(flat)
    keys = flat[nz]
    if len(keys) and keys.max() < 2**16:
        keys = keys.astype(np.uint16)  # numpy's stable sort is a radix sort for 16-bit keys
    order = np.argsort(keys, kind="stable")
    nz, keys = nz[order], keys[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(keys)] if len(starts) else starts
    return {int(keys[s]): nz[s:e] for s, e in zip(starts, ends, strict=True)}


def degrade_masks(masks: CameraMasks, degradation: MaskDegradation, rng: np.random.Generator) -> CameraMasks:
    """A corrupted copy: missed instances, grown/shrunk masks, confused classes, random scores."""
    ids = masks.ids.copy()
    flat = ids.reshape(-1)  # a view: edits land in ids
    labels = masks.labels.copy()
    scores = masks.scores.copy()
    h, w = ids.shape
    r = abs(degradation.dilate_px)
    kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    lo, hi = degradation.score_range
    # Pixel lists stay valid below: an instance only loses its own pixels and grows into background.
    for k, pix in _instance_pixels(ids).items():  # sorted ids: the draws depend only on the mask content
        if labels[k] < 0:
            continue
        missed = rng.random() < degradation.miss_rate
        confused = rng.random() < degradation.class_confusion
        other = int(rng.integers(0, NUM_CLASSES - 1))
        scores[k] = rng.uniform(lo, hi)
        if missed:
            flat[pix] = 0
            labels[k] = -1
            continue
        if confused:
            labels[k] = other if other < labels[k] else other + 1
        if r:
            rows, cols = pix // w, pix % w
            y0, y1 = max(rows.min() - r, 0), min(rows.max() + r + 1, h)
            x0, x1 = max(cols.min() - r, 0), min(cols.max() + r + 1, w)
            crop = ids[y0:y1, x0:x1]  # a view: edits land in ids
            inside = (crop == k).astype(np.uint8)
            if degradation.dilate_px > 0:
                grown = cv2.dilate(inside, kernel) > 0
                crop[grown & (crop == 0)] = k  # never steal pixels of another instance
            else:
                kept = cv2.erode(inside, kernel, borderType=cv2.BORDER_REPLICATE) > 0
                crop[(inside > 0) & ~kept] = 0
    return CameraMasks(ids, labels, scores)


class MaskSource(Protocol):
    """Where the 2D instance masks of an image come from."""

    def load(self, camera: str, image_file: str) -> CameraMasks:
        """Masks of the image ``image_file`` (any path; its stem names the mask) of camera ``camera``."""
        ...


class FolderMaskSource:
    """Masks saved as ``<folder>/<CAM>/<image stem>.png`` + ``.json`` (e.g. from a user's segmenter)."""

    def __init__(self, folder: str | Path, degradation: MaskDegradation | None = None) -> None:
        self.folder = Path(folder)
        self.degradation = degradation

    def load(self, camera: str, image_file: str) -> CameraMasks:
        """Read (and, if configured, degrade) the masks of one image."""
        stem = Path(image_file).stem
        base = self.folder / camera / stem
        masks = read_instance_masks(base.with_suffix(".png"), base.with_suffix(".json"))
        if self.degradation is not None:
            masks = degrade_masks(
                masks, self.degradation, stable_rng(self.degradation.seed, f"{camera}/{stem}")
            )
        return masks


class SyntheticMaskSource(FolderMaskSource):
    """The synthetic world's oracle masks (``<dataroot>/masks``), corrupted by ``degradation``."""

    def __init__(self, dataroot: str | Path, degradation: MaskDegradation = MaskDegradation()) -> None:
        super().__init__(Path(dataroot) / "masks", degradation)


def build_mask_source(cfg: MVPConfig, dataroot: str | Path) -> MaskSource:
    """The mask source an MVP config names."""
    match cfg.mask_source:
        case "synthetic":
            return SyntheticMaskSource(dataroot, cfg.degradation)
        case "folder":
            if not cfg.mask_folder:
                raise ValueError("mvp.mask_source 'folder' needs mvp.mask_folder")
            if not Path(cfg.mask_folder).is_dir():
                raise FileNotFoundError(f"mvp.mask_folder {cfg.mask_folder} is not a directory")
            return FolderMaskSource(cfg.mask_folder)
    raise ValueError(f"unknown mask_source {cfg.mask_source!r}")


# ------------------------------------------------------------------------------------ virtual points


def to_mvp_layout(points: np.ndarray) -> np.ndarray:
    """Ordinary LiDAR points ``(N, 5)`` (x, y, z, intensity, time lag) -> ``(N, 17)`` unpainted rows."""
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 5:
        raise ValueError(f"expected LiDAR points (N, 5), got {points.shape}")
    out = np.ones((len(points), MVP_POINT_FEATURES), dtype=np.float32)
    out[:, :4] = points[:, :4]
    out[:, COL_VIRTUAL] = 0.0
    out[:, COL_TIME_LAG] = points[:, 4]
    return out


def _semantic_rows(
    xyz: np.ndarray,
    intensity: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    virtual: float,
    lag: np.ndarray,
) -> np.ndarray:
    out = np.zeros((len(xyz), MVP_POINT_FEATURES), dtype=np.float32)
    out[:, :3] = xyz
    out[:, COL_INTENSITY] = intensity
    out[np.arange(len(xyz)), COL_ONE_HOT.start + labels] = 1.0
    out[:, COL_SCORE] = scores
    out[:, COL_VIRTUAL] = virtual
    out[:, COL_TIME_LAG] = lag
    return out


def generate_virtual_points(
    points: np.ndarray,
    masks: Sequence[CameraMasks],
    intrinsics: np.ndarray,
    cam2lidar: np.ndarray,
    num_samples_per_mask: int = 50,
    rng: np.random.Generator | None = None,
    *,
    max_time_lag: float = 0.0,
    duplicate_painted: bool = True,
    min_depth: float = 0.5,
) -> np.ndarray:
    """MVP points ``(N', 17)`` (layout in the module docstring) from LiDAR points and per-camera masks.

    ``points`` ``(N, 5)`` x, y, z, intensity, time lag in the (un-augmented) key LiDAR frame (key frame
    + sweeps); ``masks[c]``, ``intrinsics[c]`` ``(3, 3)`` and ``cam2lidar[c]`` ``(4, 4)`` describe camera
    ``c`` at its native resolution. Only points with lag <= ``max_time_lag`` are projected (painted and
    used as depth sources). Rows: every input point unpainted (or painted in place when
    ``duplicate_painted`` is False), then the painted copies, then the virtual points.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    out = to_mvp_layout(points)
    intrinsics = np.asarray(intrinsics, dtype=np.float64)
    cam2lidar = np.asarray(cam2lidar, dtype=np.float64)
    if len(masks) != len(intrinsics) or len(masks) != len(cam2lidar):
        raise ValueError(
            f"{len(masks)} masks, {len(intrinsics)} intrinsics and {len(cam2lidar)} cam2lidar "
            "must match (one per camera)"
        )
    xyz1 = np.concatenate([out[:, :3].astype(np.float64), np.ones((len(out), 1))], 1)  # (N, 4)
    usable = out[:, COL_TIME_LAG] <= max_time_lag + 1e-6
    painted, virtual = [], []
    for m, k_mat, c2l in zip(masks, intrinsics, cam2lidar, strict=True):
        h, w = m.ids.shape
        p_cam = (xyz1 @ np.linalg.inv(c2l).T)[:, :3]  # (N, 3)
        depth = p_cam[:, 2]
        ok = usable & (depth > min_depth)
        uv = (p_cam[ok] @ k_mat.T)[:, :2] / depth[ok, None]  # (n, 2) continuous pixel coordinates
        col, row = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
        in_img = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        idx = np.flatnonzero(ok)[in_img]  # point indices projecting into this image
        uv, depth_in = uv[in_img], depth[idx]
        inst = m.ids[row[in_img], col[in_img]]
        lab = m.labels[inst]
        hit = (inst > 0) & (lab >= 0)
        if duplicate_painted:
            rows = out[idx[hit]].copy()
            rows[:, COL_ONE_HOT] = 0.0
            rows[np.arange(len(rows)), COL_ONE_HOT.start + lab[hit]] = 1.0
            rows[:, COL_SCORE] = m.scores[inst[hit]]
            painted.append(rows)
        else:
            out[idx[hit], COL_ONE_HOT] = 0.0
            out[idx[hit], COL_ONE_HOT.start + lab[hit]] = 1.0
            out[idx[hit], COL_SCORE] = m.scores[inst[hit]]
        k_inv = np.linalg.inv(k_mat)
        for k, pix in _instance_pixels(m.ids).items():
            if m.labels[k] < 0:
                continue
            src = hit & (inst == k)
            if not src.any():
                continue  # no LiDAR return inside this mask: MVP makes no virtual points for it
            take = rng.choice(len(pix), size=min(num_samples_per_mask, len(pix)), replace=False)
            pix = pix[take]
            suv = np.stack([pix % w + 0.5, pix // w + 0.5], 1)  # (S, 2) pixel centres
            d2 = ((suv[:, None, :] - uv[src][None]) ** 2).sum(-1)  # (S, L)
            z = depth_in[src][d2.argmin(1)]  # (S,) depth of the nearest same-mask point
            cam_pts = (np.concatenate([suv, np.ones((len(suv), 1))], 1) @ k_inv.T) * z[:, None]  # (S, 3)
            lidar_pts = cam_pts @ c2l[:3, :3].T + c2l[:3, 3]
            n = len(lidar_pts)
            virtual.append(
                _semantic_rows(
                    lidar_pts,
                    np.full(n, VIRTUAL_INTENSITY),
                    np.full(n, m.labels[k]),
                    np.full(n, m.scores[k]),
                    1.0,
                    np.zeros(n),
                )
            )
    return np.concatenate([out, *painted, *virtual], 0).astype(np.float32)


def mvp_points_for_sample(
    points: np.ndarray,
    camera_files: Sequence[tuple[str, str]],
    intrinsics: np.ndarray,
    cam2lidar: np.ndarray,
    source: MaskSource,
    cfg: MVPConfig,
    key: str,
) -> np.ndarray:
    """``generate_virtual_points`` for one sample: masks of ``camera_files`` = [(channel, image file)]
    from ``source``; pixel sampling seeded by ``(cfg.seed, key)`` (e.g. the sample token)."""
    masks = [source.load(cam, f) for cam, f in camera_files]
    return generate_virtual_points(
        points,
        masks,
        intrinsics,
        cam2lidar,
        cfg.num_samples_per_mask,
        stable_rng(cfg.seed, key),
        max_time_lag=cfg.max_time_lag,
        duplicate_painted=cfg.duplicate_painted,
        min_depth=cfg.min_depth,
    )
