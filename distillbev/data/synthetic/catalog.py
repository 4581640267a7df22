"""The annotated classes: nuScenes categories, size distributions and model construction."""

from __future__ import annotations

import numpy as np

from distillbev.data.synthetic import shapes
from distillbev.data.synthetic.shapes import Model, finalize

#: Detection class -> nuScenes category of its instances (the pedestrian/bus sub-categories vary).
CATEGORY: dict[str, str] = {
    "car": "vehicle.car",
    "truck": "vehicle.truck",
    "construction_vehicle": "vehicle.construction",
    "bus": "vehicle.bus.rigid",
    "trailer": "vehicle.trailer",
    "barrier": "movable_object.barrier",
    "motorcycle": "vehicle.motorcycle",
    "bicycle": "vehicle.bicycle",
    "pedestrian": "human.pedestrian.adult",
    "traffic_cone": "movable_object.trafficcone",
}

#: nuScenes mean (l, w, h) in m of each class, and the relative std of the per-instance variation.
SIZE_MEAN: dict[str, tuple[float, float, float]] = {
    "car": (4.6, 1.95, 1.73),
    "truck": (6.9, 2.5, 2.8),
    "construction_vehicle": (6.4, 2.8, 3.2),
    "bus": (11.0, 2.9, 3.5),
    "trailer": (12.3, 2.9, 3.9),
    "barrier": (0.5, 2.5, 0.98),
    "motorcycle": (2.1, 0.77, 1.47),
    "bicycle": (1.7, 0.6, 1.3),
    "pedestrian": (0.73, 0.67, 1.77),
    "traffic_cone": (0.41, 0.41, 1.07),
}
SIZE_REL_STD: dict[str, tuple[float, float, float]] = {
    "car": (0.08, 0.05, 0.09),
    "truck": (0.08, 0.05, 0.07),
    "construction_vehicle": (0.1, 0.07, 0.08),
    "bus": (0.06, 0.03, 0.05),
    "trailer": (0.08, 0.03, 0.05),
    "barrier": (0.1, 0.08, 0.05),
    "motorcycle": (0.06, 0.08, 0.05),
    "bicycle": (0.06, 0.08, 0.05),
    "pedestrian": (0.12, 0.1, 0.05),
    "traffic_cone": (0.1, 0.1, 0.1),
}
#: Truck sub-types: (weight, mean size). Their mixture averages the nuScenes truck size.
TRUCK_VARIANTS: dict[str, tuple[float, tuple[float, float, float]]] = {
    "pickup": (0.3, (5.4, 2.05, 1.95)),
    "box": (0.55, (7.7, 2.55, 3.3)),
    "tractor": (0.15, (6.4, 2.55, 3.4)),
}
VEHICLES = ("car", "truck", "construction_vehicle", "bus", "trailer")
CYCLES = ("motorcycle", "bicycle")


def draw_size(
    rng: np.random.Generator, mean: tuple[float, float, float], rel: tuple[float, float, float]
) -> tuple[float, float, float]:
    """A size with truncated (+-2 std) Gaussian relative jitter per dimension."""
    z = np.clip(rng.normal(size=3), -2, 2)
    return tuple(float(m * (1 + r * v)) for m, r, v in zip(mean, rel, z, strict=True))


def make_model(rng: np.random.Generator, name: str, **kw) -> tuple[Model, str]:
    """Model and nuScenes category of a new instance of detection class ``name``.

    Keywords: ``variant`` (truck: pickup/box/tractor), ``walking`` and ``role`` (pedestrian: adult,
    child, worker), ``rider`` (cycles), ``towed`` (trailer), ``bendy`` (bus)."""
    rel = SIZE_REL_STD[name]
    category = CATEGORY[name]
    match name:
        case "car":
            rows = shapes.car(rng, *draw_size(rng, SIZE_MEAN[name], rel))
        case "truck":
            variant = kw.get("variant") or str(
                rng.choice(list(TRUCK_VARIANTS), p=[v[0] for v in TRUCK_VARIANTS.values()])
            )
            rows = shapes.truck(rng, *draw_size(rng, TRUCK_VARIANTS[variant][1], rel), variant)
        case "bus":
            bendy = bool(kw.get("bendy", False))
            mean = (17.5, 2.9, 3.3) if bendy else SIZE_MEAN[name]
            category = "vehicle.bus.bendy" if bendy else category
            rows = shapes.bus(rng, *draw_size(rng, mean, rel), bendy)
        case "trailer":
            rows = shapes.trailer(rng, *draw_size(rng, SIZE_MEAN[name], rel), bool(kw.get("towed", False)))
        case "construction_vehicle":
            rows = shapes.construction_vehicle(rng, *draw_size(rng, SIZE_MEAN[name], rel))
        case "pedestrian":
            role = kw.get("role", "adult")
            walking = bool(kw.get("walking", False))
            mean = (0.5, 0.48, 1.25) if role == "child" else SIZE_MEAN[name]
            l, w, h = draw_size(rng, mean, rel)
            l *= 1.1 if walking else 0.85
            category = {
                "adult": "human.pedestrian.adult",
                "child": "human.pedestrian.child",
                "worker": "human.pedestrian.construction_worker",
                "police": "human.pedestrian.police_officer",
            }[role]
            rows = shapes.person(rng, l, w, h, walking, worker=role == "worker")
        case "motorcycle" | "bicycle":
            rider = bool(kw.get("rider", False))
            l, w, h = draw_size(rng, SIZE_MEAN[name], rel)
            h = float(rng.uniform(1.5, 1.75)) if rider else h
            rows = shapes.two_wheeler(rng, l, w, h, name == "motorcycle", rider)
        case "traffic_cone":
            rows = shapes.traffic_cone(rng, *draw_size(rng, SIZE_MEAN[name], rel))
        case "barrier":
            rows = shapes.barrier(rng, *draw_size(rng, SIZE_MEAN[name], rel))
        case _:
            raise ValueError(f"unknown detection class {name!r}")
    return finalize(rows), category
