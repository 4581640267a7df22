"""Vectorised ray casting against the ground plane (z = 0) and oriented boxes (rotated about z).

Rays from one origin are binned by azimuth and each bin is tested only against the boxes whose
bounding circle overlaps it, which keeps the cost near-linear in rays for street scenes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GROUND = -1  # ``hit`` value of a ground return
SKY = -2  # no return within range


@dataclass
class Hits:
    """Per-ray results of a cast."""

    t: np.ndarray  # (N,) distance along the (unit) ray, inf where nothing was hit
    hit: np.ndarray  # (N,) index of the box hit, GROUND or SKY
    normal: np.ndarray  # (N, 3) world normal at the hit
    visible_rays: np.ndarray  # (M,) rays whose nearest hit is box m
    crossing_rays: np.ndarray  # (M,) rays that cross box m at all (visible or occluded)


def cast(
    origin: np.ndarray, dirs: np.ndarray, boxes: dict[str, np.ndarray], max_t: float, bins: int = 48
) -> Hits:
    """Cast unit rays ``dirs`` (N, 3) from ``origin`` (3,) into the scene of ``boxes``
    (center (M, 3), half (M, 3), yaw (M,)) and the ground plane z = 0."""
    n = len(dirs)
    m = len(boxes["yaw"])
    t = np.full(n, np.inf)
    hit = np.full(n, SKY, dtype=np.int64)
    normal = np.zeros((n, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        tg = np.where(dirs[:, 2] < -1e-9, -origin[2] / dirs[:, 2], np.inf)
    ground = tg <= max_t
    t[ground], hit[ground] = tg[ground], GROUND
    normal[ground] = (0.0, 0.0, 1.0)
    visible = np.zeros(m, dtype=np.int64)
    crossing = np.zeros(m, dtype=np.int64)
    if m == 0:
        return Hits(t, hit, normal, visible, crossing)
    rel = boxes["center"][:, :2] - origin[:2]
    dist = np.hypot(rel[:, 0], rel[:, 1])
    radius = np.hypot(boxes["half"][:, 0], boxes["half"][:, 1])
    near_enough = dist - radius <= max_t
    ang = np.arctan2(rel[:, 1], rel[:, 0])
    half_ang = np.where(dist > radius, np.arcsin(np.clip(radius / np.maximum(dist, 1e-9), 0, 1)), np.pi)
    az = np.arctan2(dirs[:, 1], dirs[:, 0])
    ray_bin = np.minimum(((az + np.pi) / (2 * np.pi) * bins).astype(np.int64), bins - 1)
    width = np.pi / bins
    c, s = np.cos(boxes["yaw"]), np.sin(boxes["yaw"])
    o = origin[None, :] - boxes["center"]  # (M, 3) origin in box-centred coordinates
    ol = np.stack([o[:, 0] * c + o[:, 1] * s, -o[:, 0] * s + o[:, 1] * c, o[:, 2]], 1)
    for b in range(bins):
        rays = np.nonzero(ray_bin == b)[0]
        if len(rays) == 0:
            continue
        center = -np.pi + (b + 0.5) * 2 * width
        gap = np.abs((ang - center + np.pi) % (2 * np.pi) - np.pi)
        sel = np.nonzero(near_enough & (gap <= half_ang + width))[0]
        if len(sel) == 0:
            continue
        d = dirs[rays]
        cs, ss = c[sel][None], s[sel][None]
        dl = np.stack(
            [
                d[:, None, 0] * cs + d[:, None, 1] * ss,
                -d[:, None, 0] * ss + d[:, None, 1] * cs,
                np.broadcast_to(d[:, None, 2], (len(rays), len(sel))),
            ],
            -1,
        )  # (R, S, 3)
        dl = np.where(np.abs(dl) < 1e-12, 1e-12, dl)
        inv = 1.0 / dl
        hb, ob = boxes["half"][sel][None], ol[sel][None]
        t1, t2 = (-hb - ob) * inv, (hb - ob) * inv
        tmin_ax = np.minimum(t1, t2)
        tnear = tmin_ax.max(-1)
        tfar = np.maximum(t1, t2).min(-1)
        ok = (tfar >= tnear) & (tnear > 1e-6) & (tnear <= max_t)  # origin inside a box: not a hit
        crossing[sel] += ok.sum(0)
        tn = np.where(ok, tnear, np.inf)
        best = tn.argmin(1)
        tb = tn[np.arange(len(rays)), best]
        closer = tb < t[rays]
        r_idx = rays[closer]
        k = best[closer]
        t[r_idx] = tb[closer]
        hit[r_idx] = sel[k]
        axis = tmin_ax[closer, k].argmax(-1)  # the slab that was entered last is the face hit
        sign = -np.sign(dl[closer, k, axis])
        local = np.zeros((len(r_idx), 3))
        local[np.arange(len(r_idx)), axis] = sign
        kk = sel[k]
        normal[r_idx] = np.stack(
            [
                local[:, 0] * c[kk] - local[:, 1] * s[kk],
                local[:, 0] * s[kk] + local[:, 1] * c[kk],
                local[:, 2],
            ],
            1,
        )
    boxes_hit = hit[hit >= 0]
    np.add.at(visible, boxes_hit, 1)
    return Hits(t, hit, normal, visible, crossing)
