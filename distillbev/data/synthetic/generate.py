"""``generate_world``: write the synthetic world in the nuScenes on-disk format.

Layout (what ``NuScenes(version, dataroot)`` reads): ``<version>/*.json`` (13 tables + splits.json),
``samples/<CHANNEL>/*.jpg|*.pcd.bin`` (key frames), ``sweeps/LIDAR_TOP/*.pcd.bin`` (non-key LiDAR),
``maps/synthetic.png``, plus ``masks/<CAM>/<image stem>.png|.json`` (2D instance masks: uint16 PNG, 0 =
no annotated object, k = entry ``id == k`` of the JSON's ``instances`` list) and ``world_config.yaml``.
Everything is a pure function of the config and the seed.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from nuscenes.utils.data_classes import Box
from nuscenes.utils.geometry_utils import points_in_box
from pyquaternion import Quaternion

from distillbev.config import dump_config
from distillbev.data.synthetic.config import WorldConfig
from distillbev.data.synthetic.scene import CLASS_SPECS, Scene, make_scene
from distillbev.data.synthetic.sensors import (
    CAMERA_RIG,
    camera_calibration,
    camera_visibility,
    lidar_calibration,
    render_camera,
    rot_z,
    simulate_lidar,
)
from distillbev.data.synthetic.tables import quat_matrix, quat_yaw, static_tables, token, visibility_token
from distillbev.io import atomic_path
from distillbev.structures import LIDAR_NAME

TABLES = (
    "attribute",
    "calibrated_sensor",
    "category",
    "ego_pose",
    "instance",
    "log",
    "map",
    "sample",
    "sample_data",
    "scene",
    "sensor",
    "visibility",
    "sample_annotation",
)
T0 = 1_533_000_000_000_000  # µs; scenes are 10 minutes apart
KEY_INTERVAL = 0.5  # s between key frames (2 Hz)
SWEEP_INTERVAL = 0.05  # s between LiDAR sweeps (20 Hz)


def _us(scene_index: int, t: float) -> int:
    return T0 + scene_index * 600_000_000 + int(round(t * 1e6))


def _write_scene(cfg: WorldConfig, root: Path, seed: int, si: int) -> dict[str, list[dict]]:
    """Generate scene ``si``: its files under ``root`` and its table rows."""
    rng = np.random.default_rng([seed, si])
    scene: Scene = make_scene(cfg, rng, si)
    name = f"scene-{si:04d}"
    log_tok = token(seed, "log", si)
    prefix = f"n015-synth-{si:04d}"
    rows: dict[str, list[dict]] = {k: [] for k in TABLES}
    rows["log"].append(
        {
            "token": log_tok,
            "logfile": prefix,
            "vehicle": "n015",
            "date_captured": "2018-08-01",
            "location": "synthetic-city",
        }
    )
    cs_tok = {}
    for ch in (*CAMERA_RIG, LIDAR_NAME):
        if ch == LIDAR_NAME:
            rot, trans = lidar_calibration()
            K = []
        else:
            K, rot, trans = camera_calibration(ch, cfg.image_width, cfg.image_height)
            K = K.tolist()
        cs_tok[ch] = token(seed, "cs", si, ch)
        rows["calibrated_sensor"].append(
            {
                "token": cs_tok[ch],
                "sensor_token": token("sensor", ch),
                "translation": [float(x) for x in trans],
                "rotation": quat_matrix(rot.tolist()),
                "camera_intrinsic": K,
            }
        )
    n_key = cfg.samples_per_scene
    sample_tok = [token(seed, "sample", si, k) for k in range(n_key)]
    # --- sample_data timeline per channel (key frames, and LiDAR sweeps before each key frame)
    timeline: dict[str, list[tuple[float, int, bool]]] = {ch: [] for ch in (*CAMERA_RIG, LIDAR_NAME)}
    for k in range(n_key):
        t = k * KEY_INTERVAL
        for j in range(cfg.sweeps_per_keyframe, 0, -1):
            timeline[LIDAR_NAME].append((t - j * SWEEP_INTERVAL, k, False))
        for ch in timeline:
            timeline[ch].append((t, k, True))
    keyframe_clouds: dict[int, np.ndarray] = {}
    for ch, events in timeline.items():
        toks = [token(seed, "sd", si, ch, i) for i in range(len(events))]
        for i, (t, k, key) in enumerate(events):
            ts = _us(si, t)
            ego_xyz, ego_yaw = scene.ego_pose(t)
            pose_tok = token(seed, "pose", si, ch, i)
            rows["ego_pose"].append(
                {
                    "token": pose_tok,
                    "timestamp": ts,
                    "rotation": quat_yaw(ego_yaw),
                    "translation": [float(x) for x in ego_xyz],
                }
            )
            folder = "samples" if key else "sweeps"
            stem = f"{prefix}__{ch}__{ts}"
            if ch == LIDAR_NAME:
                rel = f"{folder}/{ch}/{stem}.pcd.bin"
                cloud, _ = simulate_lidar(cfg, scene, t, np.random.default_rng([seed, si, i, 7]))
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                cloud.tofile(root / rel)
                if key:
                    keyframe_clouds[k] = cloud
                width = height = 0
                fmt = "pcd"
            else:
                rel = f"{folder}/{ch}/{stem}.jpg"
                thing_ids = _annotated_things(cfg, scene, t)
                ids = {th: n + 1 for n, th in enumerate(thing_ids)}
                img, mask = render_camera(cfg, scene, t, ch, ids)
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / rel), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
                _write_mask(root, ch, stem, mask, thing_ids, scene, seed, si, k)
                width, height, fmt = cfg.image_width, cfg.image_height, "jpg"
            rows["sample_data"].append(
                {
                    "token": toks[i],
                    "sample_token": sample_tok[k],
                    "ego_pose_token": pose_tok,
                    "calibrated_sensor_token": cs_tok[ch],
                    "filename": rel,
                    "fileformat": fmt,
                    "width": width,
                    "height": height,
                    "timestamp": ts,
                    "is_key_frame": key,
                    "prev": toks[i - 1] if i > 0 else "",
                    "next": toks[i + 1] if i + 1 < len(events) else "",
                }
            )
    for k in range(n_key):
        rows["sample"].append(
            {
                "token": sample_tok[k],
                "timestamp": _us(si, k * KEY_INTERVAL),
                "scene_token": token(seed, "scene", si),
                "prev": sample_tok[k - 1] if k else "",
                "next": sample_tok[k + 1] if k + 1 < n_key else "",
            }
        )
    _annotate(cfg, scene, seed, si, sample_tok, keyframe_clouds, rows)
    rows["scene"].append(
        {
            "token": token(seed, "scene", si),
            "name": name,
            "description": "synthetic street",
            "log_token": log_tok,
            "nbr_samples": n_key,
            "first_sample_token": sample_tok[0],
            "last_sample_token": sample_tok[-1],
        }
    )
    return rows


def _annotated_things(cfg: WorldConfig, scene: Scene, t: float) -> list[int]:
    """Indices of the things annotated at time ``t`` (detection objects within range of the ego)."""
    boxes, idx = scene.boxes_at(t, annotated_only=True)
    ego, _ = scene.ego_pose(t)
    near = np.hypot(boxes[:, 0] - ego[0], boxes[:, 1] - ego[1]) <= cfg.annotation_range
    return [i for i, ok in zip(idx, near, strict=True) if ok]


def _write_mask(
    root: Path,
    ch: str,
    stem: str,
    mask: np.ndarray,
    thing_ids: list[int],
    scene: Scene,
    seed: int,
    si: int,
    k: int,
) -> None:
    folder = root / "masks" / ch
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{stem}.png"), mask)
    inst = []
    for n, th in enumerate(thing_ids):
        det = scene.things[th].detection_name
        inst.append(
            {
                "id": n + 1,
                "annotation_token": token(seed, "ann", si, th, k),
                "instance_token": token(seed, "inst", si, th),
                "category_name": CLASS_SPECS[det][0],
                "detection_name": det,
            }
        )
    (folder / f"{stem}.json").write_text(json.dumps({"instances": inst}))


def _annotate(
    cfg: WorldConfig,
    scene: Scene,
    seed: int,
    si: int,
    sample_tok: list[str],
    clouds: dict[int, np.ndarray],
    rows: dict[str, list[dict]],
) -> None:
    """sample_annotation and instance rows; num_lidar_pts counted the devkit's way on the written cloud."""
    per_thing: dict[int, list[int]] = {}
    for k in range(len(sample_tok)):
        for th in _annotated_things(cfg, scene, k * KEY_INTERVAL):
            per_thing.setdefault(th, []).append(k)
    vis_at = {
        k: camera_visibility(cfg, scene, k * KEY_INTERVAL, [th for th, f in per_thing.items() if k in f])
        for k in range(len(sample_tok))
    }
    lidar_rows = {r["timestamp"]: r for r in rows["ego_pose"]}
    cs = next(r for r in rows["calibrated_sensor"] if r["token"] == token(seed, "cs", si, LIDAR_NAME))
    for th, frames in sorted(per_thing.items()):
        if len(frames) < 2:
            continue  # nuScenes velocity needs two annotations
        thing = scene.things[th]
        inst_tok = token(seed, "inst", si, th)
        ann_toks = [token(seed, "ann", si, th, k) for k in frames]
        for n, k in enumerate(frames):
            t = k * KEY_INTERVAL
            boxes, idx = scene.boxes_at(t, annotated_only=True)
            b = boxes[idx.index(th)]
            pose = lidar_rows[_us(si, t)]
            trans = [float(b[0]), float(b[1]), float(b[2])]
            rot = quat_yaw(float(b[6]))
            size = [float(b[4]), float(b[3]), float(b[5])]  # nuScenes: w, l, h
            box = Box(trans, size, Quaternion(rot))
            box.translate(-np.array(pose["translation"]))
            box.rotate(Quaternion(pose["rotation"]).inverse)
            box.translate(-np.array(cs["translation"]))
            box.rotate(Quaternion(cs["rotation"]).inverse)
            pts = clouds[k][:, :3].T
            rows["sample_annotation"].append(
                {
                    "token": ann_toks[n],
                    "sample_token": sample_tok[k],
                    "instance_token": inst_tok,
                    "attribute_tokens": [token("attribute", thing.attribute)] if thing.attribute else [],
                    "visibility_token": visibility_token(vis_at[k][th]),
                    "translation": trans,
                    "size": size,
                    "rotation": rot,
                    "num_lidar_pts": int(points_in_box(box, pts).sum()),
                    "num_radar_pts": 0,
                    "prev": ann_toks[n - 1] if n else "",
                    "next": ann_toks[n + 1] if n + 1 < len(frames) else "",
                }
            )
        rows["instance"].append(
            {
                "token": inst_tok,
                "category_token": token("category", CLASS_SPECS[thing.detection_name][0]),
                "nbr_annotations": len(frames),
                "first_annotation_token": ann_toks[0],
                "last_annotation_token": ann_toks[-1],
            }
        )


def generate_world(
    cfg: WorldConfig, out_dir: str | Path, seed: int = 0, progress: bool = False, overwrite: bool = False
) -> dict[str, Any]:
    """Generate the world into ``out_dir`` (written to a temporary folder, renamed at the end)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out_dir} exists and is not empty (pass overwrite=True / --overwrite to replace it)"
        )
    start = time.time()
    with atomic_path(out_dir) as root:
        root.mkdir()
        channels = [*CAMERA_RIG, LIDAR_NAME]
        rows: dict[str, list[dict]] = {k: [] for k in TABLES}
        for k, v in static_tables(channels).items():
            rows[k] = v
        scenes = range(cfg.num_scenes)
        if cfg.workers > 1:
            with ProcessPoolExecutor(cfg.workers) as pool:
                parts = list(
                    pool.map(
                        _write_scene, [cfg] * len(scenes), [root] * len(scenes), [seed] * len(scenes), scenes
                    )
                )
        else:
            parts = []
            for si in scenes:
                parts.append(_write_scene(cfg, root, seed, si))
                if progress:
                    print(f"  scene {si + 1}/{cfg.num_scenes} ({time.time() - start:.0f} s)", flush=True)
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
        cv2.imwrite(str(root / "maps" / "synthetic.png"), np.full((200, 200), 255, np.uint8))
        tables = root / cfg.version
        tables.mkdir()
        for name in TABLES:
            (tables / f"{name}.json").write_text(json.dumps(rows[name], indent=0))
        names = [r["name"] for r in rows["scene"]]
        n_val = cfg.num_val_scenes
        splits = {cfg.train_split: names[:-n_val], cfg.val_split: names[-n_val:]}
        (tables / "splits.json").write_text(json.dumps(splits, indent=1))
        dump_config(cfg, root / "world_config.yaml")
        size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    return {
        "scenes": cfg.num_scenes,
        "samples": len(rows["sample"]),
        "annotations": len(rows["sample_annotation"]),
        "megabytes": round(size / 2**20, 1),
        "seconds": round(time.time() - start, 1),
    }


__all__ = ["generate_world", "rot_z"]
