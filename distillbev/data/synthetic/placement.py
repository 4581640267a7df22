"""``make_scene``: draw one scene's road, lighting, ego path, traffic, people, road works and props.

Objects are placed one at a time and kept only if their footprint never overlaps anything placed
before (ego included) at any time of the scene (``Placer``: oriented rectangles checked every 0.1 s).
The first instance of every class is placed close to the ego's mid-scene position, and a scene is
redrawn until every class has an instance within the devkit's class range at two key frames or more.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from distillbev.data.synthetic import props
from distillbev.data.synthetic.config import WorldConfig
from distillbev.data.synthetic.layout import Lighting, Scene, Thing, Track
from distillbev.data.synthetic.lidar import simulate_lidar
from distillbev.data.synthetic.placer import Placer
from distillbev.data.synthetic.road import Road
from distillbev.data.synthetic.shapes import Model, finalize
from distillbev.data.synthetic.traffic import populate

KEY_INTERVAL = 0.5  # s between key frames (2 Hz)
SWEEP_INTERVAL = 0.05  # s between LiDAR sweeps (20 Hz)
#: nuScenes detection eval ranges (m from the ego).
CLASS_RANGE = {
    "car": 50,
    "truck": 50,
    "bus": 50,
    "trailer": 50,
    "construction_vehicle": 50,
    "pedestrian": 40,
    "motorcycle": 40,
    "bicycle": 40,
    "traffic_cone": 30,
    "barrier": 30,
}


def time_span(cfg: WorldConfig) -> tuple[float, float]:
    """First and last time (s, key frame 0 at t = 0) at which any sensor samples the scene."""
    return -SWEEP_INTERVAL * (cfg.sweeps_per_keyframe + 1) - 0.05, (
        cfg.samples_per_scene - 1
    ) * KEY_INTERVAL + 0.05


def _road(cfg: WorldConfig, rng: np.random.Generator, path: float) -> Road:
    curved = rng.random() >= cfg.straight_road_fraction
    curvature = 0.0
    if curved:
        curvature = float(rng.choice([-1, 1]) / rng.uniform(cfg.min_curve_radius, 1000.0))
    lanes = int(rng.choice([1, 2], p=[0.35, 0.65]))
    lot = None
    if rng.random() < cfg.parking_lot_prob:
        s0 = float(rng.uniform(-0.1, 0.7) * path)
        lot = (float(rng.choice([-1, 1])), s0, s0 + float(rng.uniform(25, 55)))
    return Road(
        origin=(float(rng.uniform(300, 2700)), float(rng.uniform(300, 2700))),
        heading=float(rng.uniform(-math.pi, math.pi)),
        curvature=curvature,
        lanes=lanes,
        lane_width=float(rng.uniform(3.2, 3.7)),
        bike_lane=1.6 if rng.random() < cfg.bike_lane_prob else 0.0,
        parking=float(rng.uniform(2.3, 2.7)),
        sidewalk=float(rng.uniform(2.5, 4.0)),
        urban=bool(rng.random() < 0.5),
        yellow_center=bool(rng.random() < 0.5),
        crosswalk_s=float(rng.uniform(0.2, 0.9) * path + 10) if rng.random() < cfg.crosswalk_prob else None,
        lot=lot,
    )


def _lighting(rng: np.random.Generator) -> Lighting:
    kind = str(rng.choice(["noon", "afternoon", "dusk", "overcast"], p=[0.3, 0.35, 0.15, 0.2]))
    el = {"noon": (50, 75), "afternoon": (22, 50), "dusk": (7, 18), "overcast": (30, 70)}[kind]
    elev, az = math.radians(rng.uniform(*el)), rng.uniform(-math.pi, math.pi)
    sun = (math.cos(elev) * math.cos(az), math.cos(elev) * math.sin(az), math.sin(elev))
    b = float(rng.uniform(0.85, 1.1))
    if kind == "overcast":
        sky, zenith, ambient, tint = (0.78, 0.8, 0.82), (0.62, 0.65, 0.7), 0.75, (0.92, 0.94, 0.97)
    elif kind == "dusk":
        sky, zenith, ambient, tint = (0.95, 0.7, 0.5), (0.35, 0.45, 0.7), 0.42, (1.0, 0.82, 0.68)
    else:
        sky, zenith = (0.75, 0.85, 0.95), (0.35, 0.55, 0.9)
        ambient, tint = (
            float(rng.uniform(0.32, 0.45)),
            (1.0, 0.98, 0.95) if kind == "noon" else (1.0, 0.93, 0.85),
        )
    return Lighting(sun, ambient, sky, zenith, tuple(t * b for t in tint), kind)


def _distractors(
    cfg: WorldConfig,
    rng: np.random.Generator,
    road: Road,
    placer: Placer,
    things: list[Thing],
    lo: float,
    hi: float,
    mid: float,
) -> None:
    """Buildings, trees, poles and clutter, nearest to the ego path first."""

    def add(
        name: str, rows: list[list[float]], s: float, d: float, heading: float, margin: float = 0.1
    ) -> bool:
        model = finalize(rows)
        track = Track.static(s, d, heading)
        if not placer.fits(track, model, margin):
            return False
        placer.add(track, model)
        things.append(Thing(name, model, track))
        return True

    # Buildings: rows of blocks on both sides, the ones nearest the middle of the ego path first.
    slots = []
    for side in (-1.0, 1.0):
        s = lo - float(rng.uniform(0, 10))
        while s < hi:
            length = float(rng.uniform(8, 30))
            gap = float(rng.uniform(0, 4) if road.urban else rng.uniform(3, 15))
            slots.append((abs(s + length / 2 - mid), side, s + length / 2, length))
            s += length + gap
    for _, side, s, length in sorted(slots)[: cfg.buildings]:
        depth = float(rng.uniform(8, 16))
        h = float(rng.uniform(6, 24) if road.urban else rng.uniform(4, 10))
        setback = float(rng.uniform(0.2, 1.5) if road.urban else rng.uniform(3, 10))
        d = side * (road.walk_edge + setback + depth / 2)
        if (
            road.lot is not None
            and side == road.lot[0]
            and road.lot[1] - length / 2 < s < road.lot[2] + length / 2
        ):
            d = side * (road.walk_edge + 26 + depth / 2)
        add("building", props.building(rng, length, depth, h), s, d, 0.0, margin=0.3)
    # Street lamps, signs and traffic lights along the curb.
    n_lights = 4 if road.crosswalk_s is not None else 0
    for k in range(cfg.poles):
        side = float(rng.choice([-1, 1]))
        d = side * (road.curb + 0.25 + 0.35)
        if k < n_lights and road.crosswalk_s is not None:
            s = road.crosswalk_s + (3.0 if k % 2 else -3.0)
            d = (-1.0 if k < 2 else 1.0) * (road.curb + 0.25 + 0.35)
            add("traffic_light", props.traffic_light(rng), s, d, 0.0 if d < 0 else math.pi)
            continue
        s = float(rng.uniform(lo, hi) if k % 3 else mid + rng.uniform(-30, 30))
        if rng.random() < 0.6:
            add("street_lamp", props.street_lamp(rng, -side), s, d, 0.0)
        else:
            add("sign", props.sign(rng), s, d, 0.0 if side < 0 else math.pi)
    for k in range(cfg.trees):
        side = float(rng.choice([-1, 1]))
        d = side * ((road.curb + 0.9) if road.urban else road.walk_edge + rng.uniform(1.0, 3.5))
        s = float(rng.uniform(lo, hi) if k % 2 else mid + rng.uniform(-40, 40))
        add("tree", props.tree(rng), s, d, 0.0, margin=0.0)
        if not road.urban and rng.random() < 0.25:
            add("hedge", props.hedge(rng), s + rng.uniform(4, 8), side * (road.walk_edge + 0.8), 0.0)
    for k in range(cfg.clutter):
        kind = str(rng.choice(props.CLUTTER_KINDS, p=props.CLUTTER_WEIGHTS / props.CLUTTER_WEIGHTS.sum()))
        side = float(rng.choice([-1, 1]))
        if kind in ("hydrant", "bollard", "bin", "mailbox"):
            d = side * (road.curb + 0.25 + rng.uniform(0.3, 0.7))
        else:
            d = side * (road.walk_edge - rng.uniform(0.5, 1.0))
        s = float(mid + rng.uniform(-35, 35) if k % 2 else rng.uniform(lo, hi))
        heading = float(rng.choice([0.0, math.pi]) + rng.normal(0, 0.05))
        add(kind, props.clutter(rng, kind), s, d, heading)
        if kind == "bollard":  # bollards come in rows
            for j in range(1, int(rng.integers(2, 5))):
                add(kind, props.clutter(rng, kind), s + 1.5 * j, d, 0.0)


def _attempt(cfg: WorldConfig, rng: np.random.Generator) -> Scene:
    duration = (cfg.samples_per_scene - 1) * KEY_INTERVAL
    t_lo, t_hi = time_span(cfg)
    ego_speed = float(rng.uniform(cfg.ego_speed_min, cfg.ego_speed_max))
    path = ego_speed * duration
    road = _road(cfg, rng, path)
    ego_lane = int(rng.integers(road.lanes))
    ego = Track.linear(t_lo - 1, t_hi + 1, 0.0, road.lane_center(ego_lane, 1), ego_speed, 0.0, 0.0)
    placer = Placer(road, t_lo, t_hi)
    ego_model = Model(np.zeros((0, 12)), (4.9, 2.0, 1.8), 0.0)
    placer.add(ego, ego_model, forward=1.4)  # the ego frame is at the rear axle
    things: list[Thing] = []
    mid = path / 2
    lo, hi = -75.0, path + 75.0
    populate(cfg, rng, road, placer, things, ego_lane, ego_speed, (lo, hi, mid), duration / 2)
    _distractors(cfg, rng, road, placer, things, lo, hi, mid)
    features = [
        "straight" if road.curvature == 0 else f"curve R={abs(1 / road.curvature):.0f} m",
        f"{road.lanes} lane(s) per direction",
        "bike lanes" if road.bike_lane else "",
        "crosswalk" if road.crosswalk_s is not None else "",
        "parking lot" if road.lot is not None else "",
        "urban" if road.urban else "suburban",
        "road works",
    ]
    scene = Scene(road, ego, things, _lighting(rng), duration)
    scene.description = ", ".join(f for f in features if f) + f", {scene.light.description}"
    scene.pack()
    return scene


def _covers_every_class(scene: Scene, cfg: WorldConfig) -> bool:
    """Every class has an instance that the LiDAR sees (>= 3 returns of a quick noise-free sweep) at a
    key frame where it is within the class's eval range, and that is annotated at >= 2 key frames."""
    quick = replace(cfg, lidar_azimuth_steps=min(cfg.lidar_azimuth_steps, 720), lidar_dropout=0.0)
    n_key = cfg.samples_per_scene
    keys = sorted({0, n_key // 2, n_key - 1})
    dists = []
    for k in range(n_key):
        ego, _ = scene.ego_pose(k * KEY_INTERVAL)
        x, y, _ = scene.poses(k * KEY_INTERVAL)
        dists.append(np.hypot(x - ego[0], y - ego[1]))
    dists = np.stack(dists, 1)  # (N, K)
    annotated = (dists <= cfg.annotation_range).sum(1) >= 2
    seen: set[str] = set()
    for k in keys:
        _, owner = simulate_lidar(
            quick, scene, k * KEY_INTERVAL, scene.owner_parts(), np.random.default_rng(0)
        )
        hits = np.bincount(owner[owner >= 0], minlength=len(scene.things))
        for i, th in enumerate(scene.things):
            if th.category and annotated[i] and hits[i] >= 3 and dists[i, k] <= CLASS_RANGE[th.name] - 2:
                seen.add(th.name)
    return seen == set(CLASS_RANGE)


def make_scene(cfg: WorldConfig, rng: np.random.Generator) -> Scene:
    """Draw a scene; redrawn (from the same generator) until every class is near the ego path."""
    for _ in range(20):
        scene = _attempt(cfg, rng)
        if _covers_every_class(scene, cfg):
            return scene
    raise RuntimeError(
        "could not place every class near the ego path in 20 attempts; raise the object counts"
    )
