"""The synthetic world: devkit loading, annotation invariants, sensors, masks, geometry, determinism."""

import hashlib
import json
import math
from collections import Counter, defaultdict

import cv2
import numpy as np
import pytest
from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import points_in_box, view_points
from nuscenes.utils.splits import get_scenes_of_split
from pyquaternion import Quaternion

from distillbev.config import load_config
from distillbev.data.synthetic.catalog import SIZE_MEAN
from distillbev.data.synthetic.config import WorldConfig
from distillbev.data.synthetic.generate import generate_world
from distillbev.data.synthetic.layout import Track
from distillbev.data.synthetic.lidar import simulate_lidar
from distillbev.data.synthetic.placement import make_scene
from distillbev.data.synthetic.raycast import BOX, CYLINDER, CYLINDER_Y, ELLIPSOID, intersect
from distillbev.data.synthetic.road import Road
from distillbev.structures import CLASS_NAMES, points_in_boxes

TINY = [
    "num_scenes=2",
    "num_val_scenes=1",
    "samples_per_scene=2",
    "image_width=48",
    "image_height=27",
    "lidar_azimuth_steps=128",
    "workers=1",
]


def _camera_box(nusc, box, sd):
    """The devkit's box of a camera image moved to the image's own timestamp (cameras fire a few ms
    before the key frame; objects move at their annotated velocity)."""
    ann = nusc.get("sample_annotation", box.token)
    dt = (sd["timestamp"] - nusc.get("sample", ann["sample_token"])["timestamp"]) / 1e6
    v = np.nan_to_num(nusc.box_velocity(ann["token"]))
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    shift = (
        Quaternion(cs["rotation"]).inverse.rotation_matrix
        @ Quaternion(pose["rotation"]).inverse.rotation_matrix
        @ (v * dt)
    )
    box = box.copy()
    box.translate(shift)
    return box


def test_devkit_loads_and_splits_resolve(smoke_world, smoke_nusc):
    train = get_scenes_of_split(smoke_world.train_split, smoke_nusc)
    val = get_scenes_of_split(smoke_world.val_split, smoke_nusc)
    cfg = smoke_world.config
    assert len(val) == cfg.num_val_scenes and len(train) == cfg.num_scenes - cfg.num_val_scenes
    assert not set(train) & set(val)
    assert len(smoke_nusc.sample) == cfg.num_scenes * cfg.samples_per_scene
    lidar = [sd for sd in smoke_nusc.sample_data if sd["channel"] == "LIDAR_TOP"]
    assert sum(not sd["is_key_frame"] for sd in lidar) == cfg.sweeps_per_keyframe * len(smoke_nusc.sample)
    # Every sample_data has its own ego pose, at its own timestamp; cameras fire just before the LiDAR.
    poses = [sd["ego_pose_token"] for sd in smoke_nusc.sample_data]
    assert len(set(poses)) == len(poses)
    for sd in smoke_nusc.sample_data:
        assert smoke_nusc.get("ego_pose", sd["ego_pose_token"])["timestamp"] == sd["timestamp"]
        if sd["sensor_modality"] == "camera":
            dt = sd["timestamp"] - smoke_nusc.get("sample", sd["sample_token"])["timestamp"]
            assert -50_000 < dt <= 0
    for name in ("ego_pose", "sample", "sample_annotation", "instance", "scene", "sample_data"):
        for row in getattr(smoke_nusc, name):
            assert len(row["token"]) == 32 and int(row["token"], 16) >= 0


def test_calibration_is_n015_like(smoke_world, smoke_nusc):
    cfg = smoke_world.config
    sensors = {s["token"]: s["channel"] for s in smoke_nusc.sensor}
    calib = {sensors[c["sensor_token"]]: c for c in smoke_nusc.calibrated_sensor}
    K = np.array(calib["CAM_FRONT"]["camera_intrinsic"])
    sx = cfg.image_width / 1600
    np.testing.assert_allclose(K[0], [1266.417 * sx, 0, 816.267 * sx], atol=1e-3)
    np.testing.assert_allclose(
        K[1], [0, 1266.417 * cfg.image_height / 900, 491.507 * cfg.image_height / 900], atol=1e-3
    )
    lidar = calib["LIDAR_TOP"]
    np.testing.assert_allclose(lidar["translation"], [0.943713, 0.0, 1.84023])
    assert Quaternion(lidar["rotation"]).yaw_pitch_roll[0] == pytest.approx(-math.pi / 2)
    front = Quaternion(calib["CAM_FRONT"]["rotation"]).rotation_matrix
    np.testing.assert_allclose(front[:, 2], [1, 0, 0], atol=0.02)  # the optical axis looks forward
    back = Quaternion(calib["CAM_BACK"]["rotation"]).rotation_matrix
    np.testing.assert_allclose(back[:, 2], [-1, 0, 0], atol=0.02)


def test_instances_attributes_and_velocities(smoke_nusc):
    for inst in smoke_nusc.instance:
        assert inst["nbr_annotations"] >= 2
    moving = stopped = 0
    for ann in smoke_nusc.sample_annotation:
        assert len(ann["attribute_tokens"]) <= 1
        name = category_to_detection_name(ann["category_name"])
        assert name in CLASS_NAMES
        speed = float(np.linalg.norm(smoke_nusc.box_velocity(ann["token"])[:2]))
        attrs = [smoke_nusc.get("attribute", t)["name"] for t in ann["attribute_tokens"]]
        if name in ("traffic_cone", "barrier"):
            assert attrs == []
            assert speed < 1e-6
        elif name in ("car", "truck", "bus", "trailer", "construction_vehicle", "pedestrian"):
            if speed > 0.8:
                assert attrs[0].endswith(".moving"), (name, speed, attrs)
                moving += 1
            elif speed < 0.05:
                assert not attrs[0].endswith(".moving"), (name, speed, attrs)
                stopped += 1
        else:
            assert attrs[0] in ("cycle.with_rider", "cycle.without_rider")
            if speed > 0.8:
                assert attrs[0] == "cycle.with_rider"
    assert moving > 10 and stopped > 10


def test_every_class_in_val_with_points(smoke_world, smoke_nusc):
    val = set(get_scenes_of_split(smoke_world.val_split, smoke_nusc))
    seen = Counter()
    for ann in smoke_nusc.sample_annotation:
        scene = smoke_nusc.get("scene", smoke_nusc.get("sample", ann["sample_token"])["scene_token"])
        if scene["name"] in val and ann["num_lidar_pts"] > 0:
            seen[category_to_detection_name(ann["category_name"])] += 1
    assert set(seen) == set(CLASS_NAMES)


def test_num_lidar_pts_matches_devkit(smoke_nusc):
    checked = 0
    for sample in smoke_nusc.sample:
        path, boxes, _ = smoke_nusc.get_sample_data(sample["data"]["LIDAR_TOP"])
        pts = LidarPointCloud.from_file(path).points
        for box in boxes:
            ann = smoke_nusc.get("sample_annotation", box.token)
            assert int(points_in_box(box, pts[:3]).sum()) == ann["num_lidar_pts"]
            checked += 1
    assert checked > 100
    # Objects really are hit by the LiDAR: most annotations within 30 m have points.
    near = [
        a["num_lidar_pts"] > 0
        for a in smoke_nusc.sample_annotation
        if np.hypot(
            *np.subtract(
                a["translation"][:2],
                smoke_nusc.get(
                    "ego_pose",
                    smoke_nusc.get(
                        "sample_data", smoke_nusc.get("sample", a["sample_token"])["data"]["LIDAR_TOP"]
                    )["ego_pose_token"],
                )["translation"][:2],
            )
        )
        < 30
    ]
    assert np.mean(near) > 0.6


def test_point_cloud_format_and_frame(smoke_world, smoke_nusc):
    cfg = smoke_world.config
    sd = smoke_nusc.get("sample_data", smoke_nusc.sample[0]["data"]["LIDAR_TOP"])
    raw = np.fromfile(smoke_world.dataroot / sd["filename"], dtype=np.float32).reshape(-1, 5)
    assert len(raw) > 5000
    assert set(np.unique(raw[:, 4]).astype(int)) <= set(range(cfg.lidar_beams))
    assert raw[:, 3].min() >= 0 and raw[:, 3].max() <= 255
    assert np.linalg.norm(raw[:, :3], axis=1).max() <= cfg.lidar_max_range + 0.1
    # The lowest ring sees the flat ground 1.84 m below the sensor (the LiDAR mount height of n015).
    assert np.median(raw[raw[:, 4] == 0, 2]) == pytest.approx(-1.84023, abs=0.02)
    # Retro-reflective cones and barriers are brighter than the asphalt.
    bright = []
    for sample in smoke_nusc.sample:
        path, boxes, _ = smoke_nusc.get_sample_data(sample["data"]["LIDAR_TOP"])
        pts = LidarPointCloud.from_file(path).points
        bright += [pts[3, points_in_box(b, pts[:3])] for b in boxes if b.name.startswith("movable_object")]
    bright = np.concatenate(bright)
    assert len(bright) > 20 and np.median(bright) > 3 * np.median(raw[raw[:, 4] == 0, 3])


def test_lidar_hits_lie_in_their_boxes():
    """Without range noise, every point the LiDAR gets from an annotated object is inside that object's
    tight box (the box bounds exactly what is rendered)."""
    cfg = load_config(
        WorldConfig, [], ["samples_per_scene=4", "lidar_range_noise=0", "lidar_azimuth_steps=720"]
    )
    scene = make_scene(cfg, np.random.default_rng(7))
    cloud, hit_owner = simulate_lidar(cfg, scene, 0.7, scene.owner_parts(), np.random.default_rng(0))
    ego_xy, ego_yaw = scene.ego_pose(0.7)
    c, s = math.cos(ego_yaw - math.pi / 2), math.sin(ego_yaw - math.pi / 2)
    lidar_xy = ego_xy + np.array([math.cos(ego_yaw), math.sin(ego_yaw)]) * 0.943713
    glob = np.stack(
        [
            lidar_xy[0] + cloud[:, 0] * c - cloud[:, 1] * s,
            lidar_xy[1] + cloud[:, 0] * s + cloud[:, 1] * c,
            cloud[:, 2] + 1.84023,
        ],
        1,
    )
    boxes = scene.boxes_at(0.7)
    annotated = [i for i, th in enumerate(scene.things) if th.category]
    checked = 0
    for i in annotated:
        pts = glob[hit_owner == i]
        if len(pts):
            assert points_in_boxes(pts, boxes[i : i + 1], margin=2e-3).all(), scene.things[i].name
            checked += 1
    assert checked > 10


def test_projected_boxes_land_on_their_masks(smoke_world, smoke_nusc):
    """Mask pixels of an object are rays that meet its 3D box; the projected centre of a fully visible
    object lies inside its mask's bounding box."""
    rays_ok = rays = centred = visible = 0
    for sample in smoke_nusc.sample:
        for cam in ("CAM_FRONT", "CAM_BACK", "CAM_FRONT_LEFT", "CAM_BACK_RIGHT"):
            sd = smoke_nusc.get("sample_data", sample["data"][cam])
            _, boxes, K = smoke_nusc.get_sample_data(sd["token"])
            K = np.asarray(K)
            stem = sd["filename"].split("/")[-1][: -len(".jpg")]
            mask = cv2.imread(str(smoke_world.dataroot / "masks" / cam / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            meta = json.loads((smoke_world.dataroot / "masks" / cam / f"{stem}.json").read_text())
            assert mask.dtype == np.uint16 and mask.shape == (sd["height"], sd["width"])
            assert [i["id"] for i in meta["instances"]] == list(range(1, len(meta["instances"]) + 1))
            assert set(np.unique(mask)) <= set(range(len(meta["instances"]) + 1))
            by_ann = {i["annotation_token"]: i for i in meta["instances"]}
            for box in boxes:
                entry = by_ann.get(box.token)
                assert entry is not None  # every annotation of the sample is listed
                ann = smoke_nusc.get("sample_annotation", box.token)
                assert entry["category_name"] == ann["category_name"]
                assert entry["instance_token"] == ann["instance_token"]
                assert entry["detection_name"] == category_to_detection_name(ann["category_name"])
                ys, xs = np.nonzero(mask == entry["id"])
                if len(xs) == 0:
                    continue
                box = _camera_box(smoke_nusc, box, sd)
                # Rays through the mask pixel centres, in the box frame: slab test against the box.
                d = np.linalg.inv(K) @ np.stack([xs + 0.5, ys + 0.5, np.ones(len(xs))])
                rot = box.orientation.rotation_matrix
                o = rot.T @ (-box.center)
                dl = rot.T @ d
                half = np.array([box.wlh[1], box.wlh[0], box.wlh[2]]) / 2 + 0.02
                with np.errstate(divide="ignore", invalid="ignore"):
                    t1, t2 = (-half[:, None] - o[:, None]) / dl, (half[:, None] - o[:, None]) / dl
                hit = np.minimum(t1, t2).max(0) <= np.maximum(t1, t2).min(0)
                rays_ok += int(hit.sum())
                rays += len(xs)
                corners = box.corners()
                inside = corners[2].min() > 0.5
                uv = view_points(corners, K, normalize=True)[:2] if inside else None
                if (
                    inside
                    and ann["visibility_token"] == "4"
                    and len(xs) >= 40
                    and uv[0].min() >= 0
                    and uv[1].min() >= 0
                    and uv[0].max() < sd["width"]
                    and uv[1].max() < sd["height"]
                ):
                    u, v = view_points(box.center[:, None], K, normalize=True)[:2, 0]
                    visible += 1
                    centred += (xs.min() - 2 <= u <= xs.max() + 3) and (ys.min() - 2 <= v <= ys.max() + 3)
    print(f"mask rays in box {rays_ok}/{rays}, centred {centred}/{visible}")
    assert rays > 2000 and rays_ok / rays > 0.995
    assert visible > 10 and centred / visible > 0.95


def test_sizes_follow_nuscenes_means():
    cfg = load_config(WorldConfig, [], ["samples_per_scene=10"])
    sizes = defaultdict(list)
    for k in range(6):
        scene = make_scene(cfg, np.random.default_rng([11, k]))
        for th in scene.things:
            if th.category:
                sizes[th.name].append(th.model.size)
    assert set(sizes) == set(CLASS_NAMES)
    for name, values in sizes.items():
        mean = np.mean(values, 0)
        np.testing.assert_allclose(mean, SIZE_MEAN[name], rtol=0.3, err_msg=name)
        if len(values) > 5:
            assert np.std(np.array(values)[:, 0]) > 0  # per-instance variation


def test_ray_primitive_intersections_hand_computed():
    with np.errstate(all="ignore"):  # rays parallel to slabs divide by zero, by design
        o = np.zeros(3)
        d = np.array([[1.0, 0.0, 0.0]])
        c, h = np.array([10.0, 0, 0]), np.array([1.0, 1.0, 1.0])
        for kind in (BOX, CYLINDER, CYLINDER_Y, ELLIPSOID):
            tn, tf = intersect(kind, o, d, c, h, 0.0)
            assert tn[0] == pytest.approx(9.0) and tf[0] == pytest.approx(11.0)
        tn, _ = intersect(BOX, o, d, c, h, math.pi / 4)  # a diamond: the corner faces the ray
        assert tn[0] == pytest.approx(10 - math.sqrt(2))
        tn, tf = intersect(CYLINDER, o, d, c, np.array([2.0, 1.0, 1.0]), math.pi / 2)  # ellipse turned 90 deg
        assert tn[0] == pytest.approx(9.0)
        up = np.array([[0.0, 0.0, 1.0]])
        tn, tf = intersect(BOX, np.array([10.0, 0, -5]), up, c, h, 0.3)
        assert tn[0] == pytest.approx(4.0) and tf[0] == pytest.approx(6.0)
        tn, tf = intersect(ELLIPSOID, o, np.array([[0.0, 1.0, 0.0]]), c, h, 0.0)  # misses
        assert not (tn[0] <= tf[0])


@pytest.mark.parametrize("curvature", [0.0, 1 / 180.0, -1 / 400.0])
def test_road_frame_round_trip(curvature):
    road = Road((100.0, -50.0), 0.7, curvature, 2, 3.5, 0.0, 2.5, 3.0, True, False, None, None)
    s = np.linspace(-80, 250, 50)
    d = np.linspace(-25, 25, 50)
    x, y = road.to_global(s, d)
    s2, d2 = road.to_road(x, y)
    np.testing.assert_allclose(s2, s, atol=1e-8)
    np.testing.assert_allclose(d2, d, atol=1e-8)
    # The heading is the direction of the centre line.
    x0, y0 = road.to_global(s, 0 * s)
    x1, y1 = road.to_global(s + 1e-4, 0 * s)
    np.testing.assert_allclose(
        np.arctan2(y1 - y0, x1 - x0), np.angle(np.exp(1j * road.heading_at(s))), atol=1e-6
    )
    track = Track.linear(0, 10, 5.0, -1.75, 8.0, 0.0, 0.0)
    ts, ds, _ = track.at(np.array([0.0, 5.0]))
    np.testing.assert_allclose(ts, [5.0, 45.0])


def _digest(root):
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "world_config.yaml"):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_deterministic_and_seed_dependent(tmp_path):
    cfg = load_config(WorldConfig, [], TINY)
    a = generate_world(cfg, tmp_path / "a", seed=3)
    generate_world(load_config(WorldConfig, [], [*TINY, "workers=2"]), tmp_path / "b", seed=3)
    generate_world(cfg, tmp_path / "c", seed=4)
    assert a["samples"] == 4 and a["annotations"] > 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")  # same seed, any worker count: same bytes
    for table in ("sample_annotation.json", "sample_data.json", "ego_pose.json"):
        assert (tmp_path / "a" / cfg.version / table).read_bytes() != (
            tmp_path / "c" / cfg.version / table
        ).read_bytes()
    assert (tmp_path / "a" / "world_config.yaml").is_file()
    splits = json.loads((tmp_path / "a" / cfg.version / "splits.json").read_text())
    assert splits == {"synth_train": ["scene-0000"], "synth_val": ["scene-0001"]}


def test_refuses_non_empty_output(tmp_path):
    cfg = load_config(WorldConfig, [], TINY)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_world(cfg, tmp_path / "w")
    assert (tmp_path / "w" / "keep.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]  # no temporary left behind


def test_bad_config_values():
    with pytest.raises(Exception, match="samples_per_scene"):
        load_config(WorldConfig, [], ["samples_per_scene=1"])
    with pytest.raises(Exception, match="num_scene"):
        load_config(WorldConfig, [], ["num_scene=3"])
    with pytest.raises(Exception, match="sweeps_per_keyframe"):
        load_config(WorldConfig, [], ["sweeps_per_keyframe=12"])
