"""The cached sample index: everything the reader needs from the devkit tables, read once.

The first use of a split instantiates ``nuscenes.NuScenes`` and extracts, per key frame: file paths,
calibrations and ego poses, GT boxes in the key LiDAR frame (``structures`` layout), labels, the LiDAR
sweep chain with sweep -> key transforms and time lags, and the previous key frame. The result is
stored column-wise (a few large arrays, so it is small and fast to load) and pickled atomically to
``<dataroot>/.distillbev_cache/<version>_<split>_<key>.pkl`` (or a user cache folder when the dataroot
is read-only). ``key`` hashes the index format, the sweep count and every table file's size and mtime,
so editing a table rebuilds the index. Later runs load the pickle without touching the devkit.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillbev.data.geometry import global_box_to_lidar, invert_rigid, record_matrix
from distillbev.io import atomic_path
from distillbev.structures import CAMERA_NAMES, CLASS_NAMES, LIDAR_NAME

INDEX_FORMAT = 4
#: The 13 tables ``NuScenes()`` loads unconditionally (a missing one fails inside the devkit).
REQUIRED_TABLES = (
    "attribute",
    "calibrated_sensor",
    "category",
    "ego_pose",
    "instance",
    "log",
    "map",
    "sample",
    "sample_annotation",
    "sample_data",
    "scene",
    "sensor",
    "visibility",
)
#: Predefined split name prefixes -> the version suffix the devkit ties them to.
_PREDEFINED_VERSION = {"mini_": "mini", "train": "trainval", "val": "trainval", "test": "test"}


@dataclass
class CameraRecord:
    """One camera image of a key frame."""

    channel: str
    path: str  # relative to dataroot
    intrinsics: np.ndarray  # (3, 3) K of the stored image
    cam2global: np.ndarray  # (4, 4) at the image's timestamp
    size: tuple[int, int]  # (H, W) of the stored image


@dataclass
class SweepRecord:
    """One earlier LiDAR sweep of a key frame."""

    path: str  # relative to dataroot
    sweep2key: np.ndarray  # (4, 4) sweep LiDAR frame -> key LiDAR frame
    time_lag: float  # t_key - t_sweep (s)


@dataclass
class SampleRecord:
    """One key frame, as ``SampleIndex[i]`` returns it (views into the index arrays)."""

    token: str
    scene: str
    timestamp: int  # µs
    lidar_path: str
    lidar2ego: np.ndarray  # (4, 4)
    ego2global: np.ndarray  # (4, 4)
    lidar2global: np.ndarray  # (4, 4) = ego2global @ lidar2ego
    cameras: list[CameraRecord]  # in CAMERA_NAMES order
    sweeps: list[SweepRecord]  # newest first
    boxes: np.ndarray  # (M, 9) in the key LiDAR frame, every detection-class annotation
    labels: np.ndarray  # (M,) int64 into CLASS_NAMES
    num_points: np.ndarray  # (M,) num_lidar_pts + num_radar_pts
    velocity_valid: np.ndarray  # (M,) bool; False where the devkit velocity was NaN (stored as 0)
    ann_tokens: list[str]  # (M,) the sample_annotation token of each box
    prev: int  # index of the previous key frame of the scene in the index; -1 at a scene start


@dataclass
class SampleIndex:
    """All key frames of one split, stored column-wise; ``index[i]`` gives a ``SampleRecord``."""

    version: str
    split: str
    max_sweeps: int
    tokens: list[str]
    scenes: list[str]
    timestamps: np.ndarray  # (S,) int64 µs
    lidar_paths: list[str]
    lidar2ego: np.ndarray  # (S, 4, 4)
    ego2global: np.ndarray  # (S, 4, 4)
    cam_paths: list[list[str]]  # S x 6
    cam_intrinsics: np.ndarray  # (S, 6, 3, 3)
    cam2global: np.ndarray  # (S, 6, 4, 4)
    cam_sizes: np.ndarray  # (S, 6, 2) int (H, W)
    sweep_offsets: np.ndarray  # (S + 1,) sweeps of sample i are rows offsets[i]:offsets[i+1]
    sweep_paths: list[str]  # T
    sweep2key: np.ndarray  # (T, 4, 4)
    sweep_lags: np.ndarray  # (T,) s
    box_offsets: np.ndarray  # (S + 1,)
    boxes: np.ndarray  # (A, 9)
    labels: np.ndarray  # (A,) int64
    num_points: np.ndarray  # (A,) int64
    velocity_valid: np.ndarray  # (A,) bool
    ann_tokens: list[str]  # A
    prev: np.ndarray  # (S,) int64

    def __len__(self) -> int:
        return len(self.tokens)

    def __iter__(self) -> Iterator[SampleRecord]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: int) -> SampleRecord:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} outside the {len(self)} samples of split {self.split!r}")
        i = i % len(self)
        s0, s1 = self.sweep_offsets[i], self.sweep_offsets[i + 1]
        b0, b1 = self.box_offsets[i], self.box_offsets[i + 1]
        cams = [
            CameraRecord(
                ch,
                self.cam_paths[i][c],
                self.cam_intrinsics[i, c],
                self.cam2global[i, c],
                (int(self.cam_sizes[i, c, 0]), int(self.cam_sizes[i, c, 1])),
            )
            for c, ch in enumerate(CAMERA_NAMES)
        ]
        sweeps = [
            SweepRecord(self.sweep_paths[t], self.sweep2key[t], float(self.sweep_lags[t]))
            for t in range(s0, s1)
        ]
        return SampleRecord(
            token=self.tokens[i],
            scene=self.scenes[i],
            timestamp=int(self.timestamps[i]),
            lidar_path=self.lidar_paths[i],
            lidar2ego=self.lidar2ego[i],
            ego2global=self.ego2global[i],
            lidar2global=self.ego2global[i] @ self.lidar2ego[i],
            cameras=cams,
            sweeps=sweeps,
            boxes=self.boxes[b0:b1],
            labels=self.labels[b0:b1],
            num_points=self.num_points[b0:b1],
            velocity_valid=self.velocity_valid[b0:b1],
            ann_tokens=self.ann_tokens[b0:b1],
            prev=int(self.prev[i]),
        )


def check_dataroot(dataroot: str | Path, version: str) -> None:
    """A clear error when ``dataroot`` is not nuScenes-shaped (names the missing folder or tables)."""
    dataroot = Path(dataroot)
    tables = dataroot / version
    if not dataroot.is_dir():
        raise FileNotFoundError(f"dataroot not found: {dataroot}")
    if not tables.is_dir():
        found = sorted(p.name for p in dataroot.iterdir() if p.is_dir() and (p / "sample.json").is_file())
        hint = f" (table folders found: {', '.join(found)})" if found else ""
        raise FileNotFoundError(
            f"{dataroot} is not a nuScenes dataroot for version {version!r}: the table folder {tables} is "
            f"missing{hint}"
        )
    missing = [t + ".json" for t in REQUIRED_TABLES if not (tables / f"{t}.json").is_file()]
    if missing:
        raise FileNotFoundError(f"{tables} is missing nuScenes tables: {', '.join(missing)}")


def open_devkit(dataroot: str | Path, version: str, verbose: bool = False):
    """``nuscenes.NuScenes(version, dataroot)``; a table that is not valid JSON (e.g. truncated) is an
    error naming the file (the devkit's own error does not)."""
    from nuscenes import NuScenes

    try:
        return NuScenes(version=version, dataroot=str(dataroot), verbose=verbose)
    except json.JSONDecodeError as e:
        for f in sorted((Path(dataroot) / version).glob("*.json")):  # only on failure: find the culprit
            try:
                json.loads(f.read_text())
            except json.JSONDecodeError as bad:
                raise ValueError(f"{f}: not valid JSON, truncated or corrupt ({bad})") from None
        raise ValueError(f"a table of {Path(dataroot) / version} is not valid JSON ({e})") from None


def check_split(dataroot: str | Path, version: str, split: str) -> None:
    """Fail fast (before the slow devkit load) on a split the devkit cannot resolve for ``version``."""
    from nuscenes.utils.splits import is_predefined_split

    if is_predefined_split(split):
        for prefix, suffix in _PREDEFINED_VERSION.items():
            if split.startswith(prefix) and not version.endswith(suffix):
                raise ValueError(
                    f"split {split!r} is a predefined nuScenes split of the *-{suffix} versions, not of "
                    f"{version!r}; use a custom split from {Path(dataroot) / version / 'splits.json'}"
                )
        return
    path = Path(dataroot) / version / "splits.json"
    if not path.is_file():
        raise ValueError(
            f"unknown split {split!r}: not a predefined nuScenes split, and {path} (custom splits) "
            "does not exist"
        )
    try:
        custom = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(custom, dict) or split not in custom:
        names = ", ".join(sorted(custom)) if isinstance(custom, dict) else "none"
        raise ValueError(f"unknown split {split!r}: {path} defines {names}")


def cache_key(dataroot: str | Path, version: str, split: str, max_sweeps: int) -> str:
    """Hash of the index format, the split, the sweep count and the table files' sizes and mtimes."""
    h = hashlib.sha256(f"{INDEX_FORMAT}/{version}/{split}/{max_sweeps}".encode())
    for f in sorted((Path(dataroot) / version).glob("*.json")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cache_dirs(dataroot: str | Path) -> list[Path]:
    """Where index caches live: ``<dataroot>/.distillbev_cache``, then a per-dataroot user folder (used
    when the dataroot is read-only)."""
    dataroot = Path(dataroot)
    user_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "distillbev"
    tag = hashlib.sha256(str(dataroot.resolve()).encode()).hexdigest()[:12]
    return [dataroot / ".distillbev_cache", user_root / f"index_{tag}"]


def cache_path(dataroot: str | Path, version: str, split: str, max_sweeps: int) -> Path:
    """The primary cache file of a split (inside the dataroot)."""
    name = f"{version}_{split}_{cache_key(dataroot, version, split, max_sweeps)}.pkl"
    return cache_dirs(dataroot)[0] / name


def _write_cache(path: Path, index: SampleIndex) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(index, f, protocol=pickle.HIGHEST_PROTOCOL)


def load_index(dataroot: str | Path, version: str, split: str, max_sweeps: int = 10) -> SampleIndex:
    """The split's key frames, from the cache when it is current, otherwise built with the devkit and
    cached. ``max_sweeps`` = how many earlier LiDAR sweeps to index per key frame."""
    check_dataroot(dataroot, version)
    name = cache_path(dataroot, version, split, max_sweeps).name
    candidates = [d / name for d in cache_dirs(dataroot)]
    for path in candidates:
        if path.is_file():
            try:
                with open(path, "rb") as f:
                    index = pickle.load(f)
                if isinstance(index, SampleIndex):
                    return index
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError, ValueError):
                pass
            warnings.warn(f"ignoring an unreadable index cache {path}; rebuilding it", stacklevel=2)
    check_split(dataroot, version, split)
    index = build_index(dataroot, version, split, max_sweeps)
    for path in candidates:
        try:
            _write_cache(path, index)
            break
        except OSError as e:
            warnings.warn(f"could not write the index cache {path} ({e})", stacklevel=2)
    return index


def build_index(dataroot: str | Path, version: str, split: str, max_sweeps: int = 10) -> SampleIndex:
    """Read the devkit tables once and extract every key frame of ``split`` (scenes in table order,
    key frames in time order)."""
    from nuscenes.eval.detection.utils import category_to_detection_name
    from nuscenes.utils.splits import get_scenes_of_split

    nusc = open_devkit(dataroot, version)
    try:
        wanted = list(get_scenes_of_split(split, nusc))
    except (ValueError, KeyError, AssertionError) as e:
        raise ValueError(f"unknown split {split!r} for {dataroot}/{version}: {e}") from None
    known = {s["name"] for s in nusc.scene}
    absent = [s for s in wanted if s not in known]
    if absent or not wanted:
        shown = ", ".join(absent[:5]) + (" ..." if len(absent) > 5 else "")
        raise ValueError(
            f"split {split!r} of {dataroot}/{version} lists scenes that are not in scene.json: {shown}"
            if absent
            else f"split {split!r} of {dataroot}/{version} has no scenes"
        )
    wanted_set = set(wanted)

    def sensor2global(sd: dict) -> tuple[np.ndarray, np.ndarray]:
        cs = record_matrix(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"]))
        pose = record_matrix(nusc.get("ego_pose", sd["ego_pose_token"]))
        return cs, pose

    def channel(sample: dict, name: str) -> dict:
        if name not in sample["data"]:
            raise ValueError(f"sample {sample['token']} of {dataroot}/{version} has no {name} sample_data")
        return nusc.get("sample_data", sample["data"][name])

    cols: dict[str, list] = {k: [] for k in ("tokens", "scenes", "timestamps", "lidar_paths", "lidar2ego")}
    cols.update({k: [] for k in ("ego2global", "cam_paths", "cam_intrinsics", "cam2global", "cam_sizes")})
    cols.update({k: [] for k in ("sweep_paths", "sweep2key", "sweep_lags", "boxes", "labels", "prev")})
    cols.update({k: [] for k in ("num_points", "velocity_valid", "ann_tokens")})
    sweep_offsets, box_offsets = [0], [0]
    for scene in nusc.scene:
        if scene["name"] not in wanted_set:
            continue
        token, prev = scene["first_sample_token"], -1
        while token:
            sample = nusc.get("sample", token)
            lidar_sd = channel(sample, LIDAR_NAME)
            lidar2ego, ego2global = sensor2global(lidar_sd)
            global2lidar = invert_rigid(ego2global @ lidar2ego)
            cols["tokens"].append(token)
            cols["scenes"].append(scene["name"])
            cols["timestamps"].append(sample["timestamp"])
            cols["lidar_paths"].append(lidar_sd["filename"])
            cols["lidar2ego"].append(lidar2ego)
            cols["ego2global"].append(ego2global)
            paths, ks, c2g, sizes = [], [], [], []
            for name in CAMERA_NAMES:
                sd = channel(sample, name)
                cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
                cam2ego, cam_pose = sensor2global(sd)
                paths.append(sd["filename"])
                ks.append(np.asarray(cs["camera_intrinsic"], dtype=np.float64).reshape(3, 3))
                c2g.append(cam_pose @ cam2ego)
                sizes.append((int(sd["height"]), int(sd["width"])))
            cols["cam_paths"].append(paths)
            cols["cam_intrinsics"].append(ks)
            cols["cam2global"].append(c2g)
            cols["cam_sizes"].append(sizes)
            sd = lidar_sd
            for _ in range(max_sweeps):
                if not sd["prev"]:
                    break
                sd = nusc.get("sample_data", sd["prev"])
                cs, pose = sensor2global(sd)
                cols["sweep_paths"].append(sd["filename"])
                cols["sweep2key"].append(global2lidar @ pose @ cs)
                cols["sweep_lags"].append((lidar_sd["timestamp"] - sd["timestamp"]) / 1e6)
            sweep_offsets.append(len(cols["sweep_paths"]))
            for ann_token in sample["anns"]:
                ann = nusc.get("sample_annotation", ann_token)
                name = category_to_detection_name(ann["category_name"])
                if name is None:
                    continue
                v = nusc.box_velocity(ann_token)
                valid = bool(np.isfinite(v[:2]).all())
                v = np.where(np.isfinite(v), v, 0.0)
                box = global_box_to_lidar(ann["translation"], ann["size"], ann["rotation"], v, global2lidar)
                cols["boxes"].append(box)
                cols["labels"].append(CLASS_NAMES.index(name))
                cols["num_points"].append(ann["num_lidar_pts"] + ann["num_radar_pts"])
                cols["velocity_valid"].append(valid)
                cols["ann_tokens"].append(ann_token)
            box_offsets.append(len(cols["boxes"]))
            cols["prev"].append(prev)
            prev = len(cols["tokens"]) - 1
            token = sample["next"]
    return SampleIndex(
        version=version,
        split=split,
        max_sweeps=max_sweeps,
        tokens=cols["tokens"],
        scenes=cols["scenes"],
        timestamps=np.asarray(cols["timestamps"], dtype=np.int64),
        lidar_paths=cols["lidar_paths"],
        lidar2ego=np.asarray(cols["lidar2ego"], dtype=np.float64).reshape(-1, 4, 4),
        ego2global=np.asarray(cols["ego2global"], dtype=np.float64).reshape(-1, 4, 4),
        cam_paths=cols["cam_paths"],
        cam_intrinsics=np.asarray(cols["cam_intrinsics"], dtype=np.float64).reshape(
            -1, len(CAMERA_NAMES), 3, 3
        ),
        cam2global=np.asarray(cols["cam2global"], dtype=np.float64).reshape(-1, len(CAMERA_NAMES), 4, 4),
        cam_sizes=np.asarray(cols["cam_sizes"], dtype=np.int64).reshape(-1, len(CAMERA_NAMES), 2),
        sweep_offsets=np.asarray(sweep_offsets, dtype=np.int64),
        sweep_paths=cols["sweep_paths"],
        sweep2key=np.asarray(cols["sweep2key"], dtype=np.float64).reshape(-1, 4, 4),
        sweep_lags=np.asarray(cols["sweep_lags"], dtype=np.float64),
        box_offsets=np.asarray(box_offsets, dtype=np.int64),
        boxes=np.asarray(cols["boxes"], dtype=np.float64).reshape(-1, 9),
        labels=np.asarray(cols["labels"], dtype=np.int64),
        num_points=np.asarray(cols["num_points"], dtype=np.int64),
        velocity_valid=np.asarray(cols["velocity_valid"], dtype=bool),
        ann_tokens=cols["ann_tokens"],
        prev=np.asarray(cols["prev"], dtype=np.int64),
    )
