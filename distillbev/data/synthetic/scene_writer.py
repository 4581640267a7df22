"""Write one scene: its LiDAR sweeps, camera images, instance masks and all its table rows.

Timeline of a scene (t = 0 at key frame 0): key frames every 0.5 s; before each key frame
``sweeps_per_keyframe`` LiDAR sweeps 0.05 s apart (sweeps/LIDAR_TOP); the six cameras fire a few ms
before the key-frame sweep. Every sample_data row has its own ego_pose at its own timestamp, and each
sensor sees the world at that timestamp.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from distillbev.data.synthetic.annotate import attribute, count_points_in_boxes
from distillbev.data.synthetic.calibration import (
    CAMERA_TIME_OFFSETS,
    camera_extrinsic,
    camera_intrinsic,
    camera_quaternion,
    lidar_extrinsic,
    matrix_to_quat,
    yaw_quat,
)
from distillbev.data.synthetic.camera import render_camera
from distillbev.data.synthetic.config import WorldConfig
from distillbev.data.synthetic.layout import Scene
from distillbev.data.synthetic.lidar import simulate_lidar
from distillbev.data.synthetic.placement import KEY_INTERVAL, SWEEP_INTERVAL, make_scene
from distillbev.data.synthetic.tables import CHANNELS, TABLES, token, visibility_token
from distillbev.structures import CAMERA_NAMES, LIDAR_NAME

T0 = 1_533_081_600_000_000  # µs (2018-08-01); scenes start 10 minutes apart


def timestamp(scene_index: int, t: float) -> int:
    """Integer µs timestamp of scene time ``t`` (s)."""
    return T0 + scene_index * 600_000_000 + int(round(t * 1e6))


def annotated_frames(cfg: WorldConfig, scene: Scene) -> dict[int, list[int]]:
    """Key frames at which each annotated thing is within ``annotation_range`` of the ego; things seen
    at fewer than 2 key frames are left out (nuScenes velocities need two annotations)."""
    frames: dict[int, list[int]] = {}
    annotated = np.array([bool(th.category) for th in scene.things])
    for k in range(cfg.samples_per_scene):
        t = k * KEY_INTERVAL
        ego, _ = scene.ego_pose(t)
        x, y, _ = scene.poses(t)
        for i in np.nonzero(annotated & (np.hypot(x - ego[0], y - ego[1]) <= cfg.annotation_range))[0]:
            frames.setdefault(int(i), []).append(k)
    return {i: f for i, f in frames.items() if len(f) >= 2}


def write_scene(cfg: WorldConfig, root: Path, seed: int, si: int) -> dict[str, list[dict]]:
    """Generate scene ``si`` of the world of ``seed``: write its files under ``root``, return its rows."""
    scene = make_scene(cfg, np.random.default_rng([seed, si]))
    owner_parts = scene.owner_parts()
    rows: dict[str, list[dict]] = {k: [] for k in TABLES}
    prefix = f"n015-synthetic-{seed}-{si:04d}"
    log_tok, scene_tok = token(seed, "log", si), token(seed, "scene", si)
    rows["log"].append(
        {
            "token": log_tok,
            "logfile": prefix,
            "vehicle": "n015",
            "date_captured": "2018-08-01",
            "location": "synthetic-city",
        }
    )
    cs_rows = {}
    for ch in CHANNELS:
        if ch == LIDAR_NAME:
            rot, trans = lidar_extrinsic()
            quat, K = matrix_to_quat(rot), []
        else:
            _, trans = camera_extrinsic(ch)
            quat, K = camera_quaternion(ch), camera_intrinsic(ch, cfg.image_width, cfg.image_height).tolist()
        cs_rows[ch] = {
            "token": token(seed, "cs", si, ch),
            "sensor_token": token("sensor", ch),
            "translation": [float(v) for v in trans],
            "rotation": quat,
            "camera_intrinsic": K,
        }
    rows["calibrated_sensor"] = list(cs_rows.values())

    n_key = cfg.samples_per_scene
    sample_tok = [token(seed, "sample", si, k) for k in range(n_key)]
    frames = annotated_frames(cfg, scene)
    ids_at = {k: [i for i, f in sorted(frames.items()) if k in f] for k in range(n_key)}
    ann_tok = {(i, k): token(seed, "ann", si, i, k) for i, f in frames.items() for k in f}
    inst_tok = {i: token(seed, "inst", si, i) for i in frames}

    # Sensor events per channel, in time order: (time, key frame, is_key_frame).
    events: dict[str, list[tuple[float, int, bool]]] = {ch: [] for ch in CHANNELS}
    for k in range(n_key):
        t = k * KEY_INTERVAL
        events[LIDAR_NAME] += [
            (t - j * SWEEP_INTERVAL, k, False) for j in range(cfg.sweeps_per_keyframe, 0, -1)
        ]
        events[LIDAR_NAME].append((t, k, True))
        for cam in CAMERA_NAMES:
            events[cam].append((t + (CAMERA_TIME_OFFSETS[cam] if cfg.camera_time_offsets else 0.0), k, True))
    key_cloud: dict[int, np.ndarray] = {}
    lidar_pose: dict[int, dict] = {}
    visible = {k: {} for k in range(n_key)}
    crossing = {k: {} for k in range(n_key)}
    for c, ch in enumerate(CHANNELS):
        toks = [token(seed, "sd", si, ch, n) for n in range(len(events[ch]))]
        for n, (t, k, key) in enumerate(events[ch]):
            ts = timestamp(si, t)
            ego_xy, ego_yaw = scene.ego_pose(t)
            pose = {
                "token": token(seed, "pose", si, ch, n),
                "timestamp": ts,
                "rotation": yaw_quat(ego_yaw),
                "translation": [float(ego_xy[0]), float(ego_xy[1]), 0.0],
            }
            rows["ego_pose"].append(pose)
            stem = f"{prefix}__{ch}__{ts}"
            rng = np.random.default_rng([seed, si, c, n])
            if ch == LIDAR_NAME:
                filename = f"{'samples' if key else 'sweeps'}/{ch}/{stem}.pcd.bin"
                cloud, _ = simulate_lidar(cfg, scene, t, owner_parts, rng)
                (root / filename).parent.mkdir(parents=True, exist_ok=True)
                cloud.tofile(root / filename)
                if key:
                    key_cloud[k], lidar_pose[k] = cloud, pose
                width = height = 0
            else:
                filename = f"samples/{ch}/{stem}.jpg"
                ids = {i: j + 1 for j, i in enumerate(ids_at[k])}
                frame = render_camera(cfg, scene, t, ch, owner_parts, ids, rng)
                (root / filename).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(
                    str(root / filename), frame.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]
                )
                _write_mask(root / "masks" / ch, stem, frame.mask, ids_at[k], scene, ann_tok, inst_tok, k)
                for i in ids_at[k]:
                    visible[k][i] = visible[k].get(i, 0) + frame.visible.get(i, 0)
                    crossing[k][i] = crossing[k].get(i, 0) + frame.crossing.get(i, 0)
                width, height = cfg.image_width, cfg.image_height
            rows["sample_data"].append(
                {
                    "token": toks[n],
                    "sample_token": sample_tok[k],
                    "ego_pose_token": pose["token"],
                    "calibrated_sensor_token": cs_rows[ch]["token"],
                    "filename": filename,
                    "fileformat": "pcd" if ch == LIDAR_NAME else "jpg",
                    "width": width,
                    "height": height,
                    "timestamp": ts,
                    "is_key_frame": key,
                    "prev": toks[n - 1] if n else "",
                    "next": toks[n + 1] if n + 1 < len(toks) else "",
                }
            )
    for k in range(n_key):
        rows["sample"].append(
            {
                "token": sample_tok[k],
                "timestamp": timestamp(si, k * KEY_INTERVAL),
                "scene_token": scene_tok,
                "prev": sample_tok[k - 1] if k else "",
                "next": sample_tok[k + 1] if k + 1 < n_key else "",
            }
        )
    # Annotations, key frame by key frame; num_lidar_pts counted on the written key-frame cloud.
    by_key: dict[int, list[dict]] = {}
    for k in range(n_key):
        boxes = scene.boxes_at(k * KEY_INTERVAL)
        for i in ids_at[k]:
            x, y, z, l, w, h, yaw = (float(v) for v in boxes[i])
            f = frames[i]
            n = f.index(k)
            attr = attribute(scene, i, k * KEY_INTERVAL)
            vis = visible[k].get(i, 0) / crossing[k][i] if crossing[k].get(i) else 0.0
            by_key.setdefault(k, []).append(
                {
                    "token": ann_tok[(i, k)],
                    "sample_token": sample_tok[k],
                    "instance_token": inst_tok[i],
                    "attribute_tokens": [token("attribute", attr)] if attr else [],
                    "visibility_token": visibility_token(vis),
                    "translation": [x, y, z],
                    "size": [w, l, h],
                    "rotation": yaw_quat(yaw),
                    "num_lidar_pts": 0,
                    "num_radar_pts": 0,
                    "prev": ann_tok[(i, f[n - 1])] if n else "",
                    "next": ann_tok[(i, f[n + 1])] if n + 1 < len(f) else "",
                }
            )
        if by_key.get(k):
            counts = count_points_in_boxes(key_cloud[k], by_key[k], lidar_pose[k], cs_rows[LIDAR_NAME])
            for ann, c in zip(by_key[k], counts, strict=True):
                ann["num_lidar_pts"] = c
            rows["sample_annotation"] += by_key[k]
    for i, f in sorted(frames.items()):
        rows["instance"].append(
            {
                "token": inst_tok[i],
                "category_token": token("category", scene.things[i].category),
                "nbr_annotations": len(f),
                "first_annotation_token": ann_tok[(i, f[0])],
                "last_annotation_token": ann_tok[(i, f[-1])],
            }
        )
    rows["scene"].append(
        {
            "token": scene_tok,
            "name": f"scene-{si:04d}",
            "description": scene.description,
            "log_token": log_tok,
            "nbr_samples": n_key,
            "first_sample_token": sample_tok[0],
            "last_sample_token": sample_tok[-1],
        }
    )
    return rows


def _write_mask(
    folder: Path,
    stem: str,
    mask: np.ndarray,
    things: list[int],
    scene: Scene,
    ann_tok: dict,
    inst_tok: dict,
    k: int,
) -> None:
    """``<stem>.png`` (uint16 ids) and ``<stem>.json`` (id -> annotation) of one image."""
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{stem}.png"), mask)
    inst = [
        {
            "id": j + 1,
            "annotation_token": ann_tok[(i, k)],
            "instance_token": inst_tok[i],
            "category_name": scene.things[i].category,
            "detection_name": scene.things[i].name,
        }
        for j, i in enumerate(things)
    ]
    (folder / f"{stem}.json").write_text(json.dumps({"instances": inst}))
