"""GT-paste (object sampling) for the LiDAR teachers, as SECOND's and CenterPoint's database sampler.

**Database** (``build_database``, from the training split only): every GT box of every training sample
that the devkit counts points for, with the points inside it (3D, edges included), cropped from the
sample's un-augmented LiDAR input exactly as the reader makes it (key frame + sweeps with their time
lag, and MVP's painted and virtual points when the reader adds them; every channel kept), its box row,
class and velocity flag. Boxes and points stay in the source sample's LiDAR frame. It is built once per
split and reader setting (``database_key``) and stored under ``<dataroot>/.distillbev_cache/`` (or the
index's user cache folder when the dataroot is read-only) as a folder ``gtdb_<version>_<split>_<key>``
holding ``meta.npz`` and ``points.npy`` (memory-mapped when read, so loader workers share it).

**Paste** (``paste_objects``, per training sample, before the BEV augmentation): for each class in label
order, ``max(0, N_c - objects of the class in the sample)`` database objects of that class with at least
``min_points`` points are drawn without replacement (``N_c`` = ``sample_groups.<class>``). A drawn object
is kept when its BEV rectangle neither overlaps nor touches any box of the sample or any object kept
before it (``bev_boxes_overlap``: exact separating-axis test of rotated rectangles, so kept objects have
BEV IoU 0 with everything else); otherwise it is dropped, not redrawn, as in CenterPoint. The scene's
points inside the kept boxes (3D) are removed and the objects' points appended, unmoved: CenterPoint
pastes an object where it was in its source sample's LiDAR frame. The draws use the sample's own stream
(``NuScenesDataset._paste_rng``, beside its image and BEV streams), so a sample is the same for a seed
whatever the loader order.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distillbev.data.config import GTPasteConfig, ReaderConfig
from distillbev.data.index import SampleIndex, SampleRecord, cache_dirs, cache_key
from distillbev.io import atomic_path
from distillbev.structures import CLASS_NAMES, box_corners_bev, points_in_boxes

DB_FORMAT = 1
#: Slack (m) of the axis-aligned pre-filter in front of the exact point-in-box test (rounding only).
_PREFILTER_SLACK = 1e-3


@dataclass
class GTDatabase:
    """The objects of one split: object ``k`` is ``boxes[k]`` with ``points[point_offsets[k]:
    point_offsets[k + 1]]``, from sample ``tokens[k]``."""

    split: str
    tokens: np.ndarray  # (K,) str, the source sample of each object
    boxes: np.ndarray  # (K, 9) float64 in the source sample's LiDAR frame
    labels: np.ndarray  # (K,) int64 into CLASS_NAMES
    velocity_valid: np.ndarray  # (K,) bool
    point_offsets: np.ndarray  # (K + 1,) int64
    points: np.ndarray  # (P, C) float32, the reader's point layout (possibly a read-only memmap)
    _pools: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def num_points(self) -> np.ndarray:
        """``(K,)`` points of each object."""
        return np.diff(self.point_offsets)

    def object_points(self, k: int) -> np.ndarray:
        """``(n_k, C)`` float32 points of object ``k`` (a copy)."""
        return np.array(self.points[self.point_offsets[k] : self.point_offsets[k + 1]])

    def pool(self, label: int, min_points: int) -> np.ndarray:
        """Indices of the objects of class ``label`` with at least ``min_points`` points (ascending)."""
        key = (label, min_points)
        if key not in self._pools:
            self._pools[key] = np.flatnonzero((self.labels == label) & (self.num_points >= min_points))
        return self._pools[key]


@dataclass
class PasteResult:
    """A sample after GT-paste; ``pasted`` are the database indices of the objects added, in the order
    their boxes were appended after the sample's own."""

    points: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    velocity_valid: np.ndarray
    pasted: np.ndarray  # (n,) int64


def crop_objects(points: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """For each box ``(M, >=7)``, the indices of ``points`` ``(N, >=3)`` inside it (3D, edges included,
    ``structures.points_in_boxes``), one box at a time behind an axis-aligned pre-filter."""
    out = []
    for box in np.asarray(boxes, dtype=np.float64):  # (M, >=7)
        reach = 0.5 * np.hypot(box[3], box[4]) + _PREFILTER_SLACK
        near = np.abs(points[:, 0] - box[0]) <= reach
        near = np.flatnonzero(near & (np.abs(points[:, 1] - box[1]) <= reach))
        out.append(near[points_in_boxes(points[near], box[None])[:, 0]])
    return out


def bev_boxes_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` bool: whether the BEV rectangles of box rows ``a[i]`` and ``b[j]`` overlap or
    touch. Separating-axis test on the four edge normals of the pair: two convex rectangles are apart iff
    their projections on one of these axes leave a gap."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 9), np.asarray(b, dtype=np.float64).reshape(-1, 9)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=bool)

    def normals(boxes: np.ndarray) -> np.ndarray:  # (N, 2 axes, 2)
        c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
        return np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], 1)

    shape = (len(a), len(b), 2, 2)
    axes = np.concatenate(
        [np.broadcast_to(normals(a)[:, None], shape), np.broadcast_to(normals(b)[None], shape)], 2
    )  # (Na, Nb, 4, 2)
    proj_a = np.einsum("ikd,ijad->ijak", box_corners_bev(a), axes)  # (Na, Nb, 4 axes, 4 corners)
    proj_b = np.einsum("jkd,ijad->ijak", box_corners_bev(b), axes)
    apart = (proj_a.max(-1) < proj_b.min(-1)) | (proj_b.max(-1) < proj_a.min(-1))  # (Na, Nb, 4)
    return ~apart.any(-1)


def sample_objects(
    db: GTDatabase, cfg: GTPasteConfig, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Database indices of the objects to paste into a sample holding ``boxes`` / ``labels`` (module
    docstring: per class ``max(0, N_c - present)`` draws, colliding draws dropped)."""
    present = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(CLASS_NAMES))
    placed = [np.asarray(boxes, dtype=np.float64).reshape(-1, 9)]
    chosen: list[int] = []
    for label, name in enumerate(CLASS_NAMES):
        pool = db.pool(label, cfg.min_points)
        want = min(getattr(cfg.sample_groups, name) - int(present[label]), len(pool))
        if want <= 0:
            continue
        for k in pool[rng.choice(len(pool), want, replace=False)]:
            if not bev_boxes_overlap(db.boxes[k : k + 1], np.concatenate(placed)).any():
                chosen.append(int(k))
                placed.append(db.boxes[k : k + 1])
    return np.asarray(chosen, dtype=np.int64)


def paste_objects(
    points: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    velocity_valid: np.ndarray,
    db: GTDatabase,
    cfg: GTPasteConfig,
    rng: np.random.Generator,
) -> PasteResult:
    """GT-paste into one un-augmented sample: the drawn objects' boxes appended to ``boxes`` (and their
    labels, velocity flags), the scene's points inside them removed and their own points appended."""
    chosen = sample_objects(db, cfg, boxes, labels, rng)
    if len(chosen) == 0:
        return PasteResult(points, boxes, labels, velocity_valid, chosen)
    new_boxes = db.boxes[chosen]
    inside = np.zeros(len(points), dtype=bool)
    for idx in crop_objects(points, new_boxes):
        inside[idx] = True
    pasted_points = [db.object_points(k).astype(points.dtype, copy=False) for k in chosen]
    return PasteResult(
        points=np.concatenate([points[~inside], *pasted_points]),
        boxes=np.concatenate([boxes, new_boxes]),
        labels=np.concatenate([labels, db.labels[chosen]]),
        velocity_valid=np.concatenate([velocity_valid, db.velocity_valid[chosen]]),
        pasted=chosen,
    )


def build_database(
    records: SampleIndex, load: Callable[[SampleRecord], np.ndarray], progress: bool = False
) -> GTDatabase:
    """The objects of every sample of ``records`` (one split): ``load(record)`` returns the sample's
    un-augmented reader points ``(N, C)``; boxes without a devkit point count (``num_points == 0``) and
    boxes with no point in ``load``'s cloud are skipped."""
    tokens, boxes, labels, vel, offsets, parts = [], [], [], [], [0], []
    for i, rec in enumerate(records):
        if progress and i % 500 == 0:
            print(f"GT database: sample {i} / {len(records)} of split {records.split!r}", flush=True)
        points = load(rec)
        keep = np.flatnonzero(rec.num_points > 0)
        for j, idx in zip(keep, crop_objects(points, rec.boxes[keep]), strict=True):
            if len(idx) == 0:
                continue
            tokens.append(rec.token)
            boxes.append(rec.boxes[j])
            labels.append(rec.labels[j])
            vel.append(rec.velocity_valid[j])
            parts.append(points[idx].astype(np.float32))
            offsets.append(offsets[-1] + len(idx))
    width = parts[0].shape[1] if parts else 5
    return GTDatabase(
        split=records.split,
        tokens=np.asarray(tokens, dtype=str),
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 9),
        labels=np.asarray(labels, dtype=np.int64),
        velocity_valid=np.asarray(vel, dtype=bool),
        point_offsets=np.asarray(offsets, dtype=np.int64),
        points=np.concatenate(parts) if parts else np.zeros((0, width), np.float32),
    )


def database_key(records: SampleIndex, dataroot: str | Path, cfg: ReaderConfig, extra: str = "") -> str:
    """Hash of the database format, the split's index key (its tables' sizes and mtimes) and the reader
    settings that decide an object's points; ``extra`` names anything else that does (MVP's settings)."""
    index_key = cache_key(dataroot, records.version, records.split, records.max_sweeps)
    reader = (cfg.num_sweeps, cfg.remove_close, cfg.pad_empty_sweeps, cfg.virtual_points)
    return hashlib.sha256(repr((DB_FORMAT, index_key, reader, extra)).encode()).hexdigest()[:16]


def database_paths(
    records: SampleIndex, dataroot: str | Path, cfg: ReaderConfig, extra: str = ""
) -> list[Path]:
    """Where the database of this split and reader setting is cached, in the order tried."""
    name = f"gtdb_{records.version}_{records.split}_{database_key(records, dataroot, cfg, extra)}"
    return [d / name for d in cache_dirs(dataroot)]


def _write(path: Path, db: GTDatabase) -> None:
    with atomic_path(path) as tmp:
        tmp.mkdir()
        np.save(tmp / "points.npy", db.points)
        np.savez(
            tmp / "meta.npz",
            split=np.asarray(db.split),
            tokens=db.tokens,
            boxes=db.boxes,
            labels=db.labels,
            velocity_valid=db.velocity_valid,
            point_offsets=db.point_offsets,
        )


def _read(path: Path) -> GTDatabase:
    with np.load(path / "meta.npz", allow_pickle=False) as meta:
        fields = {k: meta[k] for k in meta.files}
    points = np.load(path / "points.npy", mmap_mode="r", allow_pickle=False)
    expected = int(fields["point_offsets"][-1])
    if expected != len(points):
        raise ValueError(f"{path}: points.npy holds {len(points)} rows, meta.npz says {expected}")
    return GTDatabase(split=str(fields.pop("split")), points=points, **fields)


def load_database(
    records: SampleIndex,
    dataroot: str | Path,
    cfg: ReaderConfig,
    load: Callable[[SampleRecord], np.ndarray],
    extra: str = "",
) -> GTDatabase:
    """The split's database from the cache when present, otherwise built (``build_database``) and
    cached in the first writable cache folder."""
    paths = database_paths(records, dataroot, cfg, extra)
    for path in paths:
        if (path / "meta.npz").is_file():
            try:
                return _read(path)
            except (OSError, ValueError, KeyError, TypeError) as e:
                warnings.warn(f"ignoring an unreadable GT database {path} ({e}); rebuilding it", stacklevel=2)
    db = build_database(records, load, progress=True)
    for path in paths:
        try:
            _write(path, db)
            print(f"GT database: {len(db)} objects of split {records.split!r} -> {path}", flush=True)
            break
        except OSError as e:
            warnings.warn(f"could not write the GT database {path} ({e})", stacklevel=2)
    return db
