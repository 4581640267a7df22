"""CBGS: class-balanced grouping and sampling (Zhu et al. 2019), as mmdet3d's ``CBGSDataset`` does it.

Each class ``c`` gets the list of training samples whose GT boxes contain it (a sample counts once per
class it contains). With ``D`` the total length of these lists and ``K`` the number of classes present,
``len(list_c) * (1 / K) / (len(list_c) / D)`` indices are drawn from ``list_c`` with replacement; the
concatenation is the epoch. Every class then anchors about ``D / K`` samples, so rare classes are seen
as often as cars. The draw is made once, from the run seed; the loader shuffles it each epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset, Subset

from distillbev.data.config import ReaderConfig
from distillbev.data.index import SampleIndex


def class_sample_lists(labels: Sequence[np.ndarray]) -> dict[int, np.ndarray]:
    """Class id -> the sample indices whose labels contain it (each sample once per class), classes
    ascending; classes without a sample are absent."""
    lists: dict[int, list[int]] = {}
    for i, lab in enumerate(labels):
        for c in np.unique(np.asarray(lab, dtype=np.int64)):
            lists.setdefault(int(c), []).append(i)
    return {c: np.asarray(lists[c], dtype=np.int64) for c in sorted(lists)}


def cbgs_indices(labels: Sequence[np.ndarray], seed: int) -> np.ndarray:
    """The CBGS epoch: indices into ``labels`` (one label array per sample), one block per class in
    ascending class order, ``int(len(list_c) * ratio_c)`` draws with replacement per block."""
    lists = class_sample_lists(labels)
    total = sum(len(v) for v in lists.values())  # D: a sample counts once per class it contains
    rng = np.random.default_rng(seed)
    blocks = [np.zeros(0, dtype=np.int64)]
    for members in lists.values():
        ratio = (1.0 / len(lists)) / (len(members) / total)
        blocks.append(rng.choice(members, int(len(members) * ratio), replace=True))
    return np.concatenate(blocks).astype(np.int64)


def kept_labels(records: SampleIndex, cfg: ReaderConfig, indices: Sequence[int]) -> list[np.ndarray]:
    """The labels the reader keeps for each sample in ``indices``, from the index only (no files read):
    boxes with no LiDAR/radar point dropped when ``cfg.drop_empty_boxes``, and box centres (key LiDAR
    frame, before augmentation) inside ``cfg.point_range`` in x and y, as ``NuScenesDataset`` filters."""
    x0, y0, _, x1, y1, _ = cfg.point_range
    out = []
    for i in indices:
        b0, b1 = records.box_offsets[i], records.box_offsets[i + 1]
        boxes, labels = records.boxes[b0:b1], records.labels[b0:b1]
        keep = (boxes[:, 0] >= x0) & (boxes[:, 0] < x1) & (boxes[:, 1] >= y0) & (boxes[:, 1] < y1)
        if cfg.drop_empty_boxes:
            keep &= records.num_points[b0:b1] > 0
        out.append(labels[keep])
    return out


class CBGSDataset(Subset):
    """A dataset's samples in CBGS order; ``dataset`` is the wrapped dataset itself, so the training
    loop's ``loader.dataset.dataset.set_epoch`` (augmentation draws) reaches it unchanged."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], num_source: int):
        super().__init__(dataset, [int(i) for i in indices])
        self.num_source = num_source  # samples CBGS drew from (before resampling)
        seen: dict[int, int] = {}
        self.repeat = []  # how many times each entry's sample appeared before it in the list
        for i in self.indices:
            self.repeat.append(seen.get(i, 0))
            seen[i] = seen.get(i, 0) + 1

    def __getitem__(self, j: int):
        """The ``j``-th sample of the epoch; a sample drawn several times gets its own augmentation
        draw each time (``NuScenesDataset.read``'s ``draw``: its rank among the repeats)."""
        if hasattr(self.dataset, "read"):
            return self.dataset.read(self.indices[j], self.repeat[j])
        return self.dataset[self.indices[j]]

    def __getitems__(self, indices: list[int]) -> list:
        """What the DataLoader's batched fetch calls: the same samples as ``__getitem__``."""
        return [self[j] for j in indices]

    def set_epoch(self, epoch: int) -> None:
        """Forward to the wrapped dataset (a new augmentation draw per epoch)."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def cbgs_dataset(dataset, candidates: Sequence[int], seed: int) -> CBGSDataset:
    """CBGS over the samples ``candidates`` of a ``NuScenesDataset`` (e.g. ``range(max_train_samples)``);
    the result indexes ``dataset`` directly."""
    candidates = np.asarray(candidates, dtype=np.int64)
    labels = kept_labels(dataset.records, dataset.cfg, candidates)
    picked = cbgs_indices(labels, seed)
    if len(picked) == 0:
        raise ValueError(
            f"CBGS (data.cbgs=true): none of the {len(candidates)} samples of split {dataset.split!r} "
            "has a kept GT box"
        )
    return CBGSDataset(dataset, candidates[picked], len(candidates))
