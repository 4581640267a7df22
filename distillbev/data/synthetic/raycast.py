"""Vectorised ray casting against the ground plane and yaw-rotated primitives.

Primitives (``Parts``) are boxes, vertical elliptic cylinders, cylinders lying along their local y axis
(wheels) and ellipsoids, each given by a centre, half extents along its local axes and a yaw about +z.
A ray ``o + t d`` is mapped into the primitive's scaled local frame (where it is a unit cube, cylinder or
sphere); ``t`` is unchanged by that affine map, so one parameter serves all shapes.

Rays come as a 2D grid (image pixels, or LiDAR beams x azimuth steps). ``cast_grid`` loops over
*objects* (the owners of the parts), and for each one only over the rows/columns of the grid that its
bounding box can reach (``pinhole_rects`` / ``spherical_rects``): the cost is the covered area, not
rays x primitives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOX, CYLINDER, CYLINDER_Y, ELLIPSOID = 0, 1, 2, 3
GROUND = -1  # ``prim`` value of a ground hit
SKY = -2  # nothing hit within range
EPS = 1e-6

Rect = tuple[int, int, int, int]  # rows [r0, r1) x columns [c0, c1) of a ray grid


@dataclass
class Parts:
    """Render primitives in the global frame (one row per part)."""

    kind: np.ndarray  # (M,) BOX / CYLINDER / CYLINDER_Y / ELLIPSOID
    center: np.ndarray  # (M, 3) m
    half: np.ndarray  # (M, 3) half extents along the local x, y, z axes (m)
    yaw: np.ndarray  # (M,) rad about +z
    owner: np.ndarray  # (M,) index of the object the part belongs to
    material: np.ndarray  # (M,) material index (see shapes.Material)
    color: np.ndarray  # (M, 3) RGB in [0, 1]

    def relative_to(self, origin: np.ndarray) -> Parts:
        """float32 copy with centres relative to ``origin`` (cheap shading near a sensor)."""
        return Parts(
            self.kind,
            (self.center - origin).astype(np.float32),
            self.half.astype(np.float32),
            self.yaw.astype(np.float32),
            self.owner,
            self.material,
            self.color.astype(np.float32),
        )


def _local(o: np.ndarray, d: np.ndarray, center, half, yaw: float):
    """Ray origins and directions in a primitive's scaled local frame, per component."""
    c, s = np.cos(yaw), np.sin(yaw)
    ox, oy, oz = o[..., 0] - center[0], o[..., 1] - center[1], o[..., 2] - center[2]
    lx, ly, lz = (ox * c + oy * s) / half[0], (oy * c - ox * s) / half[1], oz / half[2]
    dx, dy, dz = (
        (d[..., 0] * c + d[..., 1] * s) / half[0],
        (d[..., 1] * c - d[..., 0] * s) / half[1],
        d[..., 2] / half[2],
    )
    return lx, ly, lz, dx, dy, dz


def _slab(l, dl):
    """Entry and exit parameters of the slab |l + t dl| <= 1."""
    inv = 1.0 / dl
    t1, t2 = (-1.0 - l) * inv, (1.0 - l) * inv
    return np.minimum(t1, t2), np.maximum(t1, t2)


def _disc(lx, ly, dx, dy):
    """Entry and exit parameters of the unit disc x^2 + y^2 <= 1 along (lx + t dx, ly + t dy)."""
    a = dx * dx + dy * dy
    b = lx * dx + ly * dy
    root = np.sqrt(b * b - a * (lx * lx + ly * ly - 1.0))  # nan where the ray misses
    return (-b - root) / a, (-b + root) / a


def intersect(
    kind: int, o: np.ndarray, d: np.ndarray, center, half, yaw: float
) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit ``t`` of rays ``o + t d`` (``o`` (3,) or (..., 3), ``d`` (..., 3)) with one
    primitive; the ray misses where ``not (t_near <= t_far)`` (nan included). Call under
    ``np.errstate(all="ignore")``."""
    lx, ly, lz, dx, dy, dz = _local(o, d, center, half, yaw)
    if kind == BOX:
        nx, fx = _slab(lx, dx)
        ny, fy = _slab(ly, dy)
        nz, fz = _slab(lz, dz)
        return np.maximum(np.maximum(nx, ny), nz), np.minimum(np.minimum(fx, fy), fz)
    if kind == CYLINDER_Y:
        ly, lz, dy, dz = lz, ly, dz, dy
    if kind in (CYLINDER, CYLINDER_Y):
        n1, f1 = _disc(lx, ly, dx, dy)
        n2, f2 = _slab(lz, dz)
        return np.maximum(n1, n2), np.minimum(f1, f2)
    a = dx * dx + dy * dy + dz * dz
    b = lx * dx + ly * dy + lz * dz
    root = np.sqrt(b * b - a * (lx * lx + ly * ly + lz * lz - 1.0))
    return (-b - root) / a, (-b + root) / a


def surface_normals(parts: Parts, prim: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Unit outward normals (K, 3) at ``points`` (K, 3) lying on the surfaces of parts ``prim`` (K,)."""
    kind, yaw = parts.kind[prim], parts.yaw[prim]
    half = parts.half[prim]
    hx, hy, hz = half[:, 0], half[:, 1], half[:, 2]
    c, s = np.cos(yaw), np.sin(yaw)
    rel = points - parts.center[prim]
    x = (rel[:, 0] * c + rel[:, 1] * s) / hx
    y = (rel[:, 1] * c - rel[:, 0] * s) / hy
    z = rel[:, 2] / hz
    ax, ay, az = np.abs(x), np.abs(y), np.abs(z)
    box = kind == BOX  # the face is the axis where the point is farthest out
    bx = box & (ax >= ay) & (ax >= az)
    by = box & ~bx & (ay >= az)
    bz = box & ~bx & ~by
    nx, ny, nz = np.where(bx, np.sign(x), 0.0), np.where(by, np.sign(y), 0.0), np.where(bz, np.sign(z), 0.0)
    for k, radial, axial in ((CYLINDER, (x, y), z), (CYLINDER_Y, (x, z), y)):
        sel = kind == k
        if not sel.any():
            continue
        cap = sel & ((1 - np.abs(axial)) < (1 - np.hypot(*radial)))
        side = sel & ~cap
        nx = np.where(side, x, nx)
        if k == CYLINDER:
            ny, nz = np.where(side, y, ny), np.where(cap, np.sign(z), nz)
        else:
            nz, ny = np.where(side, z, nz), np.where(cap, np.sign(y), ny)
    ell = kind == ELLIPSOID
    nx, ny, nz = np.where(ell, x, nx) / hx, np.where(ell, y, ny) / hy, np.where(ell, z, nz) / hz
    wx, wy = nx * c - ny * s, nx * s + ny * c
    norm = np.maximum(np.sqrt(wx * wx + wy * wy + nz * nz), 1e-12)
    return np.stack([wx / norm, wy / norm, nz / norm], 1)


def ground_hits(origin: np.ndarray, dirs: np.ndarray, max_t: float) -> np.ndarray:
    """``t`` where rays from ``origin`` (3,) along ``dirs`` (..., 3) meet the ground z = 0; inf beyond
    ``max_t`` or for rays that do not descend."""
    with np.errstate(all="ignore"):
        t = -origin[2] / dirs[..., 2]
    return np.where((dirs[..., 2] < -1e-9) & (t <= max_t), t, np.inf)


@dataclass
class Culling:
    """Optional speed-ups of ``cast_grid``.

    ``part_rects`` (P, 4) narrows each part to its own rectangle (columns may run outside [0, wrap)
    when ``wrap`` > 0, for a grid whose columns are periodic: a spinning LiDAR). Owners whose lower
    distance bound ``near`` (N,) exceeds every hit so far in their rectangle are skipped, except the
    ``counted`` ones. Owners covering at most ``lod_area`` rays are cast as their box ``boxes`` (N, 7)
    and shaded as their largest part ``main_part`` (N,)."""

    part_rects: np.ndarray | None = None
    wrap: int = 0
    near: np.ndarray | None = None
    counted: set[int] | frozenset[int] = frozenset()
    lod_area: int = 0
    boxes: np.ndarray | None = None
    main_part: np.ndarray | None = None


def _part_window(
    rect: np.ndarray, r0: int, r1: int, c0: int, c1: int, wrap: int
) -> tuple[int, int, int, int] | None:
    """The part rectangle ``rect`` clipped to the owner window, or None if they do not meet."""
    a0, a1 = max(r0, int(rect[0])), min(r1, int(rect[1]))
    if a1 <= a0:
        return None
    lo, hi = c1, c0
    for shift in (-wrap, 0, wrap) if wrap else (0,):
        b0, b1 = max(c0, int(rect[2]) + shift), min(c1, int(rect[3]) + shift)
        if b1 > b0:
            lo, hi = min(lo, b0), max(hi, b1)
    return (a0, a1, lo, hi) if hi > lo else None


def cast_grid(
    origin: np.ndarray,
    dirs: np.ndarray,
    parts: Parts,
    owner_parts: dict[int, np.ndarray],
    owner_rects: dict[int, list[Rect]],
    t: np.ndarray,
    prim: np.ndarray,
    cull: Culling | None = None,
) -> dict[int, int]:
    """Cast the ray grid ``dirs`` (H, W, 3) from ``origin`` (3,) against the parts of every owner in
    ``owner_rects`` (visited in its order; nearest first is fastest); ``t`` (H, W) and ``prim`` (H, W)
    hold the nearest hit so far (ground/sky) and are updated in place. Returns, per owner in
    ``cull.counted``, the number of rays that cross it at all (occluded or not)."""
    cull = cull or Culling()
    crossing: dict[int, int] = {}
    kinds, centers, halves, yaws = parts.kind, parts.center, parts.half, parts.yaw
    with np.errstate(all="ignore"):
        for owner, rects in owner_rects.items():
            counted = owner in cull.counted
            count = 0
            for r0, r1, c0, c1 in rects:
                tv, pv = t[r0:r1, c0:c1], prim[r0:r1, c0:c1]
                if cull.near is not None and not counted and cull.near[owner] > tv.max():
                    continue
                best = np.full(tv.shape, np.inf)
                best_p = np.full(tv.shape, -1, dtype=np.int64)
                if tv.size <= cull.lod_area and cull.boxes is not None:
                    b = cull.boxes[owner]
                    tn, tf = intersect(BOX, origin, dirs[r0:r1, c0:c1], b[:3], b[3:6] / 2, float(b[6]))
                    hit = (tn <= tf) & (tn > EPS)
                    best[hit], best_p[hit] = tn[hit], cull.main_part[owner]
                    jobs = []
                else:
                    jobs = owner_parts[owner]
                for p in jobs:
                    win = (r0, r1, c0, c1)
                    if cull.part_rects is not None:
                        win = _part_window(cull.part_rects[p], r0, r1, c0, c1, cull.wrap)
                        if win is None:
                            continue
                    a0, a1, b0, b1 = win
                    tn, tf = intersect(
                        int(kinds[p]), origin, dirs[a0:a1, b0:b1], centers[p], halves[p], float(yaws[p])
                    )
                    hit = (tn <= tf) & (tn > EPS)
                    sub = best[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0]
                    closer = hit & (tn < sub)
                    sub[closer] = tn[closer]
                    best_p[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0][closer] = p
                if counted:
                    count += int(np.isfinite(best).sum())
                upd = best < tv
                tv[upd] = best[upd]
                pv[upd] = best_p[upd]
            if counted:
                crossing[owner] = count
    return crossing


def occluded(points: np.ndarray, direction: np.ndarray, parts: Parts, idx: np.ndarray) -> np.ndarray:
    """Whether rays from ``points`` (..., 3) towards ``direction`` (3,) meet any of parts ``idx``."""
    out = np.zeros(points.shape[:-1], dtype=bool)
    d = np.broadcast_to(direction, points.shape)
    with np.errstate(all="ignore"):
        for p in idx:
            tn, tf = intersect(
                int(parts.kind[p]), points, d, parts.center[p], parts.half[p], float(parts.yaw[p])
            )
            out |= (tn <= tf) & (tf > EPS)
    return out


# ------------------------------------------------------------------------------------------- culling

_EDGES = np.array(
    [[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]]
)


def box_corners(center: np.ndarray, half: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Corners (N, 8, 3) of yaw-rotated boxes: 4 bottom corners, then 4 top ones."""
    sx = np.array([1, -1, -1, 1, 1, -1, -1, 1])
    sy = np.array([1, 1, -1, -1, 1, 1, -1, -1])
    sz = np.array([-1, -1, -1, -1, 1, 1, 1, 1])
    lx, ly = sx * half[:, :1], sy * half[:, 1:2]  # (N, 8)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    return np.stack(
        [
            center[:, :1] + lx * c - ly * s,
            center[:, 1:2] + lx * s + ly * c,
            center[:, 2:3] + sz * half[:, 2:3],
        ],
        -1,
    )


def pinhole_rects(
    points: np.ndarray, rot: np.ndarray, origin: np.ndarray, K: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Pixel rectangles (N, 4) ``(r0, r1, c0, c1)`` covering the projections of convex point sets
    ``points`` (N, P, 3) (global frame, e.g. box corners) in a pinhole camera (camera -> global ``rot``,
    ``origin``, intrinsics ``K``). Parts behind the camera are clipped at a near plane, so the
    rectangle is conservative. Empty (r1 <= r0) where nothing is in front or the image is missed."""
    near = 0.05
    pc = (points - origin) @ rot  # (N, P, 3) camera frame
    z = pc[..., 2]
    n_pts = points.shape[1]
    edges = _EDGES if n_pts == 8 else np.array([[i, j] for i in range(n_pts) for j in range(i + 1, n_pts)])
    pa, pb = pc[:, edges[:, 0]], pc[:, edges[:, 1]]  # (N, E, 3)
    za, zb = pa[..., 2], pb[..., 2]
    cross = (za > near) != (zb > near)
    with np.errstate(all="ignore"):
        f = np.where(cross, (near - za) / (zb - za), 0.0)
    clip = pa + f[..., None] * (pb - pa)
    cand = np.concatenate([pc, clip], 1)  # (N, P + E, 3)
    valid = np.concatenate([z > near, cross], 1)
    zc = np.where(valid, cand[..., 2], 1.0)
    u = K[0, 0] * cand[..., 0] / zc + K[0, 2]
    v = K[1, 1] * cand[..., 1] / zc + K[1, 2]
    any_valid = valid.any(1)
    umin = np.where(valid, u, np.inf).min(1, initial=np.inf)
    umax = np.where(valid, u, -np.inf).max(1, initial=-np.inf)
    vmin = np.where(valid, v, np.inf).min(1, initial=np.inf)
    vmax = np.where(valid, v, -np.inf).max(1, initial=-np.inf)
    big = 1e6  # keeps the float -> int conversion finite
    out = np.stack(
        [
            np.clip(np.floor(np.clip(vmin, -big, big)) - 1, 0, height),
            np.clip(np.ceil(np.clip(vmax, -big, big)) + 1, 0, height),
            np.clip(np.floor(np.clip(umin, -big, big)) - 1, 0, width),
            np.clip(np.ceil(np.clip(umax, -big, big)) + 1, 0, width),
        ],
        1,
    ).astype(np.int64)
    out[~any_valid] = 0
    return out


def spherical_rects(
    center: np.ndarray,
    radius: np.ndarray,
    z_range: np.ndarray,
    elevations: np.ndarray,
    azimuth_steps: int,
    max_range: float,
) -> np.ndarray:
    """Beam/azimuth rectangles (N, 4) ``(r0, r1, c0, c1)`` of a spinning LiDAR grid (rows: ascending
    ``elevations`` rad; columns: azimuth ``-pi + 2 pi j / azimuth_steps``) that can see vertical
    bounding cylinders of ``center`` (N, 2) xy, ``radius`` (N,) and heights ``z_range`` (N, 2), all in
    the sensor frame (z up). Columns are unwrapped: ``c0`` may be negative and ``c1`` may exceed
    ``azimuth_steps`` (``c1 - c0 <= azimuth_steps``); see ``split_wrapped``. Objects beyond
    ``max_range`` get an empty rectangle."""
    step = 2 * np.pi / azimuth_steps
    dist = np.hypot(center[:, 0], center[:, 1])
    az = np.arctan2(center[:, 1], center[:, 0])
    margin = np.radians(0.5)
    inside = dist <= radius + 0.05
    r_min = np.maximum(dist - radius, 0.05)
    r_max = dist + radius
    z0, z1 = z_range[:, 0], z_range[:, 1]
    el_hi = np.where(inside, np.pi / 2, np.arctan2(z1, np.where(z1 > 0, r_min, r_max)) + margin)
    el_lo = np.where(inside, -np.pi / 2, np.arctan2(z0, np.where(z0 > 0, r_max, r_min)) - margin)
    r0 = np.searchsorted(elevations, el_lo, side="left")
    r1 = np.searchsorted(elevations, el_hi, side="right")
    half = np.arcsin(np.clip(radius / np.maximum(dist, 1e-9), 0, 1)) + step
    c0 = np.floor((az - half + np.pi) / step).astype(np.int64)
    c1 = np.ceil((az + half + np.pi) / step).astype(np.int64) + 1
    full = inside | (c1 - c0 >= azimuth_steps)
    c0, c1 = np.where(full, 0, c0), np.where(full, azimuth_steps, c1)
    out = np.stack([r0, r1, c0, c1], 1).astype(np.int64)
    out[(dist - radius > max_range) | (r1 <= r0)] = 0
    return out


def split_wrapped(rect: np.ndarray, azimuth_steps: int) -> list[Rect]:
    """An unwrapped LiDAR rectangle as one or two rectangles within [0, azimuth_steps); [] if empty."""
    r0, r1, c0, c1 = (int(v) for v in rect)
    if r1 <= r0 or c1 <= c0:
        return []
    if c0 < 0:
        return [(r0, r1, 0, c1), (r0, r1, c0 + azimuth_steps, azimuth_steps)]
    if c1 > azimuth_steps:
        return [(r0, r1, c0, azimuth_steps), (r0, r1, 0, c1 - azimuth_steps)]
    return [(r0, r1, c0, c1)]
