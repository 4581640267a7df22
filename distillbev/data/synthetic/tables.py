"""nuScenes table rows: deterministic tokens and the static tables (categories, attributes, ...)."""

from __future__ import annotations

import hashlib
import math

from distillbev.data.synthetic.scene import CLASS_SPECS
from distillbev.structures import ATTRIBUTE_NAMES

VISIBILITY_LEVELS = (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100"))


def token(*parts: object) -> str:
    """A 32-hex token (nuScenes' shape) that is a pure function of ``parts``."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def quat_yaw(yaw: float) -> list[float]:
    """Quaternion (w, x, y, z) of a rotation by ``yaw`` about +z."""
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def quat_matrix(m) -> list[float]:
    """Quaternion (w, x, y, z) of a 3x3 rotation matrix (robust branch choice)."""
    tr = m[0][0] + m[1][1] + m[2][2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2][1] - m[1][2]) / s, (m[0][2] - m[2][0]) / s, (m[1][0] - m[0][1]) / s]
    elif m[0][0] > m[1][1] and m[0][0] > m[2][2]:
        s = math.sqrt(1.0 + m[0][0] - m[1][1] - m[2][2]) * 2
        q = [(m[2][1] - m[1][2]) / s, 0.25 * s, (m[0][1] + m[1][0]) / s, (m[0][2] + m[2][0]) / s]
    elif m[1][1] > m[2][2]:
        s = math.sqrt(1.0 + m[1][1] - m[0][0] - m[2][2]) * 2
        q = [(m[0][2] - m[2][0]) / s, (m[0][1] + m[1][0]) / s, 0.25 * s, (m[1][2] + m[2][1]) / s]
    else:
        s = math.sqrt(1.0 + m[2][2] - m[0][0] - m[1][1]) * 2
        q = [(m[1][0] - m[0][1]) / s, (m[0][2] + m[2][0]) / s, (m[1][2] + m[2][1]) / s, 0.25 * s]
    return [float(x) for x in q]


def static_tables(channels: list[str]) -> dict[str, list[dict]]:
    """category, attribute, visibility and sensor tables."""
    return {
        "category": [
            {"token": token("category", spec[0]), "name": spec[0], "description": f"synthetic {name}"}
            for name, spec in CLASS_SPECS.items()
        ],
        "attribute": [{"token": token("attribute", a), "name": a, "description": a} for a in ATTRIBUTE_NAMES],
        "visibility": [
            {"token": t, "level": level, "description": f"visibility of whole object is {level}"}
            for t, level in VISIBILITY_LEVELS
        ],
        "sensor": [
            {
                "token": token("sensor", ch),
                "channel": ch,
                "modality": "lidar" if ch.startswith("LIDAR") else "camera",
            }
            for ch in channels
        ],
    }


def visibility_token(fraction: float) -> str:
    """nuScenes visibility bin of a visible fraction in [0, 1]."""
    return "1" if fraction < 0.4 else "2" if fraction < 0.6 else "3" if fraction < 0.8 else "4"
