"""The cached sample index: everything the reader needs from the devkit tables, read once.

Built with ``nuscenes-devkit`` on the first use and saved (atomically) as a pickle under
``<dataroot>/.distillbev_cache/``; later runs load it without touching the devkit. The cache key
covers the table files (size and mtime), the split and the index format.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillbev.io import atomic_path
from distillbev.structures import CAMERA_NAMES, CLASS_NAMES, LIDAR_NAME

INDEX_FORMAT = 3
REQUIRED_TABLES = (
    "sample",
    "sample_data",
    "sample_annotation",
    "calibrated_sensor",
    "ego_pose",
    "scene",
    "instance",
    "category",
)


@dataclass
class CameraRecord:
    """One camera image of a sample."""

    channel: str
    path: str  # relative to dataroot
    intrinsics: np.ndarray  # (3, 3)
    cam2global: np.ndarray  # (4, 4) at the image's timestamp
    size: tuple[int, int]  # (H, W) of the stored image


@dataclass
class SampleRecord:
    """One key frame."""

    token: str
    scene: str
    timestamp: int  # µs
    lidar_path: str
    lidar2global: np.ndarray  # (4, 4)
    cameras: list[CameraRecord]
    sweeps: list[
        tuple[str, np.ndarray, float]
    ]  # (path, sweep lidar -> key lidar 4x4, time lag s), newest first
    boxes: np.ndarray  # (M, 9) in the key LiDAR frame
    labels: np.ndarray  # (M,) int64
    num_points: np.ndarray  # (M,) lidar + radar points
    prev: int  # index of the previous key frame of the scene in the index, -1 at a scene start


def _transform(rotation: list[float], translation: list[float]) -> np.ndarray:
    from pyquaternion import Quaternion

    m = np.eye(4)
    m[:3, :3] = Quaternion(rotation).rotation_matrix
    m[:3, 3] = translation
    return m


def check_dataroot(dataroot: Path, version: str) -> None:
    """A clear error when ``dataroot`` is not nuScenes-shaped."""
    tables = Path(dataroot) / version
    if not Path(dataroot).is_dir():
        raise FileNotFoundError(f"dataroot not found: {dataroot}")
    if not tables.is_dir():
        raise FileNotFoundError(
            f"{dataroot} is not a nuScenes dataroot: the table folder {tables} is missing"
        )
    missing = [t for t in REQUIRED_TABLES if not (tables / f"{t}.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"{tables} is missing nuScenes tables: {', '.join(m + '.json' for m in missing)}"
        )


def cache_path(dataroot: Path, version: str, split: str) -> Path:
    """Where the index of a split is cached (the name hashes the tables' sizes and mtimes)."""
    h = hashlib.sha256(f"{INDEX_FORMAT}/{split}".encode())
    for f in sorted((Path(dataroot) / version).glob("*.json")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return Path(dataroot) / ".distillbev_cache" / f"{version}_{split}_{h.hexdigest()[:12]}.pkl"


def load_index(dataroot: Path, version: str, split: str, max_sweeps: int = 10) -> list[SampleRecord]:
    """The split's samples, from the cache when it is current, otherwise built with the devkit."""
    check_dataroot(dataroot, version)
    path = cache_path(dataroot, version, split)
    if path.is_file():
        with open(path, "rb") as f:
            return pickle.load(f)
    records = build_index(dataroot, version, split, max_sweeps)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(records, f)
    return records


def build_index(dataroot: Path, version: str, split: str, max_sweeps: int = 10) -> list[SampleRecord]:
    """Read the devkit tables once and extract every sample of ``split``."""
    from nuscenes import NuScenes
    from nuscenes.eval.detection.utils import category_to_detection_name
    from nuscenes.utils.splits import get_scenes_of_split

    nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    try:
        scenes = set(get_scenes_of_split(split, nusc))
    except (ValueError, KeyError, AssertionError) as e:
        raise ValueError(f"unknown split {split!r} for {dataroot}/{version}: {e}") from None
    if not scenes:
        raise ValueError(f"split {split!r} of {dataroot}/{version} has no scenes")

    def sd_transform(sd: dict) -> np.ndarray:
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        return _transform(pose["rotation"], pose["translation"]) @ _transform(
            cs["rotation"], cs["translation"]
        )

    records: list[SampleRecord] = []
    for scene in nusc.scene:
        if scene["name"] not in scenes:
            continue
        token, prev = scene["first_sample_token"], -1
        while token:
            sample = nusc.get("sample", token)
            lidar_sd = nusc.get("sample_data", sample["data"][LIDAR_NAME])
            l2g = sd_transform(lidar_sd)
            g2l = np.linalg.inv(l2g)
            cams = []
            for ch in CAMERA_NAMES:
                sd = nusc.get("sample_data", sample["data"][ch])
                cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
                cams.append(
                    CameraRecord(
                        ch,
                        sd["filename"],
                        np.asarray(cs["camera_intrinsic"], float),
                        sd_transform(sd),
                        (int(sd["height"]), int(sd["width"])),
                    )
                )
            sweeps, sd = [], lidar_sd
            while len(sweeps) < max_sweeps and sd["prev"]:
                sd = nusc.get("sample_data", sd["prev"])
                sweeps.append(
                    (sd["filename"], g2l @ sd_transform(sd), (lidar_sd["timestamp"] - sd["timestamp"]) / 1e6)
                )
            boxes, labels, npts = [], [], []
            for ann_token in sample["anns"]:
                ann = nusc.get("sample_annotation", ann_token)
                name = category_to_detection_name(ann["category_name"])
                if name is None:
                    continue
                c = g2l[:3, :3] @ np.asarray(ann["translation"]) + g2l[:3, 3]
                heading = g2l[:3, :3] @ (_transform(ann["rotation"], [0, 0, 0])[:3, 0])
                v = nusc.box_velocity(ann_token)
                v = np.where(np.isfinite(v), v, 0.0)
                v = g2l[:3, :3] @ v
                w, l, h = ann["size"]
                boxes.append([*c, l, w, h, math.atan2(heading[1], heading[0]), v[0], v[1]])
                labels.append(CLASS_NAMES.index(name))
                npts.append(ann["num_lidar_pts"] + ann["num_radar_pts"])
            records.append(
                SampleRecord(
                    token=token,
                    scene=scene["name"],
                    timestamp=sample["timestamp"],
                    lidar_path=lidar_sd["filename"],
                    lidar2global=l2g,
                    cameras=cams,
                    sweeps=sweeps,
                    boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 9),
                    labels=np.asarray(labels, dtype=np.int64),
                    num_points=np.asarray(npts, dtype=np.int64),
                    prev=prev,
                )
            )
            prev = len(records) - 1
            token = sample["next"]
    return records
