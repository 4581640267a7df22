"""nuScenes table rows: deterministic tokens and the static tables (categories, attributes, ...)."""

from __future__ import annotations

import hashlib

from distillbev.data.index import REQUIRED_TABLES
from distillbev.structures import ATTRIBUTE_NAMES, CAMERA_NAMES, LIDAR_NAME

#: The 13 tables the devkit loads (all must exist): the reader's list, written in full here.
TABLES: tuple[str, ...] = tuple(REQUIRED_TABLES)
#: The 23 nuScenes v1.0 categories (the world uses the ones that map to the 10 detection classes).
CATEGORIES: tuple[str, ...] = (
    "animal",
    "human.pedestrian.adult",
    "human.pedestrian.child",
    "human.pedestrian.construction_worker",
    "human.pedestrian.personal_mobility",
    "human.pedestrian.police_officer",
    "human.pedestrian.stroller",
    "human.pedestrian.wheelchair",
    "movable_object.barrier",
    "movable_object.debris",
    "movable_object.pushable_pullable",
    "movable_object.trafficcone",
    "static_object.bicycle_rack",
    "vehicle.bicycle",
    "vehicle.bus.bendy",
    "vehicle.bus.rigid",
    "vehicle.car",
    "vehicle.construction",
    "vehicle.emergency.ambulance",
    "vehicle.emergency.police",
    "vehicle.motorcycle",
    "vehicle.trailer",
    "vehicle.truck",
)
VISIBILITY_LEVELS = (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100"))
CHANNELS: tuple[str, ...] = (*CAMERA_NAMES, LIDAR_NAME)


def token(*parts: object) -> str:
    """A 32-hex token (nuScenes' shape) that is a pure function of ``parts``."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def static_tables() -> dict[str, list[dict]]:
    """category, attribute, visibility and sensor tables (identical for every seed)."""
    return {
        "category": [
            {"token": token("category", name), "name": name, "description": f"synthetic {name}"}
            for name in CATEGORIES
        ],
        "attribute": [{"token": token("attribute", a), "name": a, "description": a} for a in ATTRIBUTE_NAMES],
        "visibility": [
            {"token": t, "level": level, "description": f"visibility of whole object is between {level[1:]}%"}
            for t, level in VISIBILITY_LEVELS
        ],
        "sensor": [
            {
                "token": token("sensor", ch),
                "channel": ch,
                "modality": "lidar" if ch == LIDAR_NAME else "camera",
            }
            for ch in CHANNELS
        ],
    }


def visibility_token(fraction: float) -> str:
    """nuScenes visibility bin ('1'..'4') of a visible fraction in [0, 1]."""
    return "1" if fraction < 0.4 else "2" if fraction < 0.6 else "3" if fraction < 0.8 else "4"
