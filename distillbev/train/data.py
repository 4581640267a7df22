"""DataLoaders for training and evaluation from a RunConfig."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from distillbev.config import ConfigError
from distillbev.data.cbgs import CBGSDataset, cbgs_dataset
from distillbev.data.collate import collate
from distillbev.data.nuscenes import NuScenesDataset
from distillbev.train.config import RunConfig
from distillbev.train.distributed import DistInfo


def make_dataset(cfg: RunConfig, train: bool) -> torch.utils.data.Dataset:
    """The training (augmented) or validation (deterministic) dataset of a run."""
    d = cfg.data
    split = d.train_split if train else d.val_split
    reader = reader_for_run(cfg)
    ds = NuScenesDataset(d.dataroot, d.version, split, reader, train=train, mvp=cfg.mvp, seed=cfg.seed)
    limit = d.max_train_samples if train else d.max_val_samples
    if train and d.cbgs:  # the first N samples, then CBGS over those; indexes ``ds`` directly
        return cbgs_dataset(ds, range(min(limit or len(ds), len(ds))), cfg.seed)
    if limit and limit < len(ds):
        ds = Subset(ds, range(limit))
    return ds


def reader_for_run(cfg: RunConfig):
    """The reader config a run needs: teachers read no images; MVP runs add virtual points. GT-paste is
    refused for students: their images cannot show the pasted objects."""
    from dataclasses import replace

    reader = cfg.data.reader
    if reader.gt_paste.enabled and not cfg.is_teacher:
        raise ConfigError(
            "data.reader.gt_paste.enabled: GT-paste is for the LiDAR teachers only; a camera student's "
            "images cannot show pasted objects (set it false)"
        )
    if cfg.model == "mvp":
        reader = replace(reader, virtual_points=True)
    if cfg.is_teacher:
        reader = replace(reader, load_images=False, load_prev=False)
    elif not cfg.student.temporal:
        reader = replace(reader, load_prev=False)
    return reader


def make_loader(cfg: RunConfig, train: bool, info: DistInfo | None = None) -> DataLoader:
    """A DataLoader with the project's collate (and a DistributedSampler under DDP)."""
    ds = make_dataset(cfg, train)
    if isinstance(ds, CBGSDataset) and (info is None or info.is_main):
        print(f"CBGS: {ds.num_source} training samples -> {len(ds)} per epoch", flush=True)
    sampler = None
    if info is not None and info.world_size > 1:
        sampler = DistributedSampler(
            ds, num_replicas=info.world_size, rank=info.rank, shuffle=train, seed=cfg.seed
        )
    gen = torch.Generator().manual_seed(cfg.seed)
    return DataLoader(
        ds,
        batch_size=cfg.optim.batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.data.num_workers,
        drop_last=train,
        generator=gen,
        persistent_workers=cfg.data.num_workers > 0,
    )


def steps_per_epoch(cfg: RunConfig, loader: DataLoader) -> int:
    """Optimizer steps per epoch of a training ``loader``; a ConfigError when there are none (a batch
    larger than the split: ``drop_last`` leaves no batch, and the run would save an untrained model)."""
    steps = len(loader) // cfg.optim.accumulate
    if steps == 0:
        o = cfg.optim
        raise ConfigError(
            f"optim.batch_size={o.batch_size} x optim.accumulate={o.accumulate} is more than the "
            f"{len(loader.sampler)} training samples of split {cfg.data.train_split!r} per process "
            f"(data.max_train_samples={cfg.data.max_train_samples}): 0 optimizer steps per epoch"
        )
    return steps
