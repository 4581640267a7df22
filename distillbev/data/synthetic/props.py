"""Un-annotated street furniture and buildings: they look like objects to both sensors (false
positives for detectors) but are never in the annotation tables.

Every function returns part rows (see ``shapes.part``) in its own frame, x along the road.
"""

from __future__ import annotations

import numpy as np

from distillbev.data.synthetic.materials import FACADES, FOLIAGE_GREENS, Material, pick
from distillbev.data.synthetic.raycast import BOX, CYLINDER, CYLINDER_Y, ELLIPSOID
from distillbev.data.synthetic.shapes import METAL_RGB, TRIM_RGB, part, span

M = Material


def building(rng: np.random.Generator, l: float, w: float, h: float) -> list[list[float]]:
    """A block (facade rendered with windows) with an optional setback upper volume."""
    facade = pick(rng, FACADES)
    rows = [span(BOX, -l / 2, l / 2, -w / 2, w / 2, 0, h, M.WALL, facade)]
    if h > 9 and rng.random() < 0.35:
        top = float(rng.uniform(3, 9))
        rows.append(
            span(BOX, -0.35 * l, 0.35 * l, -0.35 * w, 0.3 * w, h, h + top, M.WALL, pick(rng, FACADES))
        )
    elif rng.random() < 0.5:
        rows.append(span(BOX, -0.2 * l, 0.1 * l, -0.2 * w, 0.2 * w, h, h + 1.2, M.METAL, METAL_RGB))
    return rows


def street_lamp(rng: np.random.Generator, toward: float) -> list[list[float]]:
    """A lamp post whose arm reaches over the road on the side ``toward`` (+1: +y, -1: -y)."""
    h = float(rng.uniform(5.5, 8.0))
    arm = float(rng.uniform(1.2, 2.4))
    grey = pick(rng, [((0.45, 0.46, 0.48), 0.6), ((0.15, 0.17, 0.16), 0.4)], 0.03)
    return [
        part(CYLINDER, 0, 0, 0, h, 0.09, 0.09, M.METAL, grey),
        span(BOX, -0.05, 0.05, min(0, toward * arm), max(0, toward * arm), h - 0.15, h, M.METAL, grey),
        span(
            BOX,
            -0.18,
            0.18,
            toward * arm - 0.3,
            toward * arm + 0.3,
            h - 0.3,
            h - 0.1,
            M.HEADLIGHT,
            (0.85, 0.85, 0.8),
        ),
    ]


def sign(rng: np.random.Generator) -> list[list[float]]:
    """A sign post with a retro-reflective square or round plate facing along the road."""
    h = float(rng.uniform(2.0, 2.8))
    col = pick(
        rng,
        [
            ((0.8, 0.1, 0.1), 0.35),
            ((0.1, 0.25, 0.7), 0.35),
            ((0.95, 0.95, 0.95), 0.2),
            ((0.95, 0.8, 0.1), 0.1),
        ],
    )
    rows = [part(CYLINDER, 0, 0, 0, h, 0.04, 0.04, M.METAL, METAL_RGB)]
    if rng.random() < 0.5:
        rows.append(span(BOX, 0.04, 0.08, -0.35, 0.35, h - 0.2, h + 0.5, M.REFLECTIVE, col))
    else:
        rows.append(part(CYLINDER_Y, 0.06, 0, h - 0.2, h + 0.5, 0.35, 0.02, M.REFLECTIVE, col, yaw=np.pi / 2))
    return rows


def traffic_light(rng: np.random.Generator) -> list[list[float]]:
    """A pole with a dark signal head and three lamps."""
    h = float(rng.uniform(3.0, 4.0))
    rows = [
        part(CYLINDER, 0, 0, 0, h, 0.08, 0.08, M.METAL, (0.2, 0.2, 0.2)),
        span(BOX, -0.15, 0.15, -0.18, 0.18, h, h + 1.0, M.TRIM, TRIM_RGB),
    ]
    on = int(rng.integers(3))
    for k, col in enumerate([(0.9, 0.1, 0.05), (0.95, 0.7, 0.05), (0.1, 0.85, 0.3)]):
        lit = col if k == on else tuple(0.25 * c for c in col)
        z = h + 0.8 - 0.3 * k
        rows.append(
            span(BOX, 0.15, 0.18, -0.1, 0.1, z - 0.1, z + 0.1, M.HEADLIGHT if k == on else M.TRIM, lit)
        )
    return rows


def tree(rng: np.random.Generator) -> list[list[float]]:
    """A trunk and one or two ellipsoid crowns."""
    trunk_h = float(rng.uniform(1.8, 3.5))
    r = float(rng.uniform(1.3, 3.0))
    green = pick(rng, FOLIAGE_GREENS)
    rows = [
        part(
            CYLINDER, 0, 0, 0, trunk_h + r * 0.5, 0.15 + 0.04 * r, 0.15 + 0.04 * r, M.BARK, (0.3, 0.22, 0.14)
        ),
        part(ELLIPSOID, 0, 0, trunk_h, trunk_h + 2.2 * r, r, r * rng.uniform(0.85, 1.0), M.FOLIAGE, green),
    ]
    if rng.random() < 0.5:
        dx, dy = rng.uniform(-0.5, 0.5, 2) * r
        rows.append(
            part(
                ELLIPSOID,
                dx,
                dy,
                trunk_h + 0.9 * r,
                trunk_h + 2.6 * r,
                0.7 * r,
                0.7 * r,
                M.FOLIAGE,
                pick(rng, FOLIAGE_GREENS),
            )
        )
    return rows


def hedge(rng: np.random.Generator) -> list[list[float]]:
    """A trimmed hedge along the road."""
    l, h = float(rng.uniform(2, 8)), float(rng.uniform(0.6, 1.5))
    return [span(BOX, -l / 2, l / 2, -0.45, 0.45, 0, h, M.FOLIAGE, pick(rng, FOLIAGE_GREENS))]


def clutter(rng: np.random.Generator, kind: str) -> list[list[float]]:
    """Sidewalk furniture of ``kind``: dumpster, bin, crates, bench, hydrant, bollard, planter, mailbox,
    shelter."""
    match kind:
        case "dumpster":
            col = pick(rng, [((0.15, 0.35, 0.2), 0.5), ((0.15, 0.25, 0.5), 0.3), ((0.4, 0.4, 0.4), 0.2)])
            return [
                span(BOX, -0.9, 0.9, -0.6, 0.6, 0.15, 1.2, M.METAL, col),
                span(BOX, -0.95, 0.95, -0.65, 0.6, 1.2, 1.3, M.TRIM, TRIM_RGB),
            ]
        case "bin":
            col = pick(rng, [((0.2, 0.2, 0.22), 0.5), ((0.1, 0.35, 0.15), 0.3), ((0.5, 0.5, 0.5), 0.2)])
            return [part(CYLINDER, 0, 0, 0, float(rng.uniform(0.8, 1.1)), 0.3, 0.3, M.METAL, col)]
        case "crates":
            rows, z = [], 0.0
            for _ in range(int(rng.integers(1, 4))):
                s = float(rng.uniform(0.4, 0.8))
                dx, dy = rng.uniform(-0.1, 0.1, 2)
                rows.append(
                    span(
                        BOX,
                        dx - s / 2,
                        dx + s / 2,
                        dy - s / 2,
                        dy + s / 2,
                        z,
                        z + s,
                        M.WOOD,
                        pick(rng, [((0.6, 0.45, 0.28), 0.7), ((0.7, 0.6, 0.45), 0.3)]),
                    )
                )
                z += s
            return rows
        case "bench":
            wood = pick(rng, [((0.45, 0.3, 0.18), 1.0)])
            return [
                span(BOX, -0.8, 0.8, -0.22, 0.22, 0.42, 0.48, M.WOOD, wood),
                span(BOX, -0.8, 0.8, -0.25, -0.2, 0.48, 0.9, M.WOOD, wood),
                span(BOX, -0.75, -0.65, -0.22, 0.22, 0, 0.42, M.METAL, METAL_RGB),
                span(BOX, 0.65, 0.75, -0.22, 0.22, 0, 0.42, M.METAL, METAL_RGB),
            ]
        case "hydrant":
            col = pick(rng, [((0.8, 0.1, 0.08), 0.6), ((0.9, 0.75, 0.1), 0.4)])
            return [
                part(CYLINDER, 0, 0, 0, 0.6, 0.14, 0.14, M.METAL, col),
                part(ELLIPSOID, 0, 0, 0.5, 0.75, 0.14, 0.14, M.METAL, col),
                part(CYLINDER_Y, 0, 0, 0.35, 0.5, 0.075, 0.24, M.METAL, col),
            ]
        case "bollard":
            return [
                part(CYLINDER, 0, 0, 0, 0.9, 0.1, 0.1, M.METAL, (0.25, 0.25, 0.27)),
                part(CYLINDER, 0, 0, 0.7, 0.78, 0.102, 0.102, M.REFLECTIVE, (0.9, 0.9, 0.9)),
            ]
        case "planter":
            return [
                span(BOX, -0.5, 0.5, -0.5, 0.5, 0, 0.55, M.CONCRETE, (0.6, 0.58, 0.55)),
                part(ELLIPSOID, 0, 0, 0.3, 1.4, 0.55, 0.55, M.FOLIAGE, pick(rng, FOLIAGE_GREENS)),
            ]
        case "mailbox":
            return [span(BOX, -0.25, 0.25, -0.25, 0.25, 0, 1.2, M.METAL, (0.15, 0.25, 0.55))]
        case "shelter":
            glass = (0.3, 0.38, 0.42)
            return [
                span(BOX, -1.8, 1.8, 0.6, 0.65, 0.1, 2.3, M.GLASS, glass),
                span(BOX, -1.8, -1.75, -0.6, 0.6, 0.1, 2.3, M.GLASS, glass),
                span(BOX, 1.75, 1.8, -0.6, 0.6, 0.1, 2.3, M.GLASS, glass),
                span(BOX, -1.9, 1.9, -0.75, 0.75, 2.3, 2.45, M.METAL, METAL_RGB),
                span(BOX, -1.2, 1.2, 0.2, 0.6, 0.45, 0.5, M.METAL, METAL_RGB),
            ]
    raise ValueError(f"unknown clutter kind {kind!r}")


CLUTTER_KINDS: tuple[str, ...] = (
    "dumpster",
    "bin",
    "crates",
    "bench",
    "hydrant",
    "bollard",
    "planter",
    "mailbox",
)
CLUTTER_WEIGHTS = np.array([0.14, 0.18, 0.12, 0.12, 0.12, 0.14, 0.1, 0.08])
