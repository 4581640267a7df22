"""Camera images and 2D instance masks, rendered by ray casting one ray per pixel.

Shading: textured ground (asphalt with tyre tracks, lane markings, curb, sidewalk slabs, grass or
paving, parking-lot bays), per-part albedo with building windows and foliage texture, Lambert shading
from the scene's sun plus ambient light, sun shadows of objects on the ground, sky reflections on
glass and paint, a sky gradient, distance haze, a colour tint and sensor noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from distillbev.data.synthetic import road as rd
from distillbev.data.synthetic.calibration import camera_extrinsic, camera_intrinsic, sensor_to_global
from distillbev.data.synthetic.config import WorldConfig
from distillbev.data.synthetic.layout import Scene
from distillbev.data.synthetic.materials import EMISSIVE, SHINE, Material
from distillbev.data.synthetic.raycast import (
    GROUND,
    SKY,
    Culling,
    Parts,
    box_corners,
    cast_grid,
    ground_hits,
    occluded,
    pinhole_rects,
    surface_normals,
)

#: Objects covering at most this many pixels (with a 1-pixel margin) are drawn as their tight box in
#: the colour of their largest part: at that size their parts are not resolved anyway.
LOD_AREA = 48


@dataclass
class CameraFrame:
    """One rendered image with its instance mask and per-object pixel counts."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) uint16: 0 = no annotated object, k = ids[k]
    visible: dict[int, int]  # scene object -> pixels where it is the nearest surface
    crossing: dict[int, int]  # scene object -> pixels whose ray crosses it (occluded or not)


@lru_cache(maxsize=16)
def pixel_rays(name: str, width: int, height: int) -> np.ndarray:
    """Unit ray directions (H, W, 3) in the camera frame through the pixel centres."""
    K = camera_intrinsic(name, width, height)
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d = (d / np.linalg.norm(d, axis=-1, keepdims=True)).astype(np.float32)
    d.setflags(write=False)
    return d


@lru_cache(maxsize=4)
def _noise_image(height: int, width: int) -> np.ndarray:
    """A fixed field of unit Gaussian sensor noise (H, W, 3); images use it at a random offset."""
    noise = np.random.default_rng(12345).standard_normal((height, width, 3)).astype(np.float32)
    noise.setflags(write=False)
    return noise


def _noise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Deterministic value noise in [0, 1) on the integer lattice (a, b)."""
    v = np.sin(a * 12.9898 + b * 78.233) * 43758.5453
    return v - np.floor(v)


GROUND_RGB = {
    rd.ASPHALT: (0.3, 0.3, 0.32),
    rd.CURB: (0.72, 0.71, 0.68),
    rd.SIDEWALK: (0.62, 0.6, 0.57),
    rd.GRASS: (0.24, 0.42, 0.16),
    rd.PAVING: (0.58, 0.52, 0.46),
    rd.LOT: (0.27, 0.27, 0.29),
}


def ground_albedo(scene: Scene, xy: np.ndarray) -> np.ndarray:
    """RGB albedo (K, 3) of ground points ``xy`` (K, 2)."""
    road = scene.road
    s, d = road.to_road(xy[:, 0], xy[:, 1])
    cls = road.ground_class(s, d)
    fine = _noise(np.floor(s * 4), np.floor(d * 4))
    coarse = _noise(np.floor(s / 3), np.floor(d / 3))
    col = np.zeros((len(s), 3))
    for k, rgb in GROUND_RGB.items():
        sel = cls == k
        col[sel] = rgb
    ad = np.abs(d)
    tex = 0.88 + 0.12 * fine + 0.08 * (coarse - 0.5)
    grass = cls == rd.GRASS
    tex = np.where(grass, 0.7 + 0.25 * fine + 0.3 * (coarse - 0.5), tex)
    slabs = (cls == rd.SIDEWALK) & (((s % 1.5) < 0.04) | (((ad - road.curb) % 1.5) < 0.04))
    bricks = (cls == rd.PAVING) & (((s % 0.6) < 0.03) | ((ad % 0.3) < 0.02))
    lane_pos = (ad % road.lane_width) / road.lane_width
    tracks = (cls == rd.ASPHALT) & (ad < road.road_edge) & (np.abs(np.abs(lane_pos - 0.5) - 0.24) < 0.08)
    tex = tex * np.where(slabs | bricks, 0.75, 1.0) * np.where(tracks, 0.9, 1.0)
    col *= tex[:, None]
    marking = cls == rd.MARKING
    paint = np.where(((ad < 0.25) & road.yellow_center)[:, None], (0.88, 0.72, 0.2), (0.9, 0.9, 0.87))
    col[marking] = paint[marking] * (0.8 + 0.2 * fine[marking, None])
    return col


def _sky(scene: Scene, dirs: np.ndarray) -> np.ndarray:
    """Sky colour (K, 3) seen along unit directions (K, 3)."""
    e = (np.clip(dirs[:, 2], 0, 1) ** 0.6).astype(np.float32)[:, None]
    horizon = np.asarray(scene.light.sky, dtype=np.float32)
    return horizon + (np.asarray(scene.light.zenith, dtype=np.float32) - horizon) * e


def _object_albedo(
    parts: Parts, prim: np.ndarray, rel: np.ndarray, normals: np.ndarray, origin: np.ndarray
) -> np.ndarray:
    """Part colours with facade windows, roof tone and foliage texture; ``rel`` = hit points - ``origin``
    and ``parts`` centred on ``origin`` too."""
    col = parts.color[prim].copy()
    mat = parts.material[prim]
    wall = np.nonzero(mat == Material.WALL)[0]
    if len(wall):
        q = rel[wall] - parts.center[prim[wall]]
        yaw = parts.yaw[prim[wall]]
        c, s = np.cos(yaw), np.sin(yaw)
        lx, ly = q[:, 0] * c + q[:, 1] * s, q[:, 1] * c - q[:, 0] * s
        n = normals[wall]
        along = np.where(np.abs(n[:, 0] * c + n[:, 1] * s) > 0.7, ly, lx)
        z = rel[wall, 2] + origin[2]
        floor = (z - 0.3) % 3.3
        upper = (np.abs((along % 3.0) - 1.5) < 0.75) & (floor > 1.1) & (floor < 2.7)
        shop = (z > 0.3) & (z < 2.8) & (np.abs((along % 6.0) - 3.0) < 2.3)
        glass = np.where(z < 3.5, shop, upper) & (np.abs(n[:, 2]) < 0.5)
        lit = _noise(np.floor(along / 3.0), np.floor(z / 3.3)) > 0.85
        wc = np.where(lit[:, None], np.float32([0.55, 0.5, 0.38]), np.float32([0.13, 0.16, 0.2]))
        c3 = np.where(glass[:, None], wc, col[wall])
        col[wall] = np.where((n[:, 2] > 0.5)[:, None], np.float32([0.32, 0.31, 0.3]), c3)
    leaf = np.nonzero(mat == Material.FOLIAGE)[0]
    if len(leaf):
        p = rel[leaf] + origin
        tex = 0.7 + 0.5 * _noise(np.floor(p[:, 0] * 5 + p[:, 2] * 3), np.floor(p[:, 1] * 5 - p[:, 2] * 4))
        col[leaf] *= tex.astype(np.float32)[:, None]
    return col


def render_camera(
    cfg: WorldConfig,
    scene: Scene,
    t: float,
    name: str,
    owner_parts: dict[int, np.ndarray],
    ids: dict[int, int],
    rng: np.random.Generator,
) -> CameraFrame:
    """Render camera ``name`` at time ``t``; ``ids`` maps annotated scene objects to mask ids (>= 1)."""
    w, h = cfg.image_width, cfg.image_height
    K = camera_intrinsic(name, w, h)
    rot, trans = camera_extrinsic(name)
    ego_xy, ego_yaw = scene.ego_pose(t)
    r_g, origin = sensor_to_global(ego_xy, ego_yaw, rot, trans)
    dirs = pixel_rays(name, w, h) @ r_g.T.astype(np.float32)  # (H, W, 3) global
    t_hit = ground_hits(origin, dirs, cfg.camera_max_range)
    prim = np.where(np.isfinite(t_hit), GROUND, SKY)
    parts = scene.parts_at(t)
    boxes = scene.boxes_at(t)
    rects = pinhole_rects(box_corners(boxes[:, :3], boxes[:, 3:6] / 2, boxes[:, 6]), r_g, origin, K, w, h)
    in_view = (rects[:, 1] > rects[:, 0]) & (rects[:, 3] > rects[:, 2])
    part_rects = np.zeros((len(parts.kind), 4), dtype=np.int64)
    sel = np.nonzero(in_view[parts.owner])[0]
    part_rects[sel] = pinhole_rects(
        box_corners(parts.center[sel], parts.half[sel], parts.yaw[sel]), r_g, origin, K, w, h
    )
    dist = np.linalg.norm(boxes[:, :3] - origin, axis=1) - np.linalg.norm(boxes[:, 3:6], axis=1) / 2
    order = [int(i) for i in np.argsort(dist, kind="stable") if in_view[i]]
    volume = parts.half.prod(1)
    main = np.zeros(len(boxes), dtype=np.int64)
    for i in order:
        idx = owner_parts[i]
        main[i] = idx[np.argmax(volume[idx])]
    cull = Culling(
        part_rects=part_rects, near=dist, counted=set(ids), lod_area=LOD_AREA, boxes=boxes, main_part=main
    )
    crossing = cast_grid(
        origin, dirs, parts, owner_parts, {i: [tuple(rects[i])] for i in order}, t_hit, prim, cull
    )
    image = _shade(cfg, scene, parts, origin, dirs, t_hit, prim, r_g, K, rng)
    flat_p = prim.reshape(-1)
    obj = flat_p >= 0
    owner = np.where(obj, parts.owner[np.maximum(flat_p, 0)], -1)
    lookup = np.zeros(len(scene.things) + 1, dtype=np.uint16)
    for i, k in ids.items():
        lookup[i] = k
    mask = lookup[owner].reshape(h, w)  # owner -1 reads the last entry, which is 0
    counts = np.bincount(owner[obj], minlength=len(scene.things))
    visible = {i: int(counts[i]) for i in crossing}
    return CameraFrame(image, mask, visible, crossing)


def _shade(
    cfg: WorldConfig,
    scene: Scene,
    parts: Parts,
    origin: np.ndarray,
    dirs: np.ndarray,
    t_hit: np.ndarray,
    prim: np.ndarray,
    r_g: np.ndarray,
    K: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The RGB uint8 image (H, W, 3) of a cast: sky, lit ground and lit objects, haze, tint, noise."""
    h, w = prim.shape
    flat_d, flat_t, flat_p = dirs.reshape(-1, 3), t_hit.reshape(-1), prim.reshape(-1)
    sky, ground, obj = flat_p == SKY, flat_p == GROUND, flat_p >= 0
    rel = flat_d * np.where(sky, 0.0, flat_t).astype(np.float32)[:, None]  # (H*W, 3) hits - origin
    sun, amb = np.array(scene.light.sun, dtype=np.float32), np.float32(scene.light.ambient)
    col = np.empty((len(flat_p), 3), dtype=np.float32)
    col[sky] = _sky(scene, flat_d[sky])
    gi, oi = np.nonzero(ground)[0], np.nonzero(obj)[0]
    if len(gi):
        lit = np.ones(len(gi), dtype=bool)
        if cfg.shadows:
            lit = ~_shadows(parts, rel.reshape(h, w, 3), ground.reshape(h, w), sun, r_g, origin, K).reshape(
                -1
            )[gi]
        col[gi] = ground_albedo(scene, origin[:2] + rel[gi, :2]) * (amb + (1 - amb) * sun[2] * lit)[:, None]
    if len(oi):
        local = parts.relative_to(origin)
        p, d = flat_p[oi], flat_d[oi]
        normals = surface_normals(local, p, rel[oi])
        mat = parts.material[p]
        shade = amb * (0.75 + 0.25 * normals[:, 2]) + (1 - amb) * np.clip(normals @ sun, 0, 1)
        shade = np.maximum(shade, EMISSIVE[mat].astype(np.float32))[:, None]
        dn = (normals * d).sum(1, keepdims=True)
        f = SHINE[mat].astype(np.float32)[:, None] * (0.35 + 0.65 * (1 - np.abs(dn)) ** 2)
        albedo = _object_albedo(local, p, rel[oi], normals, origin)
        shiny = np.nonzero(SHINE[mat] > 0)[0]
        out = albedo * shade
        out[shiny] += (_sky(scene, d[shiny] - 2 * dn[shiny] * normals[shiny]) - out[shiny]) * f[shiny]
        col[oi] = out
    x = np.minimum(np.where(sky, 0.0, flat_t) * np.float32(1 / cfg.camera_max_range), 1.0)
    haze = (0.7 * x * np.sqrt(x))[:, None]  # 0.7 (t / max)^1.5
    tint = np.asarray(scene.light.tint, dtype=np.float32) * 255
    col *= (1 - haze) * tint
    col += haze * (np.asarray(scene.light.sky, dtype=np.float32) * tint)
    image = col.reshape(h, w, 3)
    if cfg.image_noise > 0:
        noise = _noise_image(h, w)
        image += cfg.image_noise * np.roll(noise, (int(rng.integers(h)), int(rng.integers(w))), (0, 1))
    return np.clip(image, 0, 255).astype(np.uint8)


def _shadows(
    parts: Parts,
    rel: np.ndarray,
    ground: np.ndarray,
    sun: np.ndarray,
    r_g: np.ndarray,
    origin: np.ndarray,
    K: np.ndarray,
) -> np.ndarray:
    """(H, W) bool: ground pixels (``rel`` = hit points - ``origin``) in the shadow of an object (their
    rays towards the sun are blocked). Parts under 0.1 m^3 (lights, plates, bars) or beyond 60 m cast
    none."""
    h, w = ground.shape
    shadow = np.zeros((h, w), dtype=bool)
    if sun[2] <= 0.05:
        return shadow
    caster = (8 * parts.half.prod(1) > 0.1) & (np.hypot(*(parts.center[:, :2] - origin[:2]).T) < 60.0)
    idx = np.nonzero(caster)[0]
    if len(idx) == 0:
        return shadow
    owners, first = np.unique(parts.owner[idx], return_index=True)
    groups = np.split(idx, first[1:])  # caster parts per owner (parts are stored owner by owner)
    corners = box_corners(parts.center[idx], parts.half[idx], parts.yaw[idx])  # (N, 8, 3)
    cast = corners - sun * (corners[..., 2:3] / sun[2])  # their shadows on the ground
    rects = pinhole_rects(np.concatenate([corners, cast], 1), r_g, origin, K, w, h)
    local = parts.relative_to(origin)
    lift = np.float32([0.0, 0.0, 0.01])
    for group, start in zip(groups, first, strict=True):
        r = rects[start : start + len(group)]
        r = r[(r[:, 1] > r[:, 0]) & (r[:, 3] > r[:, 2])]
        if len(r) == 0:
            continue
        r0, r1, c0, c1 = r[:, 0].min(), r[:, 1].max(), r[:, 2].min(), r[:, 3].max()
        sub = shadow[r0:r1, c0:c1]
        sel = ground[r0:r1, c0:c1] & ~sub
        if sel.any():
            sub[sel] = occluded(rel[r0:r1, c0:c1][sel] + lift, sun, local, group)
    return shadow
