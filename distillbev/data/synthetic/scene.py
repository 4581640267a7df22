"""One scene of the synthetic world: a straight road, the ego path, annotated objects and distractors.

The road runs along the scene's own axis ``s`` (metres) with lateral offset ``d`` (left positive):
four driving lanes (|d| < 7 m; ``+s`` traffic on the right, d < 0), parking strips (7..9.5 m),
sidewalks (9.5..12.5 m), grass, then buildings. Every object moves at constant velocity along the
road (or stands still), so poses, velocities and attributes are exact at any time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from distillbev.data.synthetic.config import WorldConfig

# Materials (index into MATERIAL_INTENSITY); the renderer colours parts by their own colour.
VEHICLE, PEDESTRIAN, CONE, BARRIER, BUILDING, POLE, TRUNK, CROWN, CLUTTER, GLASS, RIDER = range(11)
#: LiDAR intensity (0..255) per material.
MATERIAL_INTENSITY = np.array([40, 20, 200, 160, 30, 60, 15, 10, 35, 8, 20], dtype=np.float32)

#: nuScenes category, mean (l, w, h), relative size jitter, per detection class.
CLASS_SPECS: dict[str, tuple[str, tuple[float, float, float], float]] = {
    "car": ("vehicle.car", (4.6, 1.95, 1.73), 0.08),
    "truck": ("vehicle.truck", (6.9, 2.5, 2.8), 0.12),
    "construction_vehicle": ("vehicle.construction", (6.4, 2.8, 3.2), 0.1),
    "bus": ("vehicle.bus.rigid", (11.0, 2.9, 3.5), 0.06),
    "trailer": ("vehicle.trailer", (12.3, 2.9, 3.9), 0.08),
    "barrier": ("movable_object.barrier", (0.5, 2.5, 0.98), 0.08),
    "motorcycle": ("vehicle.motorcycle", (2.1, 0.77, 1.47), 0.06),
    "bicycle": ("vehicle.bicycle", (1.7, 0.6, 1.3), 0.06),
    "pedestrian": ("human.pedestrian.adult", (0.73, 0.67, 1.77), 0.08),
    "traffic_cone": ("movable_object.trafficcone", (0.41, 0.41, 1.07), 0.06),
}

LANES_SAME = (-1.75, -5.25)  # lanes driving +s (the ego's direction)
LANES_OPPOSITE = (1.75, 5.25)  # lanes driving -s


@dataclass
class Thing:
    """An object of the scene. ``parts`` are render boxes in the object frame:
    (dx, dy, z_bottom, l, w, h, material, r, g, b); annotated objects have a ``detection_name``."""

    s0: float  # road coordinate at t = 0 (m)
    d0: float  # lateral offset (m)
    heading: float  # yaw relative to the road axis (rad)
    speed: float  # m/s along the heading
    size: tuple[float, float, float]  # annotated (l, w, h)
    parts: list[tuple[float, ...]] = field(default_factory=list)
    detection_name: str = ""  # "" = distractor (never annotated)
    attribute: str = ""

    def pose(self, t: float) -> tuple[float, float]:
        """Road coordinates (s, d) at time ``t`` seconds."""
        return (
            self.s0 + self.speed * math.cos(self.heading) * t,
            self.d0 + self.speed * math.sin(self.heading) * t,
        )


@dataclass
class Scene:
    """A scene: its road frame in global coordinates, the ego motion and the things in it."""

    origin: np.ndarray  # (2,) global xy of road coordinate (0, 0)
    yaw: float  # global heading of the road axis
    ego_speed: float
    ego_d: float
    things: list[Thing]
    sun: np.ndarray  # (3,) unit vector towards the sun (global)
    ambient: float
    sky: np.ndarray  # (3,) RGB of the sky at the horizon
    tint: np.ndarray  # (3,) global colour multiplier (time of day)

    def to_global(self, s: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Road coordinates -> global xy."""
        c, si = math.cos(self.yaw), math.sin(self.yaw)
        return self.origin[0] + s * c - d * si, self.origin[1] + s * si + d * c

    def ego_pose(self, t: float) -> tuple[np.ndarray, float]:
        """Global ego position (x, y, 0) and yaw at time ``t``."""
        x, y = self.to_global(np.array(self.ego_speed * t), np.array(self.ego_d))
        return np.array([float(x), float(y), 0.0]), self.yaw

    def boxes_at(self, t: float, annotated_only: bool = False) -> tuple[np.ndarray, list[int]]:
        """Annotated boxes (N, 9) in global coords (x, y, z_centre, l, w, h, yaw, vx, vy) at time ``t``
        and the index of each in ``things``."""
        rows, idx = [], []
        for i, th in enumerate(self.things):
            if annotated_only and not th.detection_name:
                continue
            s, d = th.pose(t)
            x, y = self.to_global(np.array(s), np.array(d))
            yaw = self.yaw + th.heading
            rows.append(
                [
                    float(x),
                    float(y),
                    th.size[2] / 2,
                    *th.size,
                    yaw,
                    th.speed * math.cos(yaw),
                    th.speed * math.sin(yaw),
                ]
            )
            idx.append(i)
        return np.asarray(rows, dtype=np.float64).reshape(-1, 9), idx

    def render_boxes(self, t: float) -> dict[str, np.ndarray]:
        """Every part of every thing at time ``t`` as oriented boxes for ray casting."""
        centers, halves, yaws, owner, material, color = [], [], [], [], [], []
        for i, th in enumerate(self.things):
            s, d = th.pose(t)
            x, y = self.to_global(np.array(s), np.array(d))
            yaw = self.yaw + th.heading
            c, si = math.cos(yaw), math.sin(yaw)
            for dx, dy, z0, l, w, h, mat, r, g, b in th.parts:
                centers.append([float(x) + dx * c - dy * si, float(y) + dx * si + dy * c, z0 + h / 2])
                halves.append([l / 2, w / 2, h / 2])
                yaws.append(yaw)
                owner.append(i)
                material.append(int(mat))
                color.append([r, g, b])
        return {
            "center": np.asarray(centers, dtype=np.float64).reshape(-1, 3),
            "half": np.asarray(halves, dtype=np.float64).reshape(-1, 3),
            "yaw": np.asarray(yaws, dtype=np.float64),
            "owner": np.asarray(owner, dtype=np.int64),
            "material": np.asarray(material, dtype=np.int64),
            "color": np.asarray(color, dtype=np.float32).reshape(-1, 3),
        }


def _jitter(
    rng: np.random.Generator, mean: tuple[float, float, float], rel: float
) -> tuple[float, float, float]:
    scale = 1 + rel * np.clip(rng.normal(size=3), -2, 2)
    return tuple(float(m * s) for m, s in zip(mean, scale, strict=True))


def _color(rng: np.random.Generator, palette: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    base = np.array(palette[rng.integers(len(palette))])
    return tuple(np.clip(base * rng.uniform(0.8, 1.15) + rng.normal(0, 0.03, 3), 0, 1).tolist())


CAR_COLORS = [
    (0.8, 0.1, 0.1),
    (0.1, 0.2, 0.7),
    (0.85, 0.85, 0.85),
    (0.15, 0.15, 0.15),
    (0.6, 0.6, 0.65),
    (0.9, 0.75, 0.1),
    (0.1, 0.45, 0.2),
]
GLASS_COLOR = (0.12, 0.16, 0.22)


def _parts(name: str, size: tuple[float, float, float], rng: np.random.Generator, rider: bool) -> list[tuple]:
    """Render parts of an annotated object whose annotated box is ``size`` = (l, w, h), bottom at 0."""
    l, w, h = size
    match name:
        case "car":
            col = _color(rng, CAR_COLORS)
            return [
                (0, 0, 0.15, l, w, 0.55 * h, VEHICLE, *col),
                (-0.05 * l, 0, 0.15 + 0.55 * h, 0.6 * l, 0.92 * w, 0.85 * h - 0.55 * h, GLASS, *GLASS_COLOR),
            ]
        case "truck" | "construction_vehicle":
            palette = [(0.95, 0.6, 0.05), (0.9, 0.8, 0.1)] if name == "construction_vehicle" else CAR_COLORS
            col = _color(rng, palette)
            cab = 0.25 * l
            body = (
                -cab / 2,
                0,
                0.3,
                l - cab,
                w,
                h - 0.3,
                VEHICLE,
                *_color(rng, [(0.9, 0.9, 0.9), (0.5, 0.3, 0.2)]),
            )
            return [body, ((l - cab) / 2, 0, 0.3, cab, w, 0.85 * h - 0.3, VEHICLE, *col)]
        case "bus":
            col = _color(rng, [(0.9, 0.9, 0.95), (0.2, 0.4, 0.8), (0.8, 0.15, 0.1)])
            return [
                (0, 0, 0.3, l, w, 0.45 * h, VEHICLE, *col),
                (0, 0, 0.3 + 0.45 * h, l, w, h - 0.3 - 0.45 * h, GLASS, *GLASS_COLOR),
            ]
        case "trailer":
            return [(0, 0, 1.0, l, w, h - 1.0, VEHICLE, *_color(rng, [(0.85, 0.85, 0.8), (0.3, 0.35, 0.4)]))]
        case "pedestrian":
            shirt, pants = _color(rng, CAR_COLORS), _color(rng, [(0.15, 0.15, 0.3), (0.3, 0.25, 0.2)])
            return [
                (0, 0, 0, 0.5 * l, 0.7 * w, 0.47 * h, PEDESTRIAN, *pants),
                (0, 0, 0.47 * h, l, w, 0.38 * h, PEDESTRIAN, *shirt),
                (0, 0, 0.85 * h, 0.5 * l, 0.5 * w, 0.15 * h, PEDESTRIAN, 0.85, 0.65, 0.5),
            ]
        case "motorcycle" | "bicycle":
            frame = _color(rng, CAR_COLORS)
            low = 1.0 if name == "motorcycle" else 0.9
            parts = [(0, 0, 0, l, 0.6 * w, min(low, h), VEHICLE, *frame)]
            if rider:
                parts.append(
                    (-0.1 * l, 0, min(low, h), 0.4 * l, w, h - min(low, h), RIDER, *_color(rng, CAR_COLORS))
                )
            return parts
        case "traffic_cone":
            return [
                (0, 0, 0, l, w, 0.08 * h, CONE, 0.1, 0.1, 0.1),
                (0, 0, 0.08 * h, 0.55 * l, 0.55 * w, 0.92 * h, CONE, 1.0, 0.45, 0.05),
            ]
        case "barrier":
            return [(0, 0, 0, l, w, h, BARRIER, 0.9, 0.9, 0.9)]
    raise ValueError(f"no render parts for class {name!r}")


def _attribute(name: str, speed: float, rider: bool) -> str:
    if name in ("car", "truck", "construction_vehicle", "bus", "trailer"):
        return "vehicle.moving" if speed > 0.2 else "vehicle.parked"
    if name in ("motorcycle", "bicycle"):
        return "cycle.with_rider" if rider else "cycle.without_rider"
    if name == "pedestrian":
        return "pedestrian.moving" if speed > 0.2 else "pedestrian.standing"
    return ""


class _Slots:
    """Keeps objects in one lane/strip apart: (track, s) positions with a minimum gap."""

    def __init__(self) -> None:
        self.used: dict[float, list[tuple[float, float]]] = {}

    def free(self, track: float, s: float, half: float) -> bool:
        return all(abs(s - s2) > half + h2 + 1.0 for s2, h2 in self.used.get(track, []))

    def take(self, track: float, s: float, half: float) -> None:
        self.used.setdefault(track, []).append((s, half))


def make_scene(cfg: WorldConfig, rng: np.random.Generator, scene_index: int) -> Scene:
    """Draw one scene: road placement, lighting, the ego motion and every object."""
    duration = (cfg.samples_per_scene - 1) * 0.5
    ego_speed = float(rng.uniform(cfg.ego_speed_min, cfg.ego_speed_max))
    path = ego_speed * duration
    lane_speed = {
        d: float(rng.uniform(4, 7) if abs(d) > 3 else rng.uniform(7, 12)) for d in LANES_SAME + LANES_OPPOSITE
    }
    lane_speed[-1.75] = ego_speed  # the ego's lane moves with the ego (no collisions)
    slots = _Slots()
    slots.take(-1.75, 0.0, 3.0)  # keep the ego's own spot (at t = 0) free
    things: list[Thing] = []
    lo, hi = -55.0, path + 55.0  # the road stretch that is ever within sensor range
    mid = path / 2

    def place(track: float, half: float, near: bool, tries: int = 60) -> float | None:
        for _ in range(tries):
            s = float(rng.uniform(mid - 18, mid + 18) if near else rng.uniform(lo, hi))
            if track == -1.75:  # the ego lane moves with the ego: pick a spot ahead or behind it
                s = float(rng.choice([-1, 1]) * rng.uniform(8, 35))
            if slots.free(track, s, half):
                slots.take(track, s, half)
                return s
        return None

    counts = {
        "car": cfg.cars,
        "truck": cfg.trucks,
        "bus": cfg.buses,
        "trailer": cfg.trailers,
        "construction_vehicle": cfg.construction_vehicles,
        "pedestrian": cfg.pedestrians,
        "motorcycle": cfg.motorcycles,
        "bicycle": cfg.bicycles,
        "traffic_cone": cfg.traffic_cones,
        "barrier": cfg.barriers,
    }
    # Road works: a stretch of parking strip with a line of cones and barriers near the ego path.
    works_side = float(rng.choice([-1.0, 1.0]))
    works_s = mid + float(rng.uniform(-10, 10))
    slots.take(works_side * 8.25, works_s, 12.0)  # parked vehicles keep clear of the road works
    for name, n in counts.items():
        for k in range(max(n, 1)):
            near = k == 0  # the first of each class stays close to the ego path
            size = _jitter(rng, CLASS_SPECS[name][1], CLASS_SPECS[name][2])
            l, w, h = size
            rider, speed, heading, d = False, 0.0, 0.0, 0.0
            if name in ("traffic_cone", "barrier"):
                d = works_side * (7.3 + (0.0 if name == "traffic_cone" else 1.4)) + float(rng.normal(0, 0.1))
                s = works_s + k * (2.5 if name == "traffic_cone" else 2.8) - (n * 1.2)
                heading = math.pi / 2 if name == "barrier" else float(rng.uniform(-math.pi, math.pi))
            elif name == "pedestrian":
                d = float(rng.choice([-1, 1]) * rng.uniform(10.0, 12.0))
                s = float(rng.uniform(mid - 15, mid + 15) if near else rng.uniform(lo, hi))
                if rng.random() < 0.6:
                    speed, heading = float(rng.uniform(0.8, 1.8)), float(rng.choice([0.0, math.pi]))
                else:
                    heading = float(rng.uniform(-math.pi, math.pi))
            else:
                moving = rng.random() < (0.35 if name == "construction_vehicle" else 0.6)
                if name in ("motorcycle", "bicycle"):
                    rider = moving or rng.random() < 0.2
                    if not rider:
                        h = min(h, 1.15)
                        size = (l, w, h)
                if moving:
                    lanes = LANES_SAME + LANES_OPPOSITE
                    if name in ("bicycle",):
                        lanes = (-5.25, 5.25)
                    d = float(rng.choice(lanes))
                    speed = lane_speed[d]
                    heading = 0.0 if d < 0 else math.pi
                else:
                    d = float(rng.choice([-1, 1]) * 8.25)
                    heading = 0.0 if d < 0 else math.pi
                got = place(d, l / 2, near)
                if got is None:
                    continue
                s = got
            things.append(
                Thing(
                    s,
                    d,
                    heading,
                    speed,
                    size,
                    _parts(name, size, rng, rider),
                    name,
                    _attribute(name, speed, rider),
                )
            )
    _add_distractors(cfg, rng, things, lo, hi, slots)
    sun_az = float(rng.uniform(-math.pi, math.pi))
    sun_el = float(rng.uniform(0.25, 1.2))
    sun = np.array(
        [math.cos(sun_el) * math.cos(sun_az), math.cos(sun_el) * math.sin(sun_az), math.sin(sun_el)]
    )
    warm = float(rng.uniform(0, 1))
    tint = np.array([1.0, 1.0 - 0.12 * warm, 1.0 - 0.25 * warm]) * float(rng.uniform(0.75, 1.1))
    return Scene(
        origin=rng.uniform(-2000, 2000, 2) + np.array([scene_index * 5000.0, 0.0]),
        yaw=float(rng.uniform(-math.pi, math.pi)),
        ego_speed=ego_speed,
        ego_d=-1.75,
        things=things,
        sun=sun,
        ambient=float(rng.uniform(0.3, 0.55)),
        sky=np.array([0.55, 0.7, 0.9]) * float(rng.uniform(0.7, 1.1)),
        tint=tint,
    )


def _add_distractors(
    cfg: WorldConfig, rng: np.random.Generator, things: list[Thing], lo: float, hi: float, slots: _Slots
) -> None:
    """Un-annotated structure: buildings, poles, trees and sidewalk clutter."""
    for _ in range(cfg.buildings):
        l, w, h = rng.uniform(8, 25), rng.uniform(6, 14), rng.uniform(5, 18)
        d = float(rng.choice([-1, 1]) * (16 + w / 2 + rng.uniform(0, 6)))
        col = _color(rng, [(0.7, 0.6, 0.5), (0.55, 0.55, 0.6), (0.8, 0.75, 0.65), (0.5, 0.35, 0.3)])
        things.append(
            Thing(float(rng.uniform(lo, hi)), d, 0.0, 0.0, (l, w, h), [(0, 0, 0, l, w, h, BUILDING, *col)])
        )
    for k in range(cfg.poles):
        s = lo + (hi - lo) * (k + rng.uniform(0, 1)) / max(cfg.poles, 1)
        h = float(rng.uniform(5, 8))
        things.append(
            Thing(
                float(s),
                float(rng.choice([-1, 1]) * 12.8),
                0.0,
                0.0,
                (0.25, 0.25, h),
                [(0, 0, 0, 0.25, 0.25, h, POLE, 0.45, 0.45, 0.45)],
            )
        )
    for _ in range(cfg.trees):
        crown = float(rng.uniform(2.5, 4.0))
        trunk = float(rng.uniform(1.8, 3.0))
        things.append(
            Thing(
                float(rng.uniform(lo, hi)),
                float(rng.choice([-1, 1]) * rng.uniform(13.5, 15.0)),
                0.0,
                0.0,
                (crown, crown, trunk + crown),
                [
                    (0, 0, 0, 0.4, 0.4, trunk, TRUNK, 0.35, 0.22, 0.1),
                    (0, 0, trunk, crown, crown, crown, CROWN, *_color(rng, [(0.15, 0.45, 0.12)])),
                ],
            )
        )
    for _ in range(cfg.clutter):
        kind = int(rng.integers(3))
        l, w, h = [(1.8, 1.2, 1.3), (0.8, 0.8, 0.8), (1.8, 0.5, 0.8)][kind]
        col = _color(rng, [(0.2, 0.35, 0.2), (0.6, 0.45, 0.3), (0.3, 0.3, 0.35)])
        d = float(rng.choice([-1, 1]) * rng.uniform(10.0, 12.0))
        s = float(rng.uniform(lo, hi))
        things.append(
            Thing(s, d, float(rng.uniform(-0.2, 0.2)), 0.0, (l, w, h), [(0, 0, 0, l, w, h, CLUTTER, *col)])
        )
