"""LIDAR_TOP: a 32-beam spinning LiDAR simulated by ray casting the scene at one timestamp.

Each sweep casts ``lidar_beams x lidar_azimuth_steps`` rays (evenly spaced elevations from
``lidar_fov_down`` to ``lidar_fov_up``) against the ground, the objects and the distractors. A return
keeps the first hit within range; it is lost with probability ``lidar_dropout`` (plus a per-material
extra: glass, tyres, foliage), its range gets Gaussian noise, and its intensity is the material's
reflectivity times a Lambertian incidence factor, with multiplicative noise. Points are written in
firing order (azimuth-major) as float32 ``x, y, z, intensity, ring`` in the LiDAR frame; ring 0 is the
lowest beam.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from distillbev.data.synthetic.calibration import lidar_extrinsic, sensor_to_global
from distillbev.data.synthetic.config import WorldConfig
from distillbev.data.synthetic.layout import Scene
from distillbev.data.synthetic.materials import LIDAR_EXTRA_DROPOUT, LIDAR_REFLECTIVITY
from distillbev.data.synthetic.raycast import (
    GROUND,
    SKY,
    Culling,
    cast_grid,
    ground_hits,
    spherical_rects,
    split_wrapped,
    surface_normals,
)
from distillbev.data.synthetic.road import GROUND_INTENSITY


@lru_cache(maxsize=4)
def beam_grid(beams: int, fov_down: float, fov_up: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Elevations (B,) ascending (rad) and unit ray directions (B, A, 3) in the LiDAR frame."""
    elev = np.radians(np.linspace(fov_down, fov_up, beams))
    az = -np.pi + 2 * np.pi * np.arange(steps) / steps
    ee, aa = np.meshgrid(elev, az, indexing="ij")
    dirs = np.stack([np.cos(ee) * np.cos(aa), np.cos(ee) * np.sin(aa), np.sin(ee)], -1)
    dirs.setflags(write=False)
    return elev, dirs


def simulate_lidar(
    cfg: WorldConfig, scene: Scene, t: float, owner_parts: dict[int, np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One LiDAR rotation at time ``t``: points (N, 5) float32 (x, y, z, intensity, ring) in the LiDAR
    frame, and the scene object each point hit (N,) (-1 for the ground)."""
    elev, local = beam_grid(cfg.lidar_beams, cfg.lidar_fov_down, cfg.lidar_fov_up, cfg.lidar_azimuth_steps)
    rot, trans = lidar_extrinsic()
    ego_xy, ego_yaw = scene.ego_pose(t)
    r_g, origin = sensor_to_global(ego_xy, ego_yaw, rot, trans)
    dirs = local @ r_g.T  # (B, A, 3) global
    t_hit = ground_hits(origin, dirs, cfg.lidar_max_range)
    prim = np.where(np.isfinite(t_hit), GROUND, SKY)
    parts = scene.parts_at(t)
    boxes = scene.boxes_at(t)  # (N, 7) global
    steps = cfg.lidar_azimuth_steps

    def rects_of(center: np.ndarray, half: np.ndarray) -> np.ndarray:
        rel = (center[:, :2] - origin[:2]) @ r_g[:2, :2]  # LiDAR frame xy (the LiDAR is level)
        z_range = np.stack([center[:, 2] - half[:, 2], center[:, 2] + half[:, 2]], 1) - origin[2]
        return spherical_rects(
            rel, np.hypot(half[:, 0], half[:, 1]), z_range, elev, steps, cfg.lidar_max_range
        )

    rects = rects_of(boxes[:, :3], boxes[:, 3:6] / 2)
    dist = np.hypot(boxes[:, 0] - origin[0], boxes[:, 1] - origin[1]) - np.hypot(boxes[:, 3], boxes[:, 4]) / 2
    order = np.argsort(dist, kind="stable")
    owner_rects = {int(i): split_wrapped(rects[i], steps) for i in order}
    owner_rects = {i: r for i, r in owner_rects.items() if r}
    cull = Culling(part_rects=rects_of(parts.center, parts.half), wrap=steps, near=dist - 0.5)
    cast_grid(origin, dirs, parts, owner_parts, owner_rects, t_hit, prim, cull)

    keep = (prim != SKY) & (t_hit <= cfg.lidar_max_range) & (t_hit >= cfg.lidar_min_range)
    obj = prim >= 0
    material = np.where(obj, parts.material[np.maximum(prim, 0)], -1)
    drop = cfg.lidar_dropout + np.where(obj, LIDAR_EXTRA_DROPOUT[np.maximum(material, 0)], 0.0)
    keep &= rng.random(prim.shape) >= drop
    # Firing order: azimuth-major.
    keep_t, prim_t, dirs_t = keep.T, prim.T, dirs.transpose(1, 0, 2)
    ring = np.broadcast_to(np.arange(cfg.lidar_beams), keep_t.shape)[keep_t]
    p = prim_t[keep_t]
    d_glob = dirs_t[keep_t]
    d_local = local.transpose(1, 0, 2)[keep_t]
    rng_t = t_hit.T[keep_t]
    hit_global = origin + d_glob * rng_t[:, None]

    cos_inc = np.abs(d_glob[:, 2])  # ground normal is +z
    reflect = np.empty(len(p))
    ground = p == GROUND
    if ground.any():
        s, d = scene.road.to_road(hit_global[ground, 0], hit_global[ground, 1])
        reflect[ground] = GROUND_INTENSITY[scene.road.ground_class(s, d)]
    on_obj = ~ground
    if on_obj.any():
        normals = surface_normals(parts, p[on_obj], hit_global[on_obj])
        cos_inc[on_obj] = np.abs((normals * d_glob[on_obj]).sum(1))
        reflect[on_obj] = LIDAR_REFLECTIVITY[parts.material[p[on_obj]]]
    intensity = (
        reflect * (0.3 + 0.7 * cos_inc) * (1 + cfg.lidar_intensity_noise * rng.standard_normal(len(p)))
    )
    noisy = rng_t + cfg.lidar_range_noise * rng.standard_normal(len(p))
    xyz = d_local * noisy[:, None]
    cloud = np.concatenate([xyz, np.clip(intensity, 0, 255)[:, None], ring[:, None]], 1).astype(np.float32)
    owner = np.where(ground, -1, parts.owner[np.maximum(p, 0)])
    return cloud, owner
