"""The sensor rig (nuScenes-like calibration), the spinning LiDAR and the camera renderer."""

from __future__ import annotations

import math

import numpy as np

from distillbev.data.synthetic.config import WorldConfig
from distillbev.data.synthetic.raycast import GROUND, SKY, cast
from distillbev.data.synthetic.scene import MATERIAL_INTENSITY, Scene

#: Camera -> ego: (yaw about z in degrees, translation), nuScenes n015-like; fx at 1600 px width.
CAMERA_RIG: dict[str, tuple[float, tuple[float, float, float], float]] = {
    "CAM_FRONT": (0.0, (1.70, 0.00, 1.51), 1266.4),
    "CAM_FRONT_RIGHT": (-55.0, (1.55, -0.49, 1.50), 1260.8),
    "CAM_FRONT_LEFT": (55.0, (1.52, 0.49, 1.51), 1272.6),
    "CAM_BACK": (180.0, (0.03, 0.00, 1.55), 809.2),
    "CAM_BACK_LEFT": (110.0, (1.04, 0.71, 1.56), 1256.7),
    "CAM_BACK_RIGHT": (-110.0, (1.05, -0.71, 1.56), 1259.5),
}
LIDAR_TRANSLATION = (0.943713, 0.0, 1.84023)
LIDAR_YAW = -math.pi / 2  # the LiDAR's x axis points to the ego's right, as on nuScenes' n015

# Camera axes (x right, y down, z forward) expressed in a forward-looking ego frame.
_CAM_AXES = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def rot_z(yaw: float) -> np.ndarray:
    """3x3 rotation about +z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def camera_calibration(name: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intrinsics K (3x3) at ``width`` x ``height``, and the camera -> ego rotation and translation."""
    yaw, trans, fx1600 = CAMERA_RIG[name]
    f = fx1600 * width / 1600.0
    K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
    return K, rot_z(math.radians(yaw)) @ _CAM_AXES, np.array(trans)


def lidar_calibration() -> tuple[np.ndarray, np.ndarray]:
    """LIDAR_TOP -> ego rotation and translation."""
    return rot_z(LIDAR_YAW), np.array(LIDAR_TRANSLATION)


def sensor_to_global(
    scene: Scene, t: float, rot: np.ndarray, trans: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and position of a sensor in the global frame at time ``t``."""
    ego_xyz, ego_yaw = scene.ego_pose(t)
    r_ego = rot_z(ego_yaw)
    return r_ego @ rot, r_ego @ trans + ego_xyz


def simulate_lidar(
    cfg: WorldConfig, scene: Scene, t: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One LiDAR rotation at time ``t``: points (N, 5) float32 x, y, z, intensity, ring in the LiDAR
    frame, and the owner thing index of each point (-1 for ground)."""
    rot, trans = lidar_calibration()
    r_g, o_g = sensor_to_global(scene, t, rot, trans)
    elev = np.radians(np.linspace(cfg.lidar_fov_down, cfg.lidar_fov_up, cfg.lidar_beams))
    az = np.linspace(-math.pi, math.pi, cfg.lidar_azimuth_steps, endpoint=False)
    ee, aa = np.meshgrid(elev, az, indexing="ij")  # (beams, steps)
    local = np.stack([np.cos(ee) * np.cos(aa), np.cos(ee) * np.sin(aa), np.sin(ee)], -1).reshape(-1, 3)
    ring = np.repeat(np.arange(cfg.lidar_beams), cfg.lidar_azimuth_steps)
    boxes = scene.render_boxes(t)
    hits = cast(o_g, local @ r_g.T, boxes, cfg.lidar_max_range)
    keep = (hits.hit != SKY) & (rng.random(len(local)) >= cfg.lidar_dropout)
    rng_t = hits.t[keep] + rng.normal(0, cfg.lidar_range_noise, keep.sum())
    pts = local[keep] * rng_t[:, None]  # in the LiDAR frame (directions were local)
    hit = hits.hit[keep]
    mat = np.where(hit >= 0, boxes["material"][np.maximum(hit, 0)], -1)
    intensity = np.where(
        mat >= 0, MATERIAL_INTENSITY[np.maximum(mat, 0)], _ground_intensity(scene, pts, r_g, o_g)
    )
    intensity = np.clip(intensity * rng.uniform(0.8, 1.2, len(pts)), 0, 255)
    owner = np.where(hit >= 0, boxes["owner"][np.maximum(hit, 0)], -1)
    cloud = np.concatenate([pts, intensity[:, None], ring[keep][:, None]], 1).astype(np.float32)
    return cloud, owner


def _road_coords(scene: Scene, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(scene.yaw), math.sin(scene.yaw)
    rel = xy - scene.origin
    return rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c


def _ground_kind(scene: Scene, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Road-frame (s, d) of ground points and whether each is a painted lane marking."""
    s, d = _road_coords(scene, xy)
    ad = np.abs(d)
    dashed = (np.abs(np.abs(ad - 3.5)) < 0.08) & ((s % 9.0) < 4.5)
    solid = (np.abs(ad - 7.0) < 0.1) | (ad < 0.09)
    return s, d, dashed | solid


def _ground_intensity(scene: Scene, pts: np.ndarray, r_g: np.ndarray, o_g: np.ndarray) -> np.ndarray:
    xy = (pts @ r_g.T + o_g)[:, :2]
    _, d, marking = _ground_kind(scene, xy)
    ad = np.abs(d)
    base = np.where(ad < 9.5, 8.0, np.where(ad < 12.5, 25.0, 12.0))
    return np.where(marking, 90.0, base)


def _hash_noise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) from integer lattice coordinates."""
    v = np.sin(a * 12.9898 + b * 78.233) * 43758.5453
    return v - np.floor(v)


def _ground_color(scene: Scene, xy: np.ndarray) -> np.ndarray:
    s, d, marking = _ground_kind(scene, xy)
    ad = np.abs(d)
    fine = _hash_noise(np.floor(s * 3), np.floor(d * 3))[:, None]
    coarse = _hash_noise(np.floor(s / 2), np.floor(d / 2))[:, None]
    road = np.array([0.32, 0.32, 0.34]) * (0.85 + 0.2 * fine)
    walk = np.array([0.62, 0.6, 0.56]) * (0.9 + 0.1 * fine) * np.where((s % 2.0) < 0.05, 0.7, 1.0)[:, None]
    grass = np.array([0.25, 0.45, 0.18]) * (0.7 + 0.3 * coarse + 0.15 * fine)
    col = np.where((ad < 9.5)[:, None], road, np.where((ad < 12.5)[:, None], walk, grass))
    return np.where(marking[:, None], np.array([0.92, 0.92, 0.9]), col)


def render_camera(
    cfg: WorldConfig, scene: Scene, t: float, name: str, annotated: dict[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Render one camera at time ``t``: an RGB uint8 image (H, W, 3) and an instance-id mask (H, W)
    uint16 where ``annotated`` maps a thing index to its id (>= 1); 0 elsewhere."""
    w, h = cfg.image_width, cfg.image_height
    K, rot, trans = camera_calibration(name, w, h)
    r_g, o_g = sensor_to_global(scene, t, rot, trans)
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], 1)
    d_cam = pix @ np.linalg.inv(K).T
    d_cam /= np.linalg.norm(d_cam, axis=1, keepdims=True)
    dirs = d_cam @ r_g.T
    boxes = scene.render_boxes(t)
    hits = cast(o_g, dirs, boxes, 250.0, bins=720)
    p = o_g + dirs * np.where(np.isfinite(hits.t), hits.t, 0.0)[:, None]
    col = np.empty((len(dirs), 3))
    sky = hits.hit == SKY
    elev = np.clip(dirs[:, 2], 0, 1)[:, None]
    col[sky] = scene.sky * (1 - 0.5 * elev[sky]) + np.array([0.15, 0.15, 0.2]) * elev[sky]
    ground = hits.hit == GROUND
    col[ground] = _ground_color(scene, p[ground, :2])
    obj = hits.hit >= 0
    k = hits.hit[obj]
    base = boxes["color"][k].astype(np.float64)
    stripe = (boxes["material"][k] == 3) & (np.floor(p[obj, 2] * 4) % 2 == 1)  # barrier stripes (red/white)
    base[stripe] = (0.85, 0.1, 0.1)
    windows = (
        (boxes["material"][k] == 4)
        & (_hash_noise(np.floor(p[obj, 0] / 3), np.floor(p[obj, 2] / 3)) > 0.4)
        & ((p[obj, 2] % 3.0) > 1.0)
        & (np.abs(hits.normal[obj, 2]) < 0.5)
    )
    base[windows] *= 0.45
    col[obj] = base
    lit = np.ones(len(dirs))
    lit[obj] = scene.ambient + (1 - scene.ambient) * np.clip(hits.normal[obj] @ scene.sun, 0, 1)
    lit[ground] = scene.ambient + (1 - scene.ambient) * scene.sun[2]
    # Distance haze, then the scene's tint.
    haze = np.clip(np.where(np.isfinite(hits.t), hits.t, 250.0) / 250.0, 0, 1)[:, None] * 0.5
    col = (col * lit[:, None]) * (1 - haze) + scene.sky * haze
    img = np.clip(col * scene.tint * 255, 0, 255).astype(np.uint8).reshape(h, w, 3)
    ids = np.zeros(len(dirs), dtype=np.uint16)
    owner = np.where(obj, boxes["owner"][np.maximum(hits.hit, 0)], -1)
    for thing, inst_id in annotated.items():
        ids[owner == thing] = inst_id
    return img, ids.reshape(h, w)


def camera_visibility(cfg: WorldConfig, scene: Scene, t: float, things: list[int]) -> dict[int, float]:
    """Fraction of each annotated thing's rays (over the 6 cameras, at a coarse resolution) that see
    it first, used for the nuScenes visibility level."""
    vis = {i: 0 for i in things}
    cross = {i: 0 for i in things}
    w, h = max(cfg.image_width // 4, 16), max(cfg.image_height // 4, 9)
    boxes = scene.render_boxes(t)
    owner = boxes["owner"]
    for name in CAMERA_RIG:
        K, rot, trans = camera_calibration(name, w, h)
        r_g, o_g = sensor_to_global(scene, t, rot, trans)
        u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        d = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], 1) @ np.linalg.inv(K).T
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        hits = cast(o_g, d @ r_g.T, boxes, 250.0)
        for i in things:
            parts = owner == i
            vis[i] += int(hits.visible_rays[parts].sum())
            cross[i] += int(hits.crossing_rays[parts].sum())
    return {i: (vis[i] / cross[i] if cross[i] else 0.0) for i in things}
