"""3D models of the 10 annotated classes, built from primitives around a tight box.

A model is a list of parts in the object frame (x forward, y left, z up from the ground; the xy origin
is re-centred on the tight bounds). ``finalize`` measures the union of the parts, so the annotated box
is exactly the tight box of what is rendered and hit by the LiDAR. Vehicles are front/back asymmetric
(lights, cab/bonnet layout) so that heading is observable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillbev.data.synthetic.materials import (
    BUS_PAINT,
    CAR_PAINT,
    CLOTHES,
    CONSTRUCTION_PAINT,
    RGB,
    SKIN_TONES,
    TRUCK_PAINT,
    Material,
    pick,
)
from distillbev.data.synthetic.raycast import BOX, CYLINDER, CYLINDER_Y, ELLIPSOID

M = Material
TIRE_RGB: RGB = (0.05, 0.05, 0.05)
TRIM_RGB: RGB = (0.09, 0.09, 0.1)
GLASS_RGB: RGB = (0.08, 0.1, 0.13)
HEAD_RGB: RGB = (0.95, 0.93, 0.82)
TAIL_RGB: RGB = (0.75, 0.05, 0.04)
PLATE_RGB: RGB = (0.9, 0.9, 0.86)
METAL_RGB: RGB = (0.5, 0.5, 0.52)

#: Columns of a part row.
PART_FIELDS = ("kind", "x", "y", "z", "hx", "hy", "hz", "yaw", "material", "r", "g", "b")


def part(
    kind: int,
    x: float,
    y: float,
    z0: float,
    z1: float,
    hx: float,
    hy: float,
    mat: Material,
    rgb: RGB,
    yaw: float = 0.0,
) -> list[float]:
    """One part row: centre (x, y), vertical span [z0, z1], half extents hx, hy, material and colour."""
    return [kind, x, y, (z0 + z1) / 2, hx, hy, (z1 - z0) / 2, yaw, int(mat), *rgb]


def span(
    kind: int, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float, mat: Material, rgb: RGB
) -> list[float]:
    """A part filling the axis-aligned ranges [x0, x1] x [y0, y1] x [z0, z1]."""
    return part(kind, (x0 + x1) / 2, (y0 + y1) / 2, z0, z1, (x1 - x0) / 2, (y1 - y0) / 2, mat, rgb)


@dataclass
class Model:
    """Parts (P, 12) in the object frame, centred in xy on their tight bounds."""

    parts: np.ndarray
    size: tuple[float, float, float]  # tight (l, w, h) in m
    z0: float  # bottom of the tight box above the ground (m)


def part_extents(parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half extents along the object's x and y of each (yaw-rotated) part."""
    kind, hx, hy, yaw = parts[:, 0], parts[:, 4], parts[:, 5], parts[:, 7]
    c, s = np.abs(np.cos(yaw)), np.abs(np.sin(yaw))
    rnd = (kind == CYLINDER) | (kind == ELLIPSOID)
    ex = np.where(rnd, np.sqrt((hx * c) ** 2 + (hy * s) ** 2), hx * c + hy * s)
    ey = np.where(rnd, np.sqrt((hx * s) ** 2 + (hy * c) ** 2), hx * s + hy * c)
    return ex, ey


def finalize(rows: list[list[float]]) -> Model:
    """Centre the parts on their union's tight box and measure it."""
    a = np.asarray(rows, dtype=np.float64)
    ex, ey = part_extents(a)
    x0, x1 = (a[:, 1] - ex).min(), (a[:, 1] + ex).max()
    y0, y1 = (a[:, 2] - ey).min(), (a[:, 2] + ey).max()
    z0, z1 = (a[:, 3] - a[:, 6]).min(), (a[:, 3] + a[:, 6]).max()
    a[:, 1] -= (x0 + x1) / 2
    a[:, 2] -= (y0 + y1) / 2
    return Model(a, (float(x1 - x0), float(y1 - y0), float(z1 - z0)), float(z0))


def _wheels(xs: list[float], w: float, r: float, half_width: float = 0.12) -> list[list[float]]:
    y = w / 2 - half_width
    return [
        part(CYLINDER_Y, x, sy * y, 0, 2 * r, r, half_width, M.TIRE, TIRE_RGB) for x in xs for sy in (-1, 1)
    ]


def _lights(l: float, w: float, z0: float, z1: float, inset: float = 0.3) -> list[list[float]]:
    """Head lights at the front (+x), tail lights at the back, licence plates below them."""
    rows = []
    for sy in (-1, 1):
        y = sy * (w / 2 - inset)
        rows.append(span(BOX, l / 2 - 0.08, l / 2, y - 0.14, y + 0.14, z0, z1, M.HEADLIGHT, HEAD_RGB))
        rows.append(span(BOX, -l / 2, -l / 2 + 0.08, y - 0.12, y + 0.12, z0, z1, M.TAILLIGHT, TAIL_RGB))
    zp = max(z0 - 0.2, 0.25)
    rows.append(span(BOX, l / 2 - 0.06, l / 2, -0.26, 0.26, zp, zp + 0.12, M.PLATE, PLATE_RGB))
    rows.append(span(BOX, -l / 2, -l / 2 + 0.06, -0.26, 0.26, zp, zp + 0.12, M.PLATE, PLATE_RGB))
    return rows


def car(rng: np.random.Generator, l: float, w: float, h: float) -> list[list[float]]:
    """Sedan, hatchback/SUV or van: body, glasshouse, roof, wheels, lights."""
    paint = pick(rng, CAR_PAINT)
    variant = rng.choice(3, p=[0.5, 0.38, 0.12])
    cab_x0, cab_x1 = [(-0.33, 0.17), (-0.47, 0.16), (-0.48, 0.32)][variant]
    waist = h * rng.uniform(0.52, 0.6)
    r = float(np.clip(0.3 * h / 1.6, 0.27, 0.42))
    rows = [
        span(BOX, -l / 2 + 0.07, l / 2 - 0.07, -w / 2, w / 2, 0.25, waist, M.PAINT, paint),
        span(BOX, l / 2 - 0.3, l / 2 - 0.03, -0.47 * w, 0.47 * w, 0.18, 0.5, M.TRIM, TRIM_RGB),
        span(BOX, -l / 2 + 0.03, -l / 2 + 0.3, -0.47 * w, 0.47 * w, 0.18, 0.5, M.TRIM, TRIM_RGB),
        span(BOX, cab_x0 * l, cab_x1 * l, -0.44 * w, 0.44 * w, waist, 0.94 * h, M.GLASS, GLASS_RGB),
        span(BOX, cab_x0 * l + 0.12, cab_x1 * l - 0.3, -0.42 * w, 0.42 * w, 0.94 * h, h, M.PAINT, paint),
    ]
    rows += _lights(l, w, waist - 0.2, waist - 0.06)
    return rows + _wheels([l / 2 - 0.2 * l, -l / 2 + 0.2 * l], w, r)


def truck(rng: np.random.Generator, l: float, w: float, h: float, variant: str) -> list[list[float]]:
    """``pickup``, ``box`` truck or semi ``tractor``: cab at the front (+x)."""
    paint = pick(rng, TRUCK_PAINT)
    if variant == "pickup":
        waist = 0.55 * h
        rows = [
            span(BOX, -l / 2 + 0.05, l / 2 - 0.05, -w / 2, w / 2, 0.35, waist, M.PAINT, paint),
            span(BOX, -0.12 * l, 0.2 * l, -0.45 * w, 0.45 * w, waist, 0.93 * h, M.GLASS, GLASS_RGB),
            span(BOX, -0.1 * l, 0.12 * l, -0.43 * w, 0.43 * w, 0.93 * h, h, M.PAINT, paint),
            span(BOX, -l / 2 + 0.05, -0.13 * l, -w / 2, w / 2, waist, waist + 0.12, M.PAINT, paint),
        ]
        rows += _lights(l, w, waist - 0.2, waist - 0.05)
        return rows + _wheels([0.3 * l, -0.3 * l], w, 0.38)
    cab_l = min(2.3, 0.35 * l) if variant == "box" else 0.45 * l
    cab_h = h if variant == "tractor" else h * rng.uniform(0.72, 0.85)
    cargo = pick(rng, [((0.92, 0.92, 0.9), 0.6), (paint, 0.4)])
    rows = [
        span(BOX, l / 2 - cab_l, l / 2 - 0.05, -w / 2, w / 2, 0.55, 0.58 * cab_h, M.PAINT, paint),
        span(
            BOX,
            l / 2 - 0.25,
            l / 2 - 0.05,
            -0.46 * w,
            0.46 * w,
            0.58 * cab_h,
            0.85 * cab_h,
            M.GLASS,
            GLASS_RGB,
        ),
        span(BOX, l / 2 - cab_l, l / 2 - 0.25, -0.48 * w, 0.48 * w, 0.58 * cab_h, cab_h, M.PAINT, paint),
        span(BOX, -l / 2 + 0.1, l / 2 - cab_l, -0.35 * w, 0.35 * w, 0.6, 1.05, M.TRIM, TRIM_RGB),
    ]
    if variant == "box":
        rows.append(span(BOX, -l / 2 + 0.06, l / 2 - cab_l - 0.12, -w / 2, w / 2, 1.05, h, M.PAINT, cargo))
    rows += _lights(l, w, 0.75, 0.95, inset=0.25)
    return rows + _wheels([l / 2 - 0.6 * cab_l, -l / 2 + 1.6, -l / 2 + 0.55], w, 0.5, 0.15)


def bus(rng: np.random.Generator, l: float, w: float, h: float, bendy: bool) -> list[list[float]]:
    """A city bus (optionally articulated): skirt, window band, roof, windscreen, wheels."""
    paint = pick(rng, BUS_PAINT)
    rows = [
        span(BOX, -l / 2 + 0.06, l / 2 - 0.1, -w / 2, w / 2, 0.3, 0.42 * h, M.PAINT, paint),
        span(BOX, -l / 2 + 0.06, l / 2 - 0.1, -w / 2, w / 2, 0.42 * h, 0.84 * h, M.GLASS, GLASS_RGB),
        span(BOX, -l / 2 + 0.06, l / 2 - 0.1, -w / 2, w / 2, 0.84 * h, h, M.PAINT, paint),
        span(BOX, l / 2 - 0.1, l / 2, -0.47 * w, 0.47 * w, 0.35 * h, 0.86 * h, M.GLASS, GLASS_RGB),
        span(BOX, l / 2 - 0.1, l / 2, -0.4 * w, 0.4 * w, 0.88 * h, 0.95 * h, M.HEADLIGHT, (0.95, 0.6, 0.1)),
        span(BOX, -l / 2, -l / 2 + 0.06, -0.47 * w, 0.47 * w, 0.3, 0.9 * h, M.PAINT, paint),
    ]
    rows += _lights(l, w, 0.55, 0.8, inset=0.25)
    axles = [l / 2 - 2.6, -l / 2 + 3.0]
    if bendy:
        rows.append(span(BOX, -0.55, 0.55, -0.49 * w, 0.49 * w, 0.35, 0.95 * h, M.TRIM, TRIM_RGB))
        axles = [l / 2 - 2.6, 1.5, -l / 2 + 2.8]
    return rows + _wheels(axles, w, 0.5, 0.15)


def trailer(rng: np.random.Generator, l: float, w: float, h: float, towed: bool) -> list[list[float]]:
    """A semi-trailer: box or container body, chassis, rear bogie, landing legs (down when parked)."""
    body = pick(rng, [((0.88, 0.88, 0.86), 0.5), ((0.55, 0.18, 0.12), 0.2), ((0.18, 0.32, 0.5), 0.3)])
    rows = [
        span(BOX, -l / 2 + 0.03, l / 2, -w / 2, w / 2, 1.25, h, M.PAINT, body),
        span(BOX, -l / 2 + 0.4, l / 2 - 0.6, -0.4 * w, 0.4 * w, 0.95, 1.25, M.TRIM, TRIM_RGB),
        span(BOX, -l / 2, -l / 2 + 0.03, -0.45 * w, 0.45 * w, 1.3, 1.45, M.REFLECTIVE, (0.85, 0.15, 0.1)),
    ]
    leg0 = 0.45 if towed else 0.0
    for sy in (-1, 1):
        rows.append(
            span(
                BOX,
                l / 2 - 2.6,
                l / 2 - 2.45,
                sy * 0.35 * w - 0.08,
                sy * 0.35 * w + 0.08,
                leg0,
                1.0,
                M.METAL,
                METAL_RGB,
            )
        )
    return rows + _wheels([-l / 2 + 1.0, -l / 2 + 2.3, -l / 2 + 3.6], w, 0.5, 0.15)


def construction_vehicle(rng: np.random.Generator, l: float, w: float, h: float) -> list[list[float]]:
    """Excavator, wheel loader or road roller in construction-yellow."""
    paint = pick(rng, CONSTRUCTION_PAINT)
    variant = rng.choice(3, p=[0.5, 0.3, 0.2])
    if variant == 0:  # excavator: tracks, house, cab, boom, stick and bucket at the front
        rows = [
            span(BOX, -0.4 * l, 0.32 * l, -w / 2, -w / 2 + 0.65, 0, 0.85, M.TRIM, TRIM_RGB),
            span(BOX, -0.4 * l, 0.32 * l, w / 2 - 0.65, w / 2, 0, 0.85, M.TRIM, TRIM_RGB),
            span(BOX, -l / 2, 0.12 * l, -0.46 * w, 0.46 * w, 0.85, 0.58 * h, M.PAINT, paint),
            span(BOX, 0.0, 0.22 * l, 0.05 * w, 0.45 * w, 0.58 * h, 0.92 * h, M.GLASS, GLASS_RGB),
            span(BOX, 0.12 * l, 0.5 * l - 0.35, -0.2, 0.2, 0.85 * h, h, M.PAINT, paint),
            span(BOX, l / 2 - 0.45, l / 2, -0.18, 0.18, 0.3 * h, h, M.PAINT, paint),
            span(BOX, l / 2 - 1.0, l / 2, -0.45, 0.45, 0.0, 0.3 * h, M.TRIM, (0.25, 0.22, 0.2)),
        ]
        return rows
    if variant == 1:  # wheel loader: body, cab, front bucket
        rows = [
            span(BOX, -l / 2, 0.22 * l, -0.42 * w, 0.42 * w, 0.6, 0.55 * h, M.PAINT, paint),
            span(BOX, -0.2 * l, 0.08 * l, -0.38 * w, 0.38 * w, 0.55 * h, 0.95 * h, M.GLASS, GLASS_RGB),
            span(BOX, -0.22 * l, 0.1 * l, -0.4 * w, 0.4 * w, 0.95 * h, h, M.PAINT, paint),
            span(BOX, l / 2 - 0.9, l / 2, -w / 2, w / 2, 0.05, 0.38 * h, M.TRIM, (0.3, 0.28, 0.25)),
        ]
        return rows + _wheels([0.15 * l, -0.3 * l], 0.9 * w, 0.72, 0.28)
    rows = [  # roller: front drum, body, cab
        part(CYLINDER_Y, l / 2 - 0.8, 0, 0, 1.6, 0.8, w / 2, M.METAL, (0.35, 0.35, 0.35)),
        span(BOX, -l / 2, l / 2 - 1.7, -0.45 * w, 0.45 * w, 0.4, 0.5 * h, M.PAINT, paint),
        span(BOX, -0.35 * l, 0.0, -0.4 * w, 0.4 * w, 0.5 * h, 0.95 * h, M.GLASS, GLASS_RGB),
        span(BOX, -0.37 * l, 0.02, -0.42 * w, 0.42 * w, 0.95 * h, h, M.PAINT, paint),
    ]
    return rows + _wheels([-l / 2 + 0.8], 0.9 * w, 0.6, 0.25)


def person(
    rng: np.random.Generator,
    l: float,
    w: float,
    h: float,
    walking: bool,
    worker: bool = False,
    x: float = 0.0,
    z: float = 0.0,
) -> list[list[float]]:
    """A pedestrian (or a rider's body when ``z`` > 0): legs, torso, arms, head; walking people stride.

    Arms and legs reach the drawn length ``l`` and the arms the width ``w``."""
    s = h / 1.77
    skin = pick(rng, SKIN_TONES, 0.03)
    shirt = (0.95, 0.75, 0.05) if worker else pick(rng, CLOTHES)
    pants = pick(rng, CLOTHES)
    r_arm, r_leg = 0.045 * s, 0.075 * s
    y_arm = w / 2 - r_arm
    torso_hy = max(y_arm - r_arm - 0.01, 0.12 * s)
    stride = (l / 2 - r_leg) if walking else 0.05
    swing = l / 2 - r_arm
    rows = []
    if z == 0.0:
        for sx, sy in ((1, 1), (-1, -1)):
            rows.append(
                part(CYLINDER, x + sx * stride, sy * 0.1 * s, 0, 0.5 * h, r_leg, r_leg, M.CLOTH, pants)
            )
    for sx, sy in ((-1, 1), (1, -1)):
        rows.append(
            part(
                CYLINDER, x + sx * swing, sy * y_arm, z + 0.45 * h, z + 0.8 * h, r_arm, r_arm, M.CLOTH, shirt
            )
        )
    rows.append(
        part(
            CYLINDER,
            x,
            0,
            z + 0.48 * h,
            z + 0.82 * h,
            0.14 * s,
            torso_hy,
            M.HIVIS if worker else M.CLOTH,
            shirt,
        )
    )
    rows.append(part(ELLIPSOID, x, 0, z + 0.86 * h, z + h, 0.1 * s, 0.09 * s, M.SKIN, skin))
    hat = (0.95, 0.8, 0.05) if worker else pick(rng, [((0.1, 0.07, 0.05), 0.6), ((0.35, 0.25, 0.12), 0.4)])
    rows.append(part(ELLIPSOID, x - 0.01, 0, z + 0.93 * h, z + h, 0.105 * s, 0.095 * s, M.CLOTH, hat))
    return rows


def two_wheeler(
    rng: np.random.Generator, l: float, w: float, h: float, motor: bool, rider: bool
) -> list[list[float]]:
    """Motorcycle or bicycle, with an optional rider whose head sets the height ``h``."""
    r = (0.31 if motor else 0.34) * min(l / (2.1 if motor else 1.7), 1.15)
    tyre_hw = 0.07 if motor else 0.025
    paint = pick(rng, CAR_PAINT if motor else CLOTHES)
    rows = [part(CYLINDER_Y, sx * (l / 2 - r), 0, 0, 2 * r, r, tyre_hw, M.TIRE, TIRE_RGB) for sx in (-1, 1)]
    bar_z = 1.05 if motor else 1.0
    if motor:
        rows += [
            span(BOX, -0.28 * l, 0.22 * l, -0.17, 0.17, 0.3, 0.8, M.PAINT, paint),
            span(BOX, -0.4 * l, 0.02 * l, -0.15, 0.15, 0.8, 0.9, M.TRIM, TRIM_RGB),
            span(BOX, l / 2 - 0.12, l / 2 - 0.02, -0.09, 0.09, 0.75, 0.9, M.HEADLIGHT, HEAD_RGB),
        ]
    else:
        rows += [
            span(BOX, -0.25 * l, 0.22 * l, -0.025, 0.025, 0.55, 0.65, M.METAL, paint),
            span(BOX, -0.2 * l, -0.15 * l, -0.025, 0.025, 0.35, 0.92, M.METAL, paint),
            span(BOX, -0.25 * l, -0.08 * l, -0.08, 0.08, 0.92, 0.97, M.TRIM, TRIM_RGB),
        ]
    rows.append(span(BOX, 0.25 * l, 0.3 * l, -w / 2, w / 2, bar_z - 0.04, bar_z, M.METAL, METAL_RGB))
    rows.append(span(BOX, 0.26 * l, 0.29 * l, -0.04, 0.04, 2 * r * 0.6, bar_z - 0.04, M.METAL, METAL_RGB))
    if rider:
        seat = 0.9 if motor else 0.97
        body = (h - seat) / 0.52  # the person's full height whose hips are on the seat and head top at h
        rows += person(rng, 0.5, min(w, 0.55), body, False, x=-0.12 * l, z=seat - 0.48 * body)
        for sy in (-1, 1):  # legs from the seat down to the pedals / foot pegs
            rows.append(
                span(
                    BOX,
                    -0.15 * l,
                    0.05 * l,
                    sy * 0.12 - 0.06,
                    sy * 0.12 + 0.06,
                    0.3,
                    seat,
                    M.CLOTH,
                    (0.15, 0.15, 0.2),
                )
            )
    return rows


def traffic_cone(rng: np.random.Generator, l: float, w: float, h: float) -> list[list[float]]:
    """A square black base and a tapering orange body with a retro-reflective white band."""
    orange = pick(rng, [((1.0, 0.42, 0.05), 0.8), ((0.95, 0.2, 0.05), 0.2)], 0.03)
    rows = [span(BOX, -l / 2, l / 2, -w / 2, w / 2, 0, 0.05, M.TRIM, TRIM_RGB)]
    radii = np.linspace(0.36, 0.12, 5) * min(l, w)
    zs = np.linspace(0.05, h, 6)
    for k in range(5):
        mat, rgb = (M.REFLECTIVE, (0.95, 0.95, 0.95)) if k == 2 else (M.CONE, orange)
        rows.append(part(CYLINDER, 0, 0, zs[k], zs[k + 1], radii[k], radii[k], mat, rgb))
    return rows


def barrier(rng: np.random.Generator, l: float, w: float, h: float) -> list[list[float]]:
    """A concrete jersey barrier or a red/white plastic one; ``w`` runs along the barrier."""
    if rng.random() < 0.5:
        grey = pick(rng, [((0.7, 0.7, 0.68), 1.0)], 0.05)
        return [
            span(BOX, -l / 2, l / 2, -w / 2, w / 2, 0, 0.3 * h, M.CONCRETE, grey),
            span(BOX, -0.25 * l, 0.25 * l, -w / 2, w / 2, 0.3 * h, h, M.CONCRETE, grey),
            span(BOX, 0.25 * l, 0.25 * l + 0.02, -0.1, 0.1, 0.6 * h, 0.7 * h, M.REFLECTIVE, (0.95, 0.8, 0.1)),
        ]
    rows = []
    edges = np.linspace(-w / 2, w / 2, 6)
    for k in range(5):
        mat, rgb = (M.REFLECTIVE, (0.95, 0.95, 0.95)) if k % 2 else (M.CONE, (0.85, 0.1, 0.08))
        rows.append(span(BOX, -l / 2, l / 2, edges[k], edges[k + 1], 0, h, mat, rgb))
    return rows
