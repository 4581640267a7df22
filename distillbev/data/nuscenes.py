"""``NuScenesDataset``: one reader for real nuScenes (mini, trainval) and the synthetic world alike.

Per sample: the 6 images (augmented, normalised) with intrinsics, camera->LiDAR and post_rot/post_tran;
the key-frame LiDAR plus previous sweeps in the key LiDAR frame with a time-lag channel; the previous
key frame's images lifted into the current LiDAR frame (temporal students); GT boxes in the LiDAR
frame; per-camera depth targets from the key-frame LiDAR (before the BEV augmentation); for a LiDAR
teacher's training samples, GT-paste objects (``data/gt_paste.py``, ``data.reader.gt_paste``).
Everything 3D then goes through the same BEV augmentation, so a teacher and a student see the same scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from distillbev.data.augment import (
    ImageAug,
    bev_matrix,
    image_affine,
    post_matrices,
    transform_boxes,
    transform_points,
    warp_image,
    warp_labels,
)
from distillbev.data.config import ReaderConfig
from distillbev.data.depth import depth_map
from distillbev.data.geometry import invert_rigid
from distillbev.data.gt_paste import GTDatabase, load_database, paste_objects
from distillbev.data.index import SampleIndex, SampleRecord, load_index
from distillbev.data.masks import MASKS_DIR, class_map, mask_paths, read_instance_masks

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
POINT_BYTES = 5 * 4  # one LiDAR point of a .pcd.bin: x, y, z, intensity, ring as float32
JPEG_EOI = b"\xff\xd9"  # the JPEG end-of-image marker
MIN_INDEXED_SWEEPS = 10  # the index always holds at least this many sweeps, so one cache serves all runs


@dataclass
class Sample:
    """One read sample (numpy); ``collate`` turns a list of these into a ``Batch`` (same field meanings)."""

    token: str
    images: np.ndarray | None  # (N, 3, H, W) float32 normalised; None when images are not loaded
    intrinsics: np.ndarray  # (N, 3, 3) K of the stored (un-augmented) image
    cam2lidar: np.ndarray  # (N, 4, 4) camera -> augmented key LiDAR frame (BEV augmentation folded in)
    post_rot: np.ndarray  # (N, 3, 3)
    post_tran: np.ndarray  # (N, 3)
    depth: np.ndarray | None  # (N, H, W) key-frame LiDAR depth per augmented pixel, 0 = none
    points: np.ndarray  # (P, C) float32 x, y, z, intensity, time lag [, MVP channels]
    boxes: np.ndarray  # (M, 9) float64 x, y, z, l, w, h, yaw, vx, vy
    labels: np.ndarray  # (M,) int64
    velocity_valid: np.ndarray  # (M,) bool, False where nuScenes has no velocity (stored as 0)
    bev_aug: np.ndarray  # (4, 4)
    lidar2global: np.ndarray  # (4, 4), un-augmented LiDAR frame -> global
    prev_images: np.ndarray | None  # (N, 3, H, W), the current images again when has_prev is False
    prev_cam2lidar: np.ndarray | None  # (N, 4, 4) previous camera -> augmented current LiDAR frame
    has_prev: bool
    class_masks: np.ndarray | None = None  # (N, H, W) uint8 per augmented pixel: 0 = none, k + 1 = class k


def read_points(path: Path) -> np.ndarray:
    """A nuScenes ``.pcd.bin`` (float32 x, y, z, intensity, ring) -> (N, 5); clear errors if bad."""
    if not path.is_file():
        raise FileNotFoundError(f"point cloud file not found: {path}")
    size = path.stat().st_size  # bytes, not floats: np.fromfile drops a trailing partial float
    if size % POINT_BYTES:
        raise ValueError(
            f"corrupt point cloud {path}: {size} bytes is not a whole number of 5-float32 points "
            f"({POINT_BYTES} bytes each)"
        )
    pts = np.fromfile(path, dtype=np.float32).reshape(-1, 5)
    if not np.isfinite(pts[:, :4]).all():
        raise ValueError(f"corrupt point cloud {path}: non-finite (NaN/inf) coordinates or intensity")
    return pts


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 image ``(H, W, 3)``; a clear error if it is missing or unreadable."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    # libjpeg decodes a truncated JPEG as a partly grey image with only a warning: require the
    # end-of-image marker (padding zeros after it are allowed).
    is_jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    if is_jpeg and not data[-4096:].tobytes().rstrip(b"\0").endswith(JPEG_EOI):
        raise ValueError(f"truncated JPEG (no end-of-image marker FF D9): {path}")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"unreadable (corrupt or not an image) file: {path}")
    return np.ascontiguousarray(img[..., ::-1])


def remove_close(points: np.ndarray, radius: float) -> np.ndarray:
    """Drop points with ``|x| < radius`` and ``|y| < radius`` (the devkit's and mmdet3d's square)."""
    if radius <= 0:
        return points
    close = (np.abs(points[:, 0]) < radius) & (np.abs(points[:, 1]) < radius)
    return points[~close]


def load_points(dataroot: Path, rec: SampleRecord, cfg: ReaderConfig) -> tuple[np.ndarray, int]:
    """The LiDAR input of a key frame in its (un-augmented) LiDAR frame: ``(P, 5)`` float32 rows x, y, z,
    intensity, time lag (s), and the number of leading rows that are the key frame itself.

    The key frame comes first, then ``cfg.num_sweeps`` earlier sweeps (newest first), each cleaned with
    ``remove_close`` in its own sensor frame and moved into the key frame. With no earlier sweep at all
    (a scene start) and ``pad_empty_sweeps``, the key frame is repeated instead (mmdet3d).
    """
    key = remove_close(read_points(dataroot / rec.lidar_path), cfg.remove_close)
    key = np.concatenate([key[:, :4], np.zeros((len(key), 1), np.float32)], 1)
    parts = [key]
    for sweep in rec.sweeps[: cfg.num_sweeps]:
        pts = remove_close(read_points(dataroot / sweep.path), cfg.remove_close)[:, :4].astype(np.float64)
        pts = transform_points(pts, sweep.sweep2key).astype(np.float32)
        parts.append(np.concatenate([pts, np.full((len(pts), 1), sweep.time_lag, np.float32)], 1))
    if cfg.num_sweeps > 0 and not rec.sweeps and cfg.pad_empty_sweeps:
        parts += [key] * cfg.num_sweeps
    return np.concatenate(parts).astype(np.float32), len(key)


def normalise_image(img: np.ndarray) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` -> float32 ``(3, H, W)`` with ImageNet mean/std."""
    out = img.astype(np.float32) / 255.0
    return ((out - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


class NuScenesDataset(Dataset):
    """Samples of one split of a nuScenes-format dataroot (``train`` enables augmentation).

    ``version``/``split``: e.g. ``v1.0-synthetic``/``synth_train`` (custom splits from
    ``<version>/splits.json``), ``v1.0-mini``/``mini_val``, ``v1.0-trainval``/``train``. Augmentation
    draws are a fixed function of ``(seed, epoch, index)``; ``set_epoch`` changes them.
    """

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
        self.records: SampleIndex = load_index(
            self.root, version, split, max(cfg.num_sweeps, MIN_INDEXED_SWEEPS)
        )
        self.seed = seed
        self.epoch = 0
        self._mvp = mvp
        self._mask_source = None
        if cfg.virtual_points:
            from distillbev.data.virtual_points import MVPConfig, build_mask_source

            self._mvp = mvp if mvp is not None else MVPConfig()
            self._mask_source = build_mask_source(self._mvp, self.root)
        self._gt_db: GTDatabase | None = None
        if train and cfg.gt_paste.enabled:  # the database holds this (training) split's objects only
            if cfg.load_images:
                raise ValueError(
                    "data.reader.gt_paste.enabled: GT-paste is for the LiDAR teachers only; a reader that "
                    "loads images (a camera student) cannot show pasted objects in them"
                )
            extra = repr(self._mvp) if cfg.virtual_points else ""
            self._gt_db = load_database(self.records, self.root, cfg, self.source_points, extra)

    def __len__(self) -> int:
        return len(self.records)

    def sample_tokens(self) -> list[str]:
        """Tokens in index order."""
        return list(self.records.tokens)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (called by the training loop each epoch)."""
        self.epoch = epoch

    def _rngs(self, i: int, draw: int = 0) -> tuple[np.random.Generator | None, np.random.Generator | None]:
        """Independent image and BEV augmentation streams of sample ``i`` (None: no augmentation);
        ``draw`` > 0 gives a repeated sample (CBGS) draws of its own."""
        if not self.train:
            return None, None
        key = [self.seed, self.epoch, i] + ([draw] if draw else [])
        img = np.random.default_rng([*key, 0]) if self.cfg.image_aug else None
        bev = np.random.default_rng([*key, 1]) if self.cfg.bev_aug else None
        return img, bev

    def _images(self, rec: SampleRecord, augs: list[ImageAug]) -> np.ndarray | None:
        """A record's 6 augmented, normalised images ``(N, 3, H, W)`` (None when images are off)."""
        if not self.cfg.load_images:
            return None
        out = []
        for cam, aug in zip(rec.cameras, augs, strict=True):
            path = self.root / cam.path
            img = read_image(path)
            if img.shape[:2] != cam.size:
                raise ValueError(f"{path}: image is {img.shape[:2]} (H, W), sample_data says {cam.size}")
            out.append(normalise_image(warp_image(img, aug)))
        return np.stack(out)

    def _class_masks(self, rec: SampleRecord, augs: list[ImageAug]) -> np.ndarray | None:
        """Per-pixel classes of a record's 6 augmented images ``(N, H, W)`` from ``<dataroot>/masks``
        (None when the dataroot has no masks, e.g. real nuScenes; an image without its mask is an error)."""
        folder = self.root / MASKS_DIR
        if not self.cfg.load_masks or not folder.is_dir():
            return None
        out = []
        for cam, aug in zip(rec.cameras, augs, strict=True):
            png, js = mask_paths(folder, cam.channel, cam.path)
            masks = read_instance_masks(png, js)
            if masks.ids.shape != cam.size:
                raise ValueError(f"{png}: mask is {masks.ids.shape} (H, W), its image is {cam.size}")
            out.append(warp_labels(class_map(masks), aug))
        return np.stack(out)

    def _paste_rng(self, i: int, draw: int = 0) -> np.random.Generator:
        """The GT-paste stream of sample ``i`` (independent of the image and BEV streams of ``_rngs``)."""
        return np.random.default_rng([self.seed, self.epoch, i] + ([draw] if draw else []) + [2])

    def source_points(self, rec: SampleRecord) -> np.ndarray:
        """A record's un-augmented input points as a sample reads them (the GT database's source)."""
        g2l = invert_rigid(rec.lidar2global)
        intrinsics = np.stack([cam.intrinsics for cam in rec.cameras])  # (N, 3, 3)
        cam2lidar = np.stack([g2l @ cam.cam2global for cam in rec.cameras])  # (N, 4, 4)
        return self.points(rec, intrinsics, cam2lidar)[0]

    def points(
        self, rec: SampleRecord, intrinsics: np.ndarray, cam2lidar: np.ndarray
    ) -> tuple[np.ndarray, int]:
        """``load_points`` plus the MVP painted/virtual points when the config asks for them (un-augmented
        frame); returns the points and the number of leading key-frame rows."""
        points, num_key = load_points(self.root, rec, self.cfg)
        if self._mask_source is not None:
            from distillbev.data.virtual_points import mvp_points_for_sample

            files = [(cam.channel, cam.path) for cam in rec.cameras]
            points = mvp_points_for_sample(
                points, files, intrinsics, cam2lidar, self._mask_source, self._mvp, key=rec.token
            )
        return points, num_key

    def __getitem__(self, i: int) -> Sample:
        return self.read(i)

    def read(self, i: int, draw: int = 0) -> Sample:
        """Sample ``i`` with augmentation draw ``draw`` (0 = the sample's own; see ``_rngs``)."""
        rec = self.records[i]
        img_rng, bev_rng = self._rngs(i, draw)
        g2l = invert_rigid(rec.lidar2global)
        augs = [image_affine(cam.size, self.cfg.image, img_rng) for cam in rec.cameras]
        post = [post_matrices(a) for a in augs]
        post_rot = np.stack([p[0] for p in post])  # (N, 3, 3)
        post_tran = np.stack([p[1] for p in post])  # (N, 3)
        intrinsics = np.stack([cam.intrinsics for cam in rec.cameras])  # (N, 3, 3)
        cam2lidar = np.stack([g2l @ cam.cam2global for cam in rec.cameras])  # (N, 4, 4)
        images = self._images(rec, augs)
        class_masks = self._class_masks(rec, augs)

        points, num_key = self.points(rec, intrinsics, cam2lidar)
        depth = None
        if self.cfg.load_images:  # key frame only, before the BEV augmentation (docs/method.md)
            key = points[:num_key]
            fh_fw = self.cfg.image.final_size
            depth = np.stack(
                [
                    depth_map(key, intrinsics[c], cam2lidar[c], post_rot[c], post_tran[c], fh_fw)
                    for c in range(len(intrinsics))
                ]
            )

        keep = rec.num_points > 0 if self.cfg.drop_empty_boxes else np.ones(len(rec.boxes), dtype=bool)
        boxes, labels, vel_ok = rec.boxes[keep], rec.labels[keep], rec.velocity_valid[keep]
        if self._gt_db is not None:  # teachers only (no images), before the BEV augmentation
            rng = self._paste_rng(i, draw)
            pasted = paste_objects(points, boxes, labels, vel_ok, self._gt_db, self.cfg.gt_paste, rng)
            points, boxes, labels, vel_ok = pasted.points, pasted.boxes, pasted.labels, pasted.velocity_valid

        prev_images = prev_c2l = None
        has_prev = False
        if self.cfg.load_prev:
            if rec.prev >= 0:  # the same image augmentation draw per camera, as BEVDet4D
                prev = self.records[rec.prev]
                prev_images = self._images(prev, augs)
                prev_c2l = np.stack([g2l @ cam.cam2global for cam in prev.cameras])
                has_prev = True
            else:
                prev_images, prev_c2l = images, cam2lidar.copy()

        m = np.eye(4)
        if bev_rng is not None:
            m = bev_matrix(self.cfg.bev, bev_rng)
            points = transform_points(points.astype(np.float64), m).astype(np.float32)
            boxes = transform_boxes(boxes, m)
            cam2lidar = m @ cam2lidar
            if prev_c2l is not None:
                prev_c2l = m @ prev_c2l

        x0, y0, z0, x1, y1, z1 = self.cfg.point_range
        px, py, pz = points[:, 0], points[:, 1], points[:, 2]
        points = points[(px >= x0) & (px < x1) & (py >= y0) & (py < y1) & (pz >= z0) & (pz < z1)]
        in_range = (boxes[:, 0] >= x0) & (boxes[:, 0] < x1) & (boxes[:, 1] >= y0) & (boxes[:, 1] < y1)
        return Sample(
            token=rec.token,
            images=images,
            intrinsics=intrinsics,
            cam2lidar=cam2lidar,
            post_rot=post_rot,
            post_tran=post_tran,
            depth=depth,
            points=points,
            boxes=boxes[in_range],
            labels=labels[in_range],
            velocity_valid=vel_ok[in_range],
            bev_aug=m,
            lidar2global=rec.lidar2global,
            prev_images=prev_images,
            prev_cam2lidar=prev_c2l,
            has_prev=has_prev,
            class_masks=class_masks,
        )
