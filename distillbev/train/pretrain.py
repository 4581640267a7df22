"""``distillbev pretrain``: the image backbone + neck of a student, trained on dense image-plane targets
of the train split (docs/pretraining.md), saved for ``student.image_pretrained``.

Targets per camera, on the neck's feature grid: LiDAR depth bins (every nuScenes-format dataset),
projected 3D box centres as class heatmaps (every dataset with boxes), the per-class pixel share
of each cell from ``<dataroot>/masks`` (the synthetic world; skipped where a dataroot has no masks),
and with ``pretrain.heading_weight`` each box's angle to the viewing ray (at its centre or over its
extent, ``student.image_heading_region``; every dataset with boxes).
It is this project's analogue of the ImageNet / nuImages pretraining real BEV students start from.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from distillbev.config import ConfigError, dump_config, load_config, to_dict
from distillbev.data.batch import Batch
from distillbev.data.collate import collate
from distillbev.data.masks import MASKS_DIR
from distillbev.data.nuscenes import NuScenesDataset
from distillbev.models.bevdepth import depth_loss, depth_targets
from distillbev.models.image_aux import center_heatmaps, class_occupancy, heatmap_loss, occupancy_loss
from distillbev.models.image_encoder import build_image_encoder
from distillbev.models.image_heading import heading_loss, heading_targets
from distillbev.models.image_pretrain import ImagePretrainNet, save_image_encoder
from distillbev.train.checkpoint import git_sha
from distillbev.train.config import OptimConfig, RunConfig
from distillbev.train.logging import RunLogger
from distillbev.train.malloc import tune_malloc
from distillbev.train.schedule import build_scheduler

CHECKPOINT = "image_encoder.pt"


def pretrain_dataset(cfg: RunConfig, train: bool) -> NuScenesDataset:
    """Images (augmented when ``train``), depth, boxes and class masks; no sweeps, previous frames or
    BEV augmentation (nothing here looks at the BEV)."""
    reader = replace(
        cfg.data.reader,
        num_sweeps=0,
        load_images=True,
        load_prev=False,
        bev_aug=False,
        virtual_points=False,
        load_masks=True,
    )
    split = cfg.data.train_split if train else cfg.data.val_split
    return NuScenesDataset(cfg.data.dataroot, cfg.data.version, split, reader, train=train, seed=cfg.seed)


def pretrain_losses(net: ImagePretrainNet, batch: Batch, cfg: RunConfig) -> dict[str, torch.Tensor]:
    """Weighted depth / occupancy / centre losses of one batch (occupancy only when it has masks)."""
    s, p = cfg.student, cfg.pretrain
    out = net(batch.images.flatten(0, 1))
    bins = s.bins()
    depth = depth_targets(batch.depth, s.image_stride, bins)
    centers = center_heatmaps(batch, s.image_size, s.image_stride)
    losses = {
        "depth": p.depth_weight * depth_loss(out["depth"], depth, bins, "valid", "softmax"),
        "center": p.center_weight * heatmap_loss(out["center"], centers),
    }
    if batch.class_masks is not None and p.occupancy_weight > 0:
        target = class_occupancy(batch.class_masks, s.image_stride)
        losses["occupancy"] = p.occupancy_weight * occupancy_loss(out["occupancy"], target)
    if "heading" in out:
        target, mask = heading_targets(batch, s.image_size, s.image_stride, s.image_heading_region)
        losses["heading"] = p.heading_weight * heading_loss(out["heading"], target, mask)
    return losses


@torch.no_grad()
def pretrain_figures(net: ImagePretrainNet, loader: DataLoader, cfg: RunConfig) -> dict[str, float]:
    """Validation figures of the dense heads (reported, never used for selection):

    - ``depth_within_1_bin``: cells with a LiDAR return whose arg-max bin is within one of the target's;
    - ``depth_abs_rel``: mean |E[d] - d| / d over those cells (E[d] under the softmax, at bin centres);
    - ``center_recall``: GT centre cells whose own-class heatmap is >= 0.3 and a 3x3 local maximum;
    - ``center_false_peaks_per_image``: other 3x3 local maxima >= 0.3;
    - ``occupancy_iou``: IoU of cells with > 50 % of a class's pixels, predicted vs true, over classes
      and cameras (only with masks);
    - ``heading_front_back``: with the heading head, the share of heading target cells whose predicted
      angle is within 90 degrees of the target's (front told from back; 0.5 = a coin toss).
    """
    s = cfg.student
    bins = s.bins()
    centres = replace(bins, centers=True).candidates()  # E[d] over bin centres, whatever the lift uses
    was = net.training
    net.eval()
    keys = ("within", "cells", "rel", "hit", "gt", "fp", "images", "inter", "union", "front", "heading")
    sums = dict.fromkeys(keys, 0.0)
    for batch in loader:
        out = net(batch.images.flatten(0, 1))
        target = depth_targets(batch.depth, s.image_stride, bins)  # (M, h, w)
        valid = target > 0
        pred_bin = out["depth"].argmax(1)
        sums["within"] += float(((pred_bin - bins.bin_of(target)).abs() <= 1)[valid].sum())
        sums["cells"] += float(valid.sum())
        expected = (out["depth"].softmax(1) * centres[None, :, None, None]).sum(1)
        sums["rel"] += float(((expected - target).abs() / target.clamp(min=1e-6))[valid].sum())
        heat = out["center"].sigmoid()
        peaks = (heat >= 0.3) & (heat == torch.nn.functional.max_pool2d(heat, 3, 1, 1))
        gt = center_heatmaps(batch, s.image_size, s.image_stride).eq(1)
        sums["hit"] += float((peaks & gt).sum())
        sums["gt"] += float(gt.sum())
        sums["fp"] += float((peaks & ~gt).sum())
        sums["images"] += heat.shape[0]
        if batch.class_masks is not None:
            occ = class_occupancy(batch.class_masks, s.image_stride) > 0.5
            pred = out["occupancy"].sigmoid() > 0.5
            sums["inter"] += float((occ & pred).sum())
            sums["union"] += float((occ | pred).sum())
        if "heading" in out:
            target, mask = heading_targets(batch, s.image_size, s.image_stride, s.image_heading_region)
            agree = (out["heading"].float() * target).sum(1) > 0  # cos of the angle between them > 0
            sums["front"] += float(agree[mask].sum())
            sums["heading"] += float(mask.sum())
    net.train(was)
    figures = {
        "depth_within_1_bin": sums["within"] / max(sums["cells"], 1),
        "depth_abs_rel": sums["rel"] / max(sums["cells"], 1),
        "center_recall": sums["hit"] / max(sums["gt"], 1),
        "center_false_peaks_per_image": sums["fp"] / max(sums["images"], 1),
    }
    if sums["union"] > 0:
        figures["occupancy_iou"] = sums["inter"] / sums["union"]
    if sums["heading"] > 0:
        figures["heading_front_back"] = sums["front"] / sums["heading"]
    return figures


def world_record(dataroot: str | Path) -> dict[str, Any]:
    """Where the data came from: the dataroot, and for the synthetic world its config file and sha256."""
    root = Path(dataroot)
    record: dict[str, Any] = {"dataroot": str(root)}
    world = root / "world_config.yaml"
    if world.is_file():
        import yaml

        text = world.read_text()
        record["world_config"] = yaml.safe_load(text)
        record["world_config_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    return record


def run_pretrain(files: Sequence[Path], out: Path, overrides: Sequence[str]) -> dict[str, Any]:
    """Train and save ``<out>/image_encoder.pt``; returns the validation figures."""
    from tqdm import tqdm

    cfg = load_config(RunConfig, list(files), list(overrides))
    if cfg.model != "student":
        raise ConfigError(f"{files[0]}: pretraining needs a student config, not model {cfg.model!r}")
    if cfg.student.pretrained:
        raise ConfigError("pretrain starts from random weights: unset student.pretrained")
    out = Path(out)
    if (out / CHECKPOINT).exists():
        raise FileExistsError(f"{out / CHECKPOINT} exists; choose another --out or delete it")
    p = cfg.pretrain
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.tune_malloc:
        tune_malloc()
    torch.manual_seed(cfg.seed)
    train_ds = pretrain_dataset(cfg, train=True)
    if cfg.data.max_train_samples:
        train_ds = Subset(train_ds, range(min(cfg.data.max_train_samples, len(train_ds))))
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        train_ds, p.batch_size, shuffle=True, collate_fn=collate, drop_last=True, generator=gen
    )
    if len(loader) == 0:
        raise ConfigError(f"pretrain.batch_size {p.batch_size} exceeds the {len(train_ds)} training samples")
    has_masks = (Path(cfg.data.dataroot) / MASKS_DIR).is_dir()
    student = replace(cfg.student, image_pretrained="", pretrained="")
    net = ImagePretrainNet(student, *build_image_encoder(student), p.head_channels, p.heading_weight > 0)
    opt = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    total = len(loader) * p.epochs
    sched = build_scheduler(opt, OptimConfig(epochs=p.epochs, lr=p.lr), total, len(loader))
    out.mkdir(parents=True, exist_ok=True)
    cfg = replace(cfg, student=student)  # the checkpoint records a config that starts from random weights
    dump_config(cfg, out / "config.yaml")
    logger = RunLogger(out)
    print(
        f"pretrain: {len(train_ds)} train samples x 6 cameras, {p.epochs} epochs, {total} steps; "
        f"targets: depth, centres{', class masks' if has_masks else ' (no masks in this dataroot)'}",
        flush=True,
    )
    start, step = time.time(), 0
    net.train()
    bar = tqdm(total=total, desc="pretrain", unit="step", file=sys.stdout, mininterval=5, smoothing=0.05)
    for epoch in range(p.epochs):
        train_ds_base = getattr(train_ds, "dataset", train_ds)
        train_ds_base.set_epoch(epoch)
        gen.manual_seed(cfg.seed * 1000 + epoch)
        for batch in loader:
            losses = pretrain_losses(net, batch, cfg)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                bad = {k: float(v) for k, v in losses.items()}
                raise FloatingPointError(f"non-finite pretraining loss at step {step + 1}: {bad}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 35.0)
            opt.step()
            sched.step()
            step += 1
            bar.update()
            if step % cfg.log_every_steps == 0 or step == 1:
                scalars = {f"loss/{k}": float(v.detach()) for k, v in losses.items()}
                scalars["loss/total"] = float(loss.detach())
                logger.log(step, scalars, epoch=epoch)
                bar.set_postfix({k.split("/")[1]: f"{v:.3f}" for k, v in scalars.items()}, refresh=False)
    bar.close()
    minutes = (time.time() - start) / 60
    val_ds: Any = pretrain_dataset(cfg, train=False)
    if p.val_samples and p.val_samples < len(val_ds):
        val_ds = Subset(val_ds, range(p.val_samples))
    figures = pretrain_figures(net, DataLoader(val_ds, p.batch_size, collate_fn=collate), cfg)
    figures = {k: round(v, 4) for k, v in figures.items()}
    logger.log(step, {f"val/{k}": v for k, v in figures.items() if math.isfinite(v)})
    logger.close()
    provenance = {
        "command": " ".join(["distillbev", "pretrain", *map(str, sys.argv[2:])]) if sys.argv else "",
        "git_sha": git_sha(),
        "seed": cfg.seed,
        "world": world_record(cfg.data.dataroot),
        "split": cfg.data.train_split,
        "config": to_dict(cfg),
        "val_split": cfg.data.val_split,
        "val_figures": figures,
        "train_minutes": round(minutes, 2),
        "steps": step,
    }
    save_image_encoder(out / CHECKPOINT, net, provenance)
    (out / "metrics.json").write_text(json.dumps(figures | {"train_minutes": round(minutes, 2)}, indent=1))
    print(f"pretrain: {minutes:.1f} min; val figures {figures}", flush=True)
    print(f"image encoder saved to {out / CHECKPOINT} (set student.image_pretrained to use it)", flush=True)
    return figures
