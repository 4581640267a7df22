"""Annotated objects of a scene: lane traffic, parked vehicles, road works, cyclists and pedestrians.

Rules that keep the world consistent: vehicles in one lane share that lane's speed (a lane may be a
stopped queue), so they never collide; everything else is accepted only if ``Placer`` finds no overlap
with what is already there at any time of the scene.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np

from distillbev.data.synthetic import props
from distillbev.data.synthetic.catalog import make_model
from distillbev.data.synthetic.config import WorldConfig
from distillbev.data.synthetic.layout import Thing, Track
from distillbev.data.synthetic.placer import Placer
from distillbev.data.synthetic.road import Road
from distillbev.data.synthetic.shapes import Model, finalize


class Population:
    """Places the annotated objects of one scene."""

    def __init__(
        self,
        cfg: WorldConfig,
        rng: np.random.Generator,
        road: Road,
        placer: Placer,
        things: list[Thing],
        ego_lane: int,
        ego_speed: float,
        stretch: tuple[float, float, float],
        t_mid: float,
    ) -> None:
        self.cfg, self.rng, self.road, self.placer, self.things = cfg, rng, road, placer, things
        self.lo, self.hi, self.mid = stretch
        self.t_mid = t_mid
        self.t0, self.t1 = placer.times[0] - 1.0, placer.times[-1] + 1.0
        self.speeds: dict[tuple[int, int], float] = {}
        for direction in (1, -1):
            for idx in range(road.lanes):
                outer = idx == road.lanes - 1 and road.lanes > 1
                v = float(rng.uniform(4, 9) if outer else rng.uniform(6, 13))
                self.speeds[(direction, idx)] = 0.0 if rng.random() < cfg.jam_lane_prob else v
        self.speeds[(1, ego_lane)] = ego_speed
        self.bike_speed = {side: float(rng.uniform(3, 6)) for side in (-1, 1)}
        self.works: tuple[float, float, float] | None = None  # (side, s0, s1)

    # ------------------------------------------------------------------ helpers
    def s_mid(self, near: bool, spread: float = 25.0) -> float:
        """Road position at mid-scene: near the ego, or anywhere on the visible stretch."""
        return float(
            self.mid + self.rng.uniform(-spread, spread) if near else self.rng.uniform(self.lo, self.hi)
        )

    def place(self, group: list[tuple[str, Model, str, Track, bool, bool]], margin: float = 0.3) -> bool:
        """Add a group of objects if every member fits (members are spaced by the caller)."""
        for _, model, _, track, _, _ in group:
            if not self.placer.fits(track, model, margin):
                return False
        for name, model, category, track, parked, rider in group:
            self.placer.add(track, model)
            self.things.append(Thing(name, model, track, category, parked, rider))
        return True

    def moving(self, s: float, d: float, v: float, heading: float) -> Track:
        """Constant speed ``v`` along the road (sign = direction), at ``s`` at mid-scene."""
        return Track.linear(self.t0, self.t1, s, d, v, 0.0, heading, self.t_mid)

    # ------------------------------------------------------------------ roles
    def in_lane(self, name: str, near: bool, **kw) -> bool:
        """A vehicle driving (or queued) in a lane."""
        rng, road = self.rng, self.road
        direction, idx = int(rng.choice([1, -1])), int(rng.integers(road.lanes))
        v = self.speeds[(direction, idx)]
        if name in ("construction_vehicle", "bicycle") and v > 8:
            return False
        model, cat = make_model(rng, name, rider=True, **kw)
        if model.size[1] > road.lane_width - 0.25:
            return False
        d = road.lane_center(idx, direction) + float(rng.normal(0, 0.08))
        heading = 0.0 if direction > 0 else math.pi
        s = self.s_mid(near)
        group = [(name, model, cat, self.moving(s, d, direction * v, heading), False, True)]
        if name == "truck" and kw.get("variant") == "tractor":  # tow a trailer
            trailer, tcat = make_model(rng, "trailer", towed=True)
            s_tr = s - direction * (model.size[0] / 2 + 0.4 + trailer.size[0] / 2)
            group.append(
                ("trailer", trailer, tcat, self.moving(s_tr, d, direction * v, heading), False, False)
            )
        return self.place(group)

    def parked(self, name: str, near: bool, rider: bool = False, **kw) -> bool:
        """A vehicle parked along the curb, facing the traffic direction of its side."""
        rng, road = self.rng, self.road
        side = float(rng.choice([-1, 1]))
        model, cat = make_model(rng, name, rider=rider, **kw)
        d = side * (road.curb - 0.25 - model.size[1] / 2) + float(rng.normal(0, 0.06))
        heading = (0.0 if side < 0 else math.pi) + float(rng.normal(0, 0.03))
        s = self.s_mid(near)
        if road.crosswalk_s is not None and abs(s - road.crosswalk_s) < 4.0 + model.size[0] / 2:
            return False  # no parking on the crosswalk
        return self.place([(name, model, cat, Track.static(s, d, heading), not rider, rider)])

    def in_lot(self, name: str, near: bool) -> bool:
        """A vehicle in a bay of the parking lot (two rows of perpendicular bays)."""
        rng, road = self.rng, self.road
        if road.lot is None:
            return self.parked(name, near)
        side, s0, s1 = road.lot
        bays = int((s1 - s0) / 2.7)
        s = s0 + 2.7 * (int(rng.integers(bays)) + 0.5)
        row = int(rng.integers(2))
        model, cat = make_model(rng, name)
        d = side * (road.walk_edge + (3.5 if row == 0 else 20.5))
        heading = float(rng.choice([-1, 1]) * math.pi / 2 + rng.normal(0, 0.06))
        return self.place([(name, model, cat, Track.static(s, d, heading), True, False)], margin=0.15)

    def bus_stop(self, near: bool) -> bool:
        """A bus halted at a stop in the parking strip, with a shelter behind it."""
        rng, road = self.rng, self.road
        side = float(rng.choice([-1, 1]))
        model, cat = make_model(rng, "bus", bendy=rng.random() < 0.1)
        s = self.s_mid(near)
        d = side * (road.curb - 0.2 - model.size[1] / 2)
        heading = 0.0 if side < 0 else math.pi
        if not self.place([("bus", model, cat, Track.static(s, d, heading), False, False)]):
            return False
        shelter = finalize(props.clutter(rng, "shelter"))
        track = Track.static(
            s + float(rng.uniform(-3, 3)), side * (road.walk_edge - 0.9), math.pi if side < 0 else 0.0
        )
        if self.placer.fits(track, shelter, 0.1):
            self.placer.add(track, shelter)
            self.things.append(Thing("shelter", shelter, track))
        return True

    def road_works(self, n_cones: int, n_barriers: int) -> tuple[int, int]:
        """Close a stretch of the parking strip near the ego path: a line of cones along the lane, a
        row of barriers along the curb. Returns how many cones and barriers were placed."""
        rng, road = self.rng, self.road
        side = float(rng.choice([-1, 1]))
        length = float(rng.uniform(12, 28))
        s0 = self.mid + float(rng.uniform(-12, 12)) - length / 2
        self.works = (side, s0, s0 + length)
        cones = barriers = 0
        spacing = max(2.0, (length + 6.0) / max(n_cones, 1))
        for k in range(n_cones):
            s = s0 - 6.0 + k * spacing
            if s > s0 + length:
                break
            taper = float(np.clip((s - (s0 - 6.0)) / 6.0, 0.0, 1.0))  # cones lead in from the curb
            d = side * (road.curb - 0.5 - taper * (road.curb - 0.5 - road.road_edge - 0.35))
            model, cat = make_model(rng, "traffic_cone")
            cones += self.place(
                [("traffic_cone", model, cat, Track.static(s, d, float(rng.uniform(-3, 3))), False, False)],
                0.05,
            )
        s = s0 + 1.0
        for _ in range(n_barriers):
            model, cat = make_model(rng, "barrier")
            s += model.size[1] / 2
            if s > s0 + length:
                break
            track = Track.static(s, side * (road.curb - 0.45), math.pi / 2 + float(rng.normal(0, 0.03)))
            barriers += self.place([("barrier", model, cat, track, False, False)], 0.05)
            s += model.size[1] / 2 + float(rng.uniform(0.1, 0.5))
        return cones, barriers

    def construction_site(self, near: bool) -> bool:
        """A construction vehicle on the plot beyond the sidewalk next to the road works."""
        rng, road = self.rng, self.road
        side, s0, s1 = self.works if (self.works and near) else (float(rng.choice([-1, 1])), self.lo, self.hi)
        model, cat = make_model(rng, "construction_vehicle")
        d = side * (road.walk_edge + 1.0 + model.size[1] / 2 + float(rng.uniform(0, 3)))
        heading = float(rng.uniform(-math.pi, math.pi))
        s = float(rng.uniform(s0, s1))
        return self.place([("construction_vehicle", model, cat, Track.static(s, d, heading), True, False)])

    def loose(self, name: str, near: bool) -> bool:
        """A cone or barrier on its own at the curb (closing a parking bay)."""
        rng, road = self.rng, self.road
        side = float(rng.choice([-1, 1]))
        model, cat = make_model(rng, name)
        heading = math.pi / 2 if name == "barrier" else float(rng.uniform(-3, 3))
        track = Track.static(self.s_mid(near), side * (road.curb - 0.6), heading)
        return self.place([(name, model, cat, track, False, False)], 0.05)

    def cyclist(self, near: bool) -> bool:
        """A bicycle ridden in the bike lane (or at the edge of the outer lane)."""
        rng, road = self.rng, self.road
        side = int(rng.choice([-1, 1]))
        direction = -side  # right-hand traffic: the d < 0 side travels +s
        if road.bike_lane:
            d, v = side * (road.road_edge + road.bike_lane / 2), self.bike_speed[side]
        else:
            d, v = side * (road.road_edge - 0.7), self.speeds[(direction, road.lanes - 1)]
            if not 2.0 <= v <= 8.0:
                return False
        model, cat = make_model(rng, "bicycle", rider=True)
        heading = 0.0 if direction > 0 else math.pi
        return self.place(
            [("bicycle", model, cat, self.moving(self.s_mid(near), d, direction * v, heading), False, True)]
        )

    def parked_cycle(self, name: str, near: bool) -> bool:
        """A bicycle or motorcycle standing on the sidewalk edge, across it."""
        rng, road = self.rng, self.road
        side = float(rng.choice([-1, 1]))
        model, cat = make_model(rng, name, rider=False)
        d = side * (road.curb + 0.3 + model.size[0] / 2)
        heading = float(rng.choice([-1, 1]) * math.pi / 2 + rng.normal(0, 0.1))
        return self.place([(name, model, cat, Track.static(self.s_mid(near), d, heading), True, False)], 0.1)

    def pedestrian(self, near: bool, behaviour: str = "walking") -> bool:
        """A pedestrian ``walking`` or ``standing`` on a sidewalk, ``crossing`` at the zebra, or a
        ``worker`` in the road works."""
        rng, road = self.rng, self.road
        role = (
            "worker"
            if behaviour == "worker"
            else str(rng.choice(["adult", "child", "police"], p=[0.9, 0.08, 0.02]))
        )
        side = float(rng.choice([-1, 1]))
        d = side * (road.curb + 0.25 + rng.uniform(0.5, road.sidewalk - 0.4))
        s = self.s_mid(near, 20.0)
        if behaviour == "worker" and self.works is not None:
            ws, w0, w1 = self.works
            s, d = float(rng.uniform(w0, w1)), ws * (road.curb - rng.uniform(0.6, 1.6))
        if behaviour in ("standing", "worker"):
            model, cat = make_model(rng, "pedestrian", role=role, walking=False)
            track = Track.static(s, d, float(rng.uniform(-math.pi, math.pi)))
            return self.place([("pedestrian", model, cat, track, False, False)], 0.15)
        model, cat = make_model(rng, "pedestrian", role=role, walking=True)
        v = float(rng.uniform(0.9, 1.7))
        if behaviour == "crossing" and road.crosswalk_s is not None:
            s = road.crosswalk_s + float(rng.uniform(-1.5, 1.5))
            d0 = side * (road.curb + 0.6)
            tc = float(rng.uniform(self.t0 - 3, self.t1 - 3))
            t_end = tc + 2 * abs(d0) / v
            heading = -side * math.pi / 2
            track = Track(
                np.array([tc, t_end]), np.array([s, s]), np.array([d0, -d0]), np.array([heading, heading])
            )
            return self.place([("pedestrian", model, cat, track, False, False)], 0.15)
        direction = float(rng.choice([-1, 1]))
        heading = 0.0 if direction > 0 else math.pi
        if rng.random() < 0.25:  # stops for a while on the way
            tp = float(rng.uniform(self.t0, self.t1))
            dp = float(rng.uniform(2, 8))
            sp = s + direction * v * (tp - self.t_mid)
            ts = np.array([self.t0, tp, tp + dp, self.t1 + dp])
            ss = np.array([sp - direction * v * (tp - self.t0), sp, sp, sp + direction * v * (self.t1 - tp)])
            track = Track(ts, ss, np.full(4, d), np.full(4, heading))
        else:
            track = self.moving(s, d, direction * v, heading)
        group = [("pedestrian", model, cat, track, False, False)]
        if rng.random() < 0.2:  # a companion walking alongside
            friend, fcat = make_model(rng, "pedestrian", walking=True)
            offset = -side * 0.8
            group.append(
                (
                    "pedestrian",
                    friend,
                    fcat,
                    Track(track.t, track.s, track.d + offset, track.heading),
                    False,
                    False,
                )
            )
        return self.place(group, 0.15)

    # ------------------------------------------------------------------ role choice
    def roles(self, name: str, first: bool) -> list[Callable[[bool], bool]]:
        """Ways to place one instance of ``name``: a randomly drawn role, then a fallback."""
        u = self.rng.random()
        crossing = self.road.crosswalk_s is not None and self.rng.random() < 0.6
        match name:
            case "car":
                role = self.in_lane if u < 0.5 else self.parked if u < 0.85 else self.in_lot
                return [partial(role, "car"), partial(self.parked, "car")]
            case "truck":
                variant = str(self.rng.choice(["pickup", "box", "tractor"], p=[0.35, 0.4, 0.25]))
                lane = partial(self.in_lane, "truck", variant=variant)
                return [lane if u < 0.45 else partial(self.parked, "truck"), partial(self.parked, "truck")]
            case "bus":
                lane = partial(self.in_lane, "bus", bendy=self.rng.random() < 0.1)
                return [lane if u < 0.6 else self.bus_stop, self.bus_stop]
            case "trailer":  # towed behind a tractor in a lane, or parked on its own
                towed = partial(self.in_lane, "truck", variant="tractor")
                return [
                    towed if u < 0.3 else partial(self.parked, "trailer"),
                    partial(self.parked, "trailer"),
                ]
            case "construction_vehicle":
                lane = partial(self.in_lane, "construction_vehicle")
                return (
                    [self.construction_site]
                    if first
                    else [lane if u < 0.25 else self.construction_site, self.construction_site]
                )
            case "motorcycle":
                rider = self.rng.random() < 0.15
                parked = partial(self.parked, "motorcycle", rider=rider)
                role = (
                    partial(self.in_lane, "motorcycle")
                    if u < 0.45
                    else parked
                    if u < 0.8
                    else partial(self.parked_cycle, "motorcycle")
                )
                return [role, parked]
            case "bicycle":
                return [
                    self.cyclist if u < 0.45 else partial(self.parked_cycle, "bicycle"),
                    partial(self.parked_cycle, "bicycle"),
                ]
            case "pedestrian":
                other = "crossing" if crossing else "worker"
                behaviour = "walking" if u < 0.5 else "standing" if u < 0.75 else other
                return [
                    partial(self.pedestrian, behaviour=behaviour),
                    partial(self.pedestrian, behaviour="standing"),
                ]
            case "traffic_cone" | "barrier":
                return [partial(self.loose, name)]
        raise ValueError(f"unknown detection class {name!r}")


#: Placement order: large objects first, so that they find room.
ORDER = (
    "bus",
    "trailer",
    "construction_vehicle",
    "truck",
    "car",
    "motorcycle",
    "bicycle",
    "pedestrian",
    "traffic_cone",
    "barrier",
)


def populate(
    cfg: WorldConfig,
    rng: np.random.Generator,
    road: Road,
    placer: Placer,
    things: list[Thing],
    ego_lane: int,
    ego_speed: float,
    stretch: tuple[float, float, float],
    t_mid: float,
) -> None:
    """Place every annotated class: the configured counts (x 0.6-1.4 per scene, at least one each),
    the first instance of each class near the ego's mid-scene position."""
    pop = Population(cfg, rng, road, placer, things, ego_lane, ego_speed, stretch, t_mid)

    def count(n: int) -> int:
        return max(1, int(round(n * rng.uniform(0.6, 1.4))))

    n_cones, n_barriers = count(cfg.traffic_cones), count(cfg.barriers)
    cones, barriers = pop.road_works(n_cones, n_barriers)
    targets = {
        "car": count(cfg.cars),
        "truck": count(cfg.trucks),
        "bus": count(cfg.buses),
        "trailer": count(cfg.trailers),
        "construction_vehicle": count(cfg.construction_vehicles),
        "pedestrian": count(cfg.pedestrians),
        "motorcycle": count(cfg.motorcycles),
        "bicycle": count(cfg.bicycles),
        "traffic_cone": n_cones - cones if cones else 1,  # the rest beyond the road works
        "barrier": n_barriers - barriers if barriers else 1,
    }
    for name in ORDER:
        for k in range(targets[name]):
            near = k == 0 and name not in ("traffic_cone", "barrier")  # cones/barriers: the road works
            options = pop.roles(name, first=k == 0)
            for attempt in range(12 if near else 4):
                if options[min(attempt // 6, len(options) - 1)](near):
                    break
