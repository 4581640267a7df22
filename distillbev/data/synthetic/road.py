"""The road of a scene: a straight or constant-curvature street, its cross-section and its ground.

Road coordinates: ``s`` (m) along the centre line, ``d`` (m) to its left. Traffic drives on the right:
lanes with d < 0 carry +s traffic (the ego's direction). From the centre outwards each side has
``lanes`` driving lanes, an optional bike lane, a parking strip, a curb, a sidewalk and a verge (grass,
or paving in urban scenes). A crosswalk and a parking lot are optional. The ground is the plane z = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Ground classes (index into GROUND_INTENSITY / the colour table of the camera renderer).
ASPHALT, MARKING, CURB, SIDEWALK, GRASS, PAVING, LOT = range(7)
#: Mean LiDAR intensity (0..255) of each ground class.
GROUND_INTENSITY = np.array([7.0, 90.0, 28.0, 22.0, 10.0, 18.0, 8.0])


@dataclass(frozen=True)
class Road:
    """Geometry and cross-section of one scene's street."""

    origin: tuple[float, float]  # global xy of road coordinate (0, 0), m
    heading: float  # global heading of the centre line at s = 0, rad
    curvature: float  # 1/m, positive turns left; 0 = straight
    lanes: int  # driving lanes per direction
    lane_width: float  # m
    bike_lane: float  # width of the bike lane per side (0 = none), m
    parking: float  # width of the parking strip, m
    sidewalk: float  # width of the sidewalk, m
    urban: bool  # paved verge instead of grass
    yellow_center: bool  # yellow (else white) centre line
    crosswalk_s: float | None  # s of the zebra crossing centre, m
    lot: tuple[float, float, float] | None  # parking lot (side +-1, s0, s1) beyond the sidewalk

    # ---- cross-section (distances |d| from the centre line, m)
    @property
    def road_edge(self) -> float:
        """Outer edge of the driving lanes."""
        return self.lanes * self.lane_width

    @property
    def bike_edge(self) -> float:
        """Outer edge of the bike lane (= road_edge without one)."""
        return self.road_edge + self.bike_lane

    @property
    def curb(self) -> float:
        """Outer edge of the parking strip, where the curb stone starts."""
        return self.bike_edge + self.parking

    @property
    def walk_edge(self) -> float:
        """Outer edge of the sidewalk."""
        return self.curb + 0.25 + self.sidewalk

    def lane_center(self, index: int, direction: int) -> float:
        """``d`` of lane ``index`` (0 = next to the centre line) for traffic along ``direction`` * s."""
        return -direction * (index + 0.5) * self.lane_width

    # ---- frames
    def heading_at(self, s: np.ndarray | float) -> np.ndarray | float:
        """Global heading (rad) of the centre line at ``s``."""
        return self.heading + self.curvature * np.asarray(s)

    def to_global(self, s: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Road coordinates -> global (x, y)."""
        s, d = np.asarray(s, dtype=np.float64), np.asarray(d, dtype=np.float64)
        th = self.heading_at(s)
        if abs(self.curvature) < 1e-9:
            px = self.origin[0] + s * math.cos(self.heading)
            py = self.origin[1] + s * math.sin(self.heading)
        else:
            k = self.curvature
            px = self.origin[0] + (np.sin(th) - math.sin(self.heading)) / k
            py = self.origin[1] - (np.cos(th) - math.cos(self.heading)) / k
        return px - d * np.sin(th), py + d * np.cos(th)

    def to_road(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global (x, y) -> road coordinates (s, d) (valid within a half turn of s = 0)."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if abs(self.curvature) < 1e-9:
            dx, dy = x - self.origin[0], y - self.origin[1]
            c, s = math.cos(self.heading), math.sin(self.heading)
            return dx * c + dy * s, -dx * s + dy * c
        k = self.curvature
        cx = self.origin[0] - math.sin(self.heading) / k
        cy = self.origin[1] + math.cos(self.heading) / k
        qx, qy = x - cx, y - cy
        sign = math.copysign(1.0, k)
        th = np.arctan2(sign * qx, -sign * qy)
        s = ((th - self.heading + math.pi) % (2 * math.pi) - math.pi) / k
        return s, 1.0 / k - sign * np.hypot(qx, qy)

    # ---- ground
    def ground_class(self, s: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Ground class of road points (see the module constants)."""
        ad = np.abs(d)
        cls = np.where(ad < self.curb, ASPHALT, np.where(ad < self.curb + 0.25, CURB, SIDEWALK))
        verge = ad >= self.walk_edge
        cls = np.where(verge, PAVING if self.urban else GRASS, cls)
        if self.lot is not None:
            side, s0, s1 = self.lot
            in_lot = (np.sign(d) == side) & verge & (ad < self.walk_edge + 24) & (s > s0) & (s < s1)
            cls = np.where(in_lot, LOT, cls)
        return np.where(self.markings(s, d), MARKING, cls)

    def markings(self, s: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Painted road markings: centre double line, dashed lane dividers, edge and bike-lane lines,
        parking bay ticks, zebra crossing and parking-lot bays."""
        ad = np.abs(d)
        centre = (ad > 0.08) & (ad < 0.2)
        dashed = np.zeros_like(ad, dtype=bool)
        for k in range(1, self.lanes):
            dashed |= (np.abs(ad - k * self.lane_width) < 0.075) & ((s % 9.0) < 3.0)
        edge = np.abs(ad - (self.road_edge - 0.15)) < 0.075
        bike = (np.abs(ad - self.bike_edge) < 0.075) if self.bike_lane > 0 else np.zeros_like(edge)
        bays = (ad > self.bike_edge + 0.1) & (ad < self.curb) & (np.abs((s % 6.0) - 3.0) < 0.06)
        marks = centre | dashed | edge | bike | bays
        if self.crosswalk_s is not None:
            zebra = (np.abs(s - self.crosswalk_s) < 2.0) & (ad < self.bike_edge) & ((d % 1.2) < 0.6)
            marks = (marks & ~(np.abs(s - self.crosswalk_s) < 2.0)) | zebra
        if self.lot is not None:
            side, s0, s1 = self.lot
            rel = ad - self.walk_edge
            lot = (np.sign(d) == side) & (s > s0) & (s < s1) & (rel > 0)
            ticks = (np.abs((s - s0) % 2.7) < 0.06) & (((rel > 1) & (rel < 6)) | ((rel > 18) & (rel < 23)))
            marks |= lot & ticks
        return marks
