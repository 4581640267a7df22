"""``generate_world``: write the synthetic world in the nuScenes on-disk format.

Layout (what ``NuScenes(version, dataroot)`` reads): ``<version>/*.json`` (13 tables + splits.json),
``samples/<CHANNEL>/`` (key frames: ``.jpg`` images, ``.pcd.bin`` LiDAR), ``sweeps/LIDAR_TOP/`` (non-key
LiDAR), ``maps/synthetic.png``; plus ``masks/<CAM>/<image stem>.png|.json`` (2D instance masks, see
docs/synthetic_world.md) and ``world_config.yaml``. Everything is a pure function of the config and
the seed: scene ``i`` draws from ``numpy.random.default_rng([seed, i])``, so the bytes do not depend
on ``workers``.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from distillbev.config import dump_config
from distillbev.data.synthetic.config import WorldConfig
from distillbev.data.synthetic.scene_writer import write_scene
from distillbev.data.synthetic.tables import TABLES, static_tables, token
from distillbev.io import atomic_path, check_output_folder, check_writable


def _map_png() -> np.ndarray:
    """A small valid map mask (the devkit reads it only to draw map underlays)."""
    img = np.full((200, 200), 255, np.uint8)
    img[90:110, :] = 0
    return img


def generate_world(
    cfg: WorldConfig,
    out_dir: str | Path,
    seed: int = 0,
    progress: bool = False,
    overwrite: bool = False,
    scenes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Generate the world of ``cfg`` and ``seed`` into ``out_dir``.

    Written into a temporary folder beside ``out_dir`` and renamed at the end, so a crash or an
    interruption never leaves a half-written dataset (nor the temporary folder). A non-empty ``out_dir``
    is refused unless ``overwrite``, and even then unless it is a dataset or run folder (``io.output_kind``).
    ``seed`` must be >= 0. ``scenes`` writes only those scene indices (each scene is a pure function of
    ``cfg``, ``seed`` and its index, so they equal the full world's; the splits keep the full world's
    rule: the last ``num_val_scenes`` indices are val), e.g. the val split alone. Returns a summary:
    scenes, samples, annotations, bytes (and megabytes) on
    disk, seconds.
    """
    out_dir = Path(out_dir)
    if seed < 0:
        raise ValueError(f"seed must be >= 0 (numpy seeds are non-negative), got {seed}")
    check_output_folder(
        out_dir, overwrite, ("dataset", "run"), "pass overwrite=True / --overwrite to replace it"
    )
    check_writable(out_dir, folder=True)
    start = time.time()

    def _progress(si: int) -> None:
        if progress:
            print(f"  scene {si + 1}/{len(scenes)} ({time.time() - start:.0f} s)", flush=True)

    with atomic_path(out_dir) as root:
        root.mkdir()
        wanted = list(range(cfg.num_scenes)) if scenes is None else sorted(set(scenes))
        if not wanted or min(wanted) < 0 or max(wanted) >= cfg.num_scenes:
            raise ValueError(f"scenes {scenes} must be indices in 0..{cfg.num_scenes - 1}")
        scenes = wanted
        parts: list[dict[str, list[dict]]] = []
        if cfg.workers > 1:
            # "spawn": a parent that already runs threads (torch, OpenMP) cannot fork safely.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(cfg.workers, len(scenes)), mp_context=ctx) as pool:
                futures = [pool.submit(write_scene, cfg, root, seed, si) for si in scenes]
                try:
                    for si, fut in enumerate(futures):
                        parts.append(fut.result())
                        _progress(si)
                except BaseException:
                    # Interrupted or failed: drop queued scenes and let running ones end before the
                    # temporary folder is removed (else a worker could write into it afterwards).
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        else:
            for si in scenes:
                parts.append(write_scene(cfg, root, seed, si))
                _progress(si)
        rows: dict[str, list[dict]] = {k: [] for k in TABLES}
        rows.update(static_tables())
        for part in parts:
            for k, v in part.items():
                rows[k].extend(v)
        rows["map"] = [
            {
                "token": token(seed, "map"),
                "log_tokens": [r["token"] for r in rows["log"]],
                "category": "semantic_prior",
                "filename": "maps/synthetic.png",
            }
        ]
        (root / "maps").mkdir()
        cv2.imwrite(str(root / "maps" / "synthetic.png"), _map_png())
        tables = root / cfg.version
        tables.mkdir()
        for name in TABLES:
            (tables / f"{name}.json").write_text(json.dumps(rows[name], indent=0))
        names = [r["name"] for r in rows["scene"]]  # in scene-index order
        first_val = cfg.num_scenes - cfg.num_val_scenes
        splits = {
            cfg.train_split: [n for n, si in zip(names, scenes, strict=True) if si < first_val],
            cfg.val_split: [n for n, si in zip(names, scenes, strict=True) if si >= first_val],
        }
        (tables / "splits.json").write_text(json.dumps(splits, indent=1))
        dump_config(cfg, root / "world_config.yaml")
        size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    return {
        "scenes": len(scenes),
        "samples": len(rows["sample"]),
        "annotations": len(rows["sample_annotation"]),
        "bytes": size,
        "megabytes": round(size / 2**20, 1),
        "seconds": round(time.time() - start, 1),
    }
