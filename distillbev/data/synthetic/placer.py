"""``Placer``: keeps objects apart by checking their footprints over the whole scene.

Each placed object's footprint (an oriented rectangle) is sampled every 0.1 s over the scene's time
span; a new object is accepted only if, at every sample time, its footprint (grown by a margin) is
separated from every placed one (separating-axis test).
"""

from __future__ import annotations

import math

import numpy as np

from distillbev.data.synthetic.layout import Track
from distillbev.data.synthetic.road import Road
from distillbev.data.synthetic.shapes import Model


class Placer:
    """Footprints (oriented rectangles) of placed objects over the scene's time grid."""

    def __init__(self, road: Road, t_lo: float, t_hi: float, dt: float = 0.1) -> None:
        self.road = road
        self.times = np.arange(t_lo, t_hi + dt, dt)
        self.items: list[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float], np.ndarray]] = []

    def _footprint(self, track: Track, model: Model, forward: float = 0.0):
        times = self.times if len(track.t) > 1 else self.times[:1]
        s, d, h = track.at(times)
        x, y = self.road.to_global(s, d)
        yaw = self.road.heading_at(s) + h
        x, y = x + forward * np.cos(yaw), y + forward * np.sin(yaw)
        half = (model.size[0] / 2, model.size[1] / 2)
        r = math.hypot(*half)
        box = np.array([x.min() - r, x.max() + r, y.min() - r, y.max() + r])
        return x, y, yaw, half, box

    def fits(self, track: Track, model: Model, margin: float = 0.2, forward: float = 0.0) -> bool:
        """Whether the object never overlaps a placed one (footprints grown by ``margin`` m)."""
        x, y, yaw, (hl, hw), box = self._footprint(track, model, forward)
        for xb, yb, yawb, (bl, bw), bbox in self.items:
            if (
                box[0] > bbox[1] + margin
                or bbox[0] > box[1] + margin
                or box[2] > bbox[3] + margin
                or bbox[2] > box[3] + margin
            ):
                continue
            if _overlap(x, y, yaw, hl + margin, hw + margin, xb, yb, yawb, bl, bw):
                return False
        return True

    def add(self, track: Track, model: Model, forward: float = 0.0) -> None:
        """Record a placed object."""
        self.items.append(self._footprint(track, model, forward))


def _overlap(xa, ya, a, la, wa, xb, yb, b, lb, wb) -> bool:
    """Do two oriented rectangles (centres, yaws, half length/width) overlap at any time (SAT)."""
    ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
    dx, dy = xb - xa, yb - ya
    separated = np.zeros(np.broadcast(xa, xb).shape, dtype=bool)
    for nx, ny in ((ca, sa), (-sa, ca), (cb, sb), (-sb, cb)):
        ra = la * np.abs(ca * nx + sa * ny) + wa * np.abs(-sa * nx + ca * ny)
        rb = lb * np.abs(cb * nx + sb * ny) + wb * np.abs(-sb * nx + cb * ny)
        separated |= np.abs(dx * nx + dy * ny) > ra + rb
    return bool((~separated).any())
