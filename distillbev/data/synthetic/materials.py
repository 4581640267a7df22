"""Surface materials: LiDAR reflectivity and dropout, and the colour palettes objects draw from."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Material(IntEnum):
    """What a part is made of (index into the tables below)."""

    PAINT = 0  # vehicle body
    GLASS = 1  # windows: dark, mirror the sky, the LiDAR partly passes through
    TIRE = 2
    TRIM = 3  # bumpers, tracks, dark plastic
    HEADLIGHT = 4
    TAILLIGHT = 5
    PLATE = 6  # licence plates: retro-reflective
    SKIN = 7
    CLOTH = 8
    HIVIS = 9  # high-visibility vests (retro-reflective stripes)
    CONE = 10  # orange plastic
    REFLECTIVE = 11  # retro-reflective bands of cones, barriers and signs
    CONCRETE = 12
    WALL = 13  # building facades (rendered with windows)
    ROOF = 14
    METAL = 15  # poles, frames
    BARK = 16
    FOLIAGE = 17
    WOOD = 18


#: LiDAR intensity (0..255) at normal incidence, per material.
LIDAR_REFLECTIVITY = np.array(
    [35, 8, 4, 12, 120, 110, 230, 25, 18, 180, 60, 250, 45, 30, 25, 70, 15, 12, 30], dtype=np.float64
)
#: Extra probability that a LiDAR return is lost, per material (glass transmits, tyres absorb).
LIDAR_EXTRA_DROPOUT = np.array(
    [0, 0.5, 0.15, 0.05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.05, 0, 0.2, 0], dtype=np.float64
)
#: How strongly a material mirrors the sky (0 = matte).
SHINE = np.array(
    [0.12, 0.55, 0, 0.05, 0.3, 0.2, 0, 0, 0, 0, 0.05, 0.1, 0, 0, 0, 0.2, 0, 0, 0], dtype=np.float64
)
#: Materials that glow slightly (lights): a floor on their shading.
EMISSIVE = np.array([0, 0, 0, 0, 0.7, 0.5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.float64)

assert len(LIDAR_REFLECTIVITY) == len(LIDAR_EXTRA_DROPOUT) == len(SHINE) == len(EMISSIVE) == len(Material)

RGB = tuple[float, float, float]

#: Car paint colours and their frequencies (white, black, greys and silver dominate real traffic).
CAR_PAINT: list[tuple[RGB, float]] = [
    ((0.88, 0.88, 0.87), 0.24),
    ((0.08, 0.08, 0.09), 0.19),
    ((0.42, 0.43, 0.45), 0.16),
    ((0.68, 0.69, 0.71), 0.14),
    ((0.12, 0.22, 0.52), 0.09),
    ((0.62, 0.08, 0.07), 0.08),
    ((0.13, 0.33, 0.18), 0.03),
    ((0.72, 0.62, 0.45), 0.03),
    ((0.85, 0.65, 0.08), 0.02),
    ((0.38, 0.22, 0.12), 0.02),
]
TRUCK_PAINT: list[tuple[RGB, float]] = [
    ((0.9, 0.9, 0.9), 0.45),
    ((0.15, 0.3, 0.6), 0.15),
    ((0.7, 0.1, 0.08), 0.15),
    ((0.2, 0.2, 0.22), 0.15),
    ((0.2, 0.45, 0.25), 0.1),
]
BUS_PAINT: list[tuple[RGB, float]] = [
    ((0.85, 0.85, 0.82), 0.35),
    ((0.75, 0.12, 0.1), 0.25),
    ((0.12, 0.35, 0.7), 0.25),
    ((0.2, 0.55, 0.3), 0.15),
]
CONSTRUCTION_PAINT: list[tuple[RGB, float]] = [
    ((0.95, 0.72, 0.05), 0.6),
    ((0.92, 0.45, 0.05), 0.3),
    ((0.85, 0.85, 0.8), 0.1),
]
CLOTHES: list[tuple[RGB, float]] = [
    ((0.1, 0.1, 0.12), 0.25),
    ((0.18, 0.22, 0.38), 0.2),
    ((0.85, 0.85, 0.85), 0.12),
    ((0.45, 0.45, 0.47), 0.12),
    ((0.55, 0.12, 0.12), 0.08),
    ((0.3, 0.45, 0.25), 0.08),
    ((0.6, 0.5, 0.35), 0.08),
    ((0.15, 0.45, 0.65), 0.07),
]
SKIN_TONES: list[tuple[RGB, float]] = [
    ((0.92, 0.76, 0.65), 0.35),
    ((0.8, 0.62, 0.48), 0.3),
    ((0.6, 0.43, 0.3), 0.2),
    ((0.38, 0.26, 0.18), 0.15),
]
FACADES: list[tuple[RGB, float]] = [
    ((0.75, 0.68, 0.58), 0.25),
    ((0.6, 0.6, 0.62), 0.2),
    ((0.55, 0.35, 0.28), 0.2),
    ((0.85, 0.82, 0.75), 0.2),
    ((0.45, 0.5, 0.55), 0.15),
]
FOLIAGE_GREENS: list[tuple[RGB, float]] = [
    ((0.16, 0.36, 0.12), 0.5),
    ((0.25, 0.42, 0.15), 0.3),
    ((0.35, 0.4, 0.14), 0.2),
]


def pick(rng: np.random.Generator, palette: list[tuple[RGB, float]], jitter: float = 0.06) -> RGB:
    """A colour drawn from a weighted palette, with per-instance brightness and hue jitter."""
    weights = np.array([w for _, w in palette])
    base = np.array(palette[int(rng.choice(len(palette), p=weights / weights.sum()))][0])
    col = base * rng.uniform(1 - jitter * 2, 1 + jitter) + rng.normal(0, jitter / 2, 3)
    return tuple(float(c) for c in np.clip(col, 0.02, 1.0))
