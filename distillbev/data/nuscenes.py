"""``NuScenesDataset``: one reader for real nuScenes (mini, trainval) and the synthetic world alike.

Per sample: the 6 images (augmented, normalised) with intrinsics, camera->LiDAR and post_rot/post_tran;
the key-frame LiDAR plus previous sweeps in the key LiDAR frame with a time-lag channel; the previous
key frame's images lifted into the current LiDAR frame (temporal students); GT boxes in the LiDAR
frame; per-camera depth targets from the key-frame LiDAR. Everything 3D goes through the same BEV
augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from distillbev.data.augment import (
    bev_matrix,
    image_affine,
    post_matrices,
    transform_boxes,
    transform_points,
    warp_image,
)
from distillbev.data.config import ReaderConfig
from distillbev.data.depth import depth_map
from distillbev.data.index import SampleRecord, load_index

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass
class Sample:
    """One read sample (numpy); ``collate`` turns a list of these into a ``Batch``."""

    token: str
    images: np.ndarray | None  # (N, 3, H, W) float32 normalised
    intrinsics: np.ndarray  # (N, 3, 3)
    cam2lidar: np.ndarray  # (N, 4, 4), BEV augmentation folded in
    post_rot: np.ndarray  # (N, 3, 3)
    post_tran: np.ndarray  # (N, 3)
    depth: np.ndarray | None  # (N, H, W)
    points: np.ndarray  # (P, C) x, y, z, intensity, time lag [, MVP channels]
    boxes: np.ndarray  # (M, 9)
    labels: np.ndarray  # (M,)
    bev_aug: np.ndarray  # (4, 4)
    lidar2global: np.ndarray  # (4, 4), un-augmented LiDAR frame -> global
    prev_images: np.ndarray | None
    prev_cam2lidar: np.ndarray | None
    prev_dt: float
    has_prev: bool


def read_points(path: Path) -> np.ndarray:
    """A nuScenes ``.pcd.bin`` (float32 x, y, z, intensity, ring) -> (N, 5); clear errors if bad."""
    if not path.is_file():
        raise FileNotFoundError(f"point cloud file not found: {path}")
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % 5:
        raise ValueError(
            f"corrupt point cloud {path}: {raw.size * 4} bytes is not a whole number of 5-float points"
        )
    pts = raw.reshape(-1, 5)
    if not np.isfinite(pts[:, :4]).all():
        raise ValueError(f"corrupt point cloud {path}: non-finite coordinates or intensity")
    return pts


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 image; a clear error if it is missing or unreadable."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"unreadable image file: {path}")
    return img[..., ::-1]


class NuScenesDataset(Dataset):
    """Samples of one split of a nuScenes-format dataroot (``train`` enables augmentation)."""

    def __init__(
        self,
        dataroot: str | Path,
        version: str,
        split: str,
        cfg: ReaderConfig = ReaderConfig(),
        train: bool = False,
        mvp=None,
        seed: int = 0,
    ):
        self.root = Path(dataroot)
        self.version, self.split, self.cfg, self.train = version, split, cfg, train
        self.records: list[SampleRecord] = load_index(self.root, version, split, max(cfg.num_sweeps, 10))
        self.seed = seed
        self.epoch = 0
        self._mvp = mvp
        self._mask_source = None
        if cfg.virtual_points:
            from distillbev.models.mvp import MVPConfig, build_mask_source

            self._mvp = mvp if mvp is not None else MVPConfig()
            self._mask_source = build_mask_source(self._mvp, self.root)

    def __len__(self) -> int:
        return len(self.records)

    def sample_tokens(self) -> list[str]:
        """Tokens in index order."""
        return [r.token for r in self.records]

    def load_points(self, rec: SampleRecord) -> np.ndarray:
        """Key frame + ``num_sweeps`` sweeps in the key LiDAR frame: (P, 5) x, y, z, intensity, time lag."""
        key = read_points(self.root / rec.lidar_path)
        parts = [np.concatenate([key[:, :4], np.zeros((len(key), 1), np.float32)], 1)]
        for path, m, dt in rec.sweeps[: self.cfg.num_sweeps]:
            sw = read_points(self.root / path)
            sw = sw[np.hypot(sw[:, 0], sw[:, 1]) >= self.cfg.remove_close]
            sw = transform_points(sw[:, :4].astype(np.float64), m).astype(np.float32)
            parts.append(np.concatenate([sw, np.full((len(sw), 1), dt, np.float32)], 1))
        pts = np.concatenate(parts)
        return pts[np.hypot(pts[:, 0], pts[:, 1]) >= self.cfg.remove_close]

    def _cameras(self, rec: SampleRecord, g2l: np.ndarray, affines: list, rng: np.random.Generator | None):
        """Images (or None), K, camera->LiDAR, post_rot, post_tran of a record's cameras. ``affines`` holds
        one image augmentation per camera: drawn on the first call, reused (previous frame) after."""
        imgs, Ks, c2l, prots, ptrans = [], [], [], [], []
        for i, cam in enumerate(rec.cameras):
            c2l.append(g2l @ cam.cam2global)
            Ks.append(cam.intrinsics)
            if len(affines) <= i:
                affines.append(image_affine(cam.size, self.cfg.image, rng))
            A, b = affines[i]
            if self.cfg.load_images:
                img = read_image(self.root / cam.path)
                if img.shape[:2] != cam.size:
                    raise ValueError(
                        f"{self.root / cam.path}: image is {img.shape[:2]}, the tables say {cam.size}"
                    )
                out = warp_image(img, A, b, self.cfg.image.final_size).astype(np.float32) / 255.0
                imgs.append(((out - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
            pr, pt = post_matrices(A, b)
            prots.append(pr)
            ptrans.append(pt)
        images = np.stack(imgs).astype(np.float32) if imgs else None
        return images, np.stack(Ks), np.stack(c2l), np.stack(prots), np.stack(ptrans)

    def __getitem__(self, i: int) -> Sample:
        rec = self.records[i]
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.train else None
        g2l = np.linalg.inv(rec.lidar2global)
        affines: list = []
        img_rng = rng if (rng is not None and self.cfg.image_aug) else None
        images, Ks, c2l, prot, ptran = self._cameras(rec, g2l, affines, img_rng)
        points = self.load_points(rec)
        depth = None
        if self.cfg.load_images:
            key = points[points[:, 4] == 0]
            depth = np.stack(
                [
                    depth_map(key, Ks[c], c2l[c], prot[c], ptran[c], self.cfg.image.final_size)
                    for c in range(len(Ks))
                ]
            )
        if self._mask_source is not None:
            from distillbev.models.mvp import mvp_points_for_sample

            files = [(cam.channel, cam.path) for cam in rec.cameras]
            points = mvp_points_for_sample(
                points, files, Ks, c2l, self._mask_source, self._mvp, key=rec.token
            )
        boxes, labels = rec.boxes, rec.labels
        if self.cfg.drop_empty_boxes:
            keep = rec.num_points > 0
            boxes, labels = boxes[keep], labels[keep]
        prev_images = prev_c2l = None
        prev_dt, has_prev = 0.5, False
        if self.cfg.load_prev:
            if rec.prev >= 0:
                prev = self.records[rec.prev]
                prev_images, _, prev_c2l, _, _ = self._cameras(prev, g2l, affines, img_rng)
                prev_dt, has_prev = (rec.timestamp - prev.timestamp) / 1e6, True
            else:
                prev_images, prev_c2l = images, c2l.copy()
        m = bev_matrix(self.cfg.bev, rng) if (rng is not None and self.cfg.bev_aug) else np.eye(4)
        points = transform_points(points.astype(np.float64), m).astype(np.float32)
        boxes = transform_boxes(boxes, m)
        c2l = m @ c2l
        if prev_c2l is not None:
            prev_c2l = m @ prev_c2l
        x0, y0, z0, x1, y1, z1 = self.cfg.point_range
        inside = (
            (points[:, 0] >= x0)
            & (points[:, 0] < x1)
            & (points[:, 1] >= y0)
            & (points[:, 1] < y1)
            & (points[:, 2] >= z0)
            & (points[:, 2] < z1)
        )
        points = points[inside]
        in_range = (boxes[:, 0] >= x0) & (boxes[:, 0] < x1) & (boxes[:, 1] >= y0) & (boxes[:, 1] < y1)
        return Sample(
            token=rec.token,
            images=images,
            intrinsics=Ks,
            cam2lidar=c2l,
            post_rot=prot,
            post_tran=ptran,
            depth=depth,
            points=points,
            boxes=boxes[in_range],
            labels=labels[in_range],
            bev_aug=m,
            lidar2global=rec.lidar2global,
            prev_images=prev_images,
            prev_cam2lidar=prev_c2l,
            prev_dt=prev_dt,
            has_prev=has_prev,
        )

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (called by the training loop each epoch)."""
        self.epoch = epoch


def to_tensor(x: np.ndarray | None) -> torch.Tensor | None:
    """numpy -> float32 tensor (None passes through)."""
    return None if x is None else torch.from_numpy(np.ascontiguousarray(x)).float()
