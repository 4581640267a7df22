"""What the CLI commands do, as plain functions (the CLI only parses arguments and prints errors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distillbev.config import load_config
from distillbev.paths import CONFIGS


def resolve_dataset(dataroot: Path, version: str = "", split: str = "") -> tuple[str, str]:
    """Fill in the table version (the single ``v1.0-*`` folder) and the val split of a dataroot."""
    dataroot = Path(dataroot)
    if not dataroot.is_dir():
        raise FileNotFoundError(f"dataroot not found: {dataroot}")
    if not version:
        found = sorted(p.name for p in dataroot.iterdir() if p.is_dir() and p.name.startswith("v1.0-"))
        if len(found) != 1:
            raise ValueError(
                f"{dataroot} is not nuScenes-shaped or holds several versions "
                f"({found or 'no v1.0-* folder'}); "
                "pass --version"
            )
        version = found[0]
    if not split:
        if version.endswith("-mini"):
            split = "mini_val"
        elif version.endswith("-trainval"):
            split = "val"
        else:
            splits_file = dataroot / version / "splits.json"
            if not splits_file.is_file():
                raise FileNotFoundError(f"{splits_file} is missing: custom versions need it; or pass --split")
            names = [k for k in json.loads(splits_file.read_text()) if k.endswith("val")]
            if len(names) != 1:
                raise ValueError(f"cannot tell the val split among {names} in {splits_file}; pass --split")
            split = names[0]
    return version, split


def score_results(
    dataroot: Path, version: str, split: str, results: Path, out: Path | None
) -> dict[str, Any]:
    """Official metrics of a result JSON; the metrics JSON goes to ``out`` (or beside the results).
    Unwritable outputs fail before scoring."""
    from distillbev.eval.nuscenes_eval import evaluate
    from distillbev.io import check_writable, write_json

    results = Path(results)
    if not results.is_file():
        raise FileNotFoundError(f"results file not found: {results}")
    out_dir = results.parent / f"{results.stem}_eval"
    check_writable(out_dir, folder=True)
    if out is not None:
        check_writable(out)
    metrics = evaluate(dataroot, version, split, results, out_dir)
    if out is not None:
        write_json(out, metrics)
    return metrics


def gt_eval(dataroot: Path, out_dir: Path, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Score GT-derived and noisy 'predictions' on the val split (checks the evaluation end to end)."""
    from distillbev.eval.fake_predictions import NoiseSpec, gt_predictions
    from distillbev.eval.nuscenes_eval import evaluate, load_nuscenes
    from distillbev.eval.results import write_results

    version, split = resolve_dataset(dataroot)
    nusc = load_nuscenes(dataroot, version)
    out: dict[str, dict[str, Any]] = {}
    for name, noise in (("gt", None), ("noisy", NoiseSpec.typical())):
        path = out_dir / f"results_{name}.json"
        write_results(gt_predictions(nusc, split, noise, seed=seed), path)
        out[name] = evaluate(dataroot, version, split, path, out_dir / f"eval_{name}", nusc=nusc)
    return out


def render_sample(
    dataroot: Path, version: str, split: str, index: int, out: Path, results: Path | None
) -> list[Path]:
    """The camera mosaic and the BEV plot of one sample of a split."""
    from distillbev.eval.nuscenes_eval import load_nuscenes, split_sample_tokens
    from distillbev.viz.bev import render_bev
    from distillbev.viz.cameras import load_sample_for_viz, render_camera_mosaic

    version, split = resolve_dataset(dataroot, version, split)
    nusc = load_nuscenes(dataroot, version)
    tokens = split_sample_tokens(nusc, split)
    if not 0 <= index < len(tokens):
        raise IndexError(f"sample index {index} outside split {split!r} of {len(tokens)} samples")
    token = tokens[index]
    s = load_sample_for_viz(nusc, token)
    pred = _predictions_for(results, token, s) if results is not None else None
    out = Path(out)
    cams, bev = out / f"cameras_{index:04d}.png", out / f"bev_{index:04d}.png"
    render_camera_mosaic(
        s["images"], s["intrinsics"], s["cam2lidar"], s["gt_boxes"], s["gt_labels"], pred=pred, out_path=cams
    )
    render_bev(s["points"], s["gt_boxes"], s["gt_labels"], pred=pred, out_path=bev, title=f"{split} #{index}")
    return [cams, bev]


def _predictions_for(results: Path, token: str, sample: dict[str, Any]):
    """Boxes of one sample from a result JSON, moved into the sample's LiDAR frame."""
    import numpy as np
    from pyquaternion import Quaternion

    from distillbev.eval.results import load_results
    from distillbev.structures import class_index

    res = load_results(results)["results"].get(token, [])
    g2l = np.linalg.inv(sample["lidar2global"])
    boxes, scores, labels = [], [], []
    for r in res:
        c = g2l[:3, :3] @ np.asarray(r["translation"]) + g2l[:3, 3]
        rot = g2l[:3, :3] @ Quaternion(r["rotation"]).rotation_matrix
        yaw = float(np.arctan2(rot[1, 0], rot[0, 0]))
        v = g2l[:3, :3] @ np.array([*r["velocity"], 0.0])
        w, l, h = r["size"]
        boxes.append([*c, l, w, h, yaw, v[0], v[1]])
        labels.append(class_index(r["detection_name"]))
        scores.append(r["detection_score"])
    return (
        np.asarray(boxes, dtype=np.float64).reshape(-1, 9),
        np.asarray(scores, dtype=np.float64),
        np.asarray(labels, dtype=np.int64),
    )


def ensure_world(preset: str, out: Path, seed: int, overwrite: bool = False) -> Path:
    """Generate the synthetic world of a preset into ``out`` unless it is already there (``overwrite``:
    generate it again)."""
    from distillbev.data.synthetic.config import WorldConfig
    from distillbev.data.synthetic.generate import generate_world

    if (out / "world_config.yaml").is_file() and not overwrite:
        print(f"world already at {out}")
        return out
    cfg = load_config(WorldConfig, [CONFIGS / "data" / f"{preset}.yaml"])
    summary = generate_world(cfg, out, seed=seed, progress=True, overwrite=overwrite)
    print("generated:", " ".join(f"{k}={v}" for k, v in summary.items()))
    return out


#: Config keys that ``score_checkpoint`` takes from its own arguments (the ``eval`` options naming them).
SCORING_KEYS = {
    "data.dataroot": "give --dataroot",
    "data.version": "give --version",
    "data.val_split": "give --split",
    "data.max_val_samples": "the whole split is always scored",
}


def score_checkpoint(
    checkpoint: Path,
    dataroot: Path,
    version: str,
    split: str,
    out: Path | None,
    overrides: list[str],
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Run a checkpoint's model on a split and score it with the official metrics (results and metric
    files in ``out_dir``, by default ``eval_<split>`` beside ``out`` when given, else beside the
    checkpoint; empty version / split: the dataroot's single version and its val split)."""
    from dataclasses import replace

    from distillbev.io import check_writable, write_json
    from distillbev.train.checkpoint import load_model
    from distillbev.train.run import evaluate_model

    if not version or not split:
        version, split = resolve_dataset(Path(dataroot), version, split)
    if out_dir is None:  # a shipped checkpoint's folder (checkpoints/) is not written to when out is given
        out_dir = (Path(out).parent if out is not None else Path(checkpoint).parent) / f"eval_{split}"
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in SCORING_KEYS:
            raise ValueError(f"eval: --set {key} is not taken ({SCORING_KEYS[key]})")
    check_writable(out_dir, folder=True)
    if out is not None:
        check_writable(out)
    model, cfg, _ = load_model(checkpoint, overrides=overrides)
    # The whole split is scored: a training run's data.max_val_samples (a smoke setting) would leave the
    # samples after it unanswered, and the devkit would count their objects as misses.
    data = replace(cfg.data, dataroot=str(dataroot), version=version, val_split=split, max_val_samples=0)
    metrics = evaluate_model(model, replace(cfg, data=data), out_dir)
    if out is not None:
        write_json(out, metrics)
    return metrics
