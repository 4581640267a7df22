"""A scene's contents and motion: the road, the ego path, objects on piecewise-linear tracks, lighting.

Each object moves along a ``Track``: waypoints ``(t, s, d, heading)`` in road coordinates, linearly
interpolated (constant before the first and after the last waypoint); ``heading`` is the yaw relative
to the road direction held from that waypoint on. Poses, parts and boxes of all objects at a time ``t``
are evaluated at once (vectorised), so every sensor sees the world exactly at its own timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distillbev.data.synthetic.raycast import Parts
from distillbev.data.synthetic.road import Road
from distillbev.data.synthetic.shapes import Model


@dataclass
class Track:
    """Waypoints of a motion in road coordinates (all arrays (K,), ``t`` ascending, seconds)."""

    t: np.ndarray
    s: np.ndarray
    d: np.ndarray
    heading: np.ndarray  # yaw relative to the road tangent from each waypoint on (rad)

    @staticmethod
    def static(s: float, d: float, heading: float) -> Track:
        """An object that never moves."""
        return Track(np.zeros(1), np.array([s]), np.array([d]), np.array([heading]))

    @staticmethod
    def linear(
        t0: float, t1: float, s: float, d: float, vs: float, vd: float, heading: float, t_ref: float = 0.0
    ) -> Track:
        """Constant road-coordinate velocity (vs, vd) m/s over [t0, t1], at (s, d) at time ``t_ref``."""
        ts = np.array([t0, t1])
        return Track(ts, s + vs * (ts - t_ref), d + vd * (ts - t_ref), np.array([heading, heading]))

    def at(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(s, d, heading) at ``times`` (T,)."""
        times = np.asarray(times, dtype=np.float64)
        s = np.interp(times, self.t, self.s)
        d = np.interp(times, self.t, self.d)
        k = np.clip(np.searchsorted(self.t, times, side="right") - 1, 0, len(self.t) - 1)
        return s, d, self.heading[k]


@dataclass
class Thing:
    """An object of the scene: annotated (``category`` set) or a distractor (``category`` == "")."""

    name: str  # detection class name, or the distractor kind
    model: Model
    track: Track
    category: str = ""  # nuScenes category, e.g. "vehicle.car"
    parked: bool = False  # a vehicle at rest is "parked" (else "stopped")
    rider: bool = False  # cycles: with rider


@dataclass(frozen=True)
class Lighting:
    """Per-scene light: sun direction, ambient share, sky colour, global tint."""

    sun: tuple[float, float, float]  # unit vector towards the sun (global)
    ambient: float  # 0..1 share of light that is not direct sun
    sky: tuple[float, float, float]  # RGB of the sky at the horizon
    zenith: tuple[float, float, float]  # RGB of the sky overhead
    tint: tuple[float, float, float]  # colour multiplier (time of day, white balance)
    description: str  # "noon", "afternoon", "dusk", "overcast"


@dataclass
class Scene:
    """Everything of one scene; build it with ``placement.make_scene``."""

    road: Road
    ego: Track  # the ego's rear-axle path (heading relative to the road)
    things: list[Thing]
    light: Lighting
    duration: float  # s from the first to the last key frame
    description: str = ""
    _packed: dict = field(default_factory=dict, repr=False)

    def pack(self) -> None:
        """Stack the tracks and parts of all things into arrays (call after the last thing is added)."""
        n = len(self.things)
        kmax = max(len(th.track.t) for th in self.things)
        T = np.full((n, kmax), np.inf)
        S, D, H = (np.zeros((n, kmax)) for _ in range(3))
        for i, th in enumerate(self.things):
            k = len(th.track.t)
            T[i, :k], S[i, :k], D[i, :k], H[i, :k] = th.track.t, th.track.s, th.track.d, th.track.heading
            S[i, k:], D[i, k:], H[i, k:] = th.track.s[-1], th.track.d[-1], th.track.heading[-1]
        parts = np.concatenate([th.model.parts for th in self.things])
        owner = np.concatenate([np.full(len(th.model.parts), i) for i, th in enumerate(self.things)])
        size = np.array([th.model.size for th in self.things])
        z0 = np.array([th.model.z0 for th in self.things])
        self._packed = {
            "T": T,
            "S": S,
            "D": D,
            "H": H,
            "parts": parts,
            "owner": owner,
            "size": size,
            "z0": z0,
        }

    def owner_parts(self) -> dict[int, np.ndarray]:
        """Part indices of every thing (parts are stored thing by thing)."""
        if "owner_parts" not in self._packed:
            bounds = np.searchsorted(self._packed["owner"], np.arange(len(self.things) + 1))
            self._packed["owner_parts"] = {
                i: np.arange(bounds[i], bounds[i + 1]) for i in range(len(self.things))
            }
        return self._packed["owner_parts"]

    def poses(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Global x (N,), y (N,) and yaw (N,) of every thing at time ``t``."""
        p = self._packed
        T = p["T"]
        k = (T <= t).sum(1) - 1
        rows = np.arange(len(T))
        k0 = np.clip(k, 0, T.shape[1] - 1)
        k1 = np.clip(k + 1, 0, T.shape[1] - 1)
        t0, t1 = T[rows, k0], T[rows, k1]
        with np.errstate(all="ignore"):
            f = np.where((k >= 0) & np.isfinite(t1) & (t1 > t0), (t - t0) / (t1 - t0), 0.0)
        f = np.clip(f, 0.0, 1.0)
        s = p["S"][rows, k0] + f * (p["S"][rows, k1] - p["S"][rows, k0])
        d = p["D"][rows, k0] + f * (p["D"][rows, k1] - p["D"][rows, k0])
        x, y = self.road.to_global(s, d)
        return x, y, self.road.heading_at(s) + p["H"][rows, k0]

    def ego_pose(self, t: float) -> tuple[np.ndarray, float]:
        """Global ego position (x, y) and yaw at time ``t``."""
        s, d, h = self.ego.at(np.array([t]))
        x, y = self.road.to_global(s, d)
        return np.array([float(x[0]), float(y[0])]), float(self.road.heading_at(s[0]) + h[0])

    def boxes_at(self, t: float) -> np.ndarray:
        """Tight boxes (N, 7) of every thing at ``t``: global x, y, z (centre), l, w, h, yaw."""
        x, y, yaw = self.poses(t)
        size, z0 = self._packed["size"], self._packed["z0"]
        return np.stack([x, y, z0 + size[:, 2] / 2, size[:, 0], size[:, 1], size[:, 2], yaw], 1)

    def parts_at(self, t: float) -> Parts:
        """Every part of every thing at time ``t`` in the global frame."""
        x, y, yaw = self.poses(t)
        rows, owner = self._packed["parts"], self._packed["owner"]
        yo = yaw[owner]
        c, s = np.cos(yo), np.sin(yo)
        center = np.stack(
            [
                x[owner] + rows[:, 1] * c - rows[:, 2] * s,
                y[owner] + rows[:, 1] * s + rows[:, 2] * c,
                rows[:, 3],
            ],
            1,
        )
        return Parts(
            kind=rows[:, 0].astype(np.int64),
            center=center,
            half=rows[:, 4:7],
            yaw=yo + rows[:, 7],
            owner=owner,
            material=rows[:, 8].astype(np.int64),
            color=rows[:, 9:12],
        )

    def speed(self, index: int, t: float, dt: float = 0.25) -> float:
        """Ground speed (m/s) of thing ``index`` around time ``t`` (central difference)."""
        s, d, _ = self.things[index].track.at(np.array([t - dt, t + dt]))
        x, y = self.road.to_global(s, d)
        return float(np.hypot(x[1] - x[0], y[1] - y[0]) / (2 * dt))
