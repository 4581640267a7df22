"""The synthetic world: loads with the official devkit, counts, masks and determinism."""

import json
from collections import Counter

import cv2
import numpy as np
import pytest
from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import points_in_box, view_points
from nuscenes.utils.splits import get_scenes_of_split

from distillbev.config import load_config
from distillbev.data.synthetic.config import WorldConfig
from distillbev.data.synthetic.generate import generate_world
from distillbev.structures import CLASS_NAMES


def test_devkit_loads_and_splits_resolve(smoke_world, smoke_nusc):
    train = get_scenes_of_split(smoke_world.train_split, smoke_nusc)
    val = get_scenes_of_split(smoke_world.val_split, smoke_nusc)
    assert len(train) == 2 and len(val) == 1 and not set(train) & set(val)
    cfg = smoke_world.config
    assert len(smoke_nusc.sample) == cfg.num_scenes * cfg.samples_per_scene
    lidar = [sd for sd in smoke_nusc.sample_data if sd["channel"] == "LIDAR_TOP"]
    assert sum(not sd["is_key_frame"] for sd in lidar) == cfg.sweeps_per_keyframe * len(smoke_nusc.sample)


def test_instances_and_attributes(smoke_nusc):
    for inst in smoke_nusc.instance:
        assert inst["nbr_annotations"] >= 2
    for ann in smoke_nusc.sample_annotation:
        assert len(ann["attribute_tokens"]) <= 1
        v = smoke_nusc.box_velocity(ann["token"])
        assert np.all(np.isfinite(v))


def test_every_class_in_val(smoke_world, smoke_nusc):
    val = set(get_scenes_of_split(smoke_world.val_split, smoke_nusc))
    seen = Counter()
    for ann in smoke_nusc.sample_annotation:
        scene = smoke_nusc.get("scene", smoke_nusc.get("sample", ann["sample_token"])["scene_token"])
        if scene["name"] in val and ann["num_lidar_pts"] > 0:
            seen[category_to_detection_name(ann["category_name"])] += 1
    assert set(seen) == set(CLASS_NAMES)


def test_num_lidar_pts_matches_devkit(smoke_world, smoke_nusc):
    checked = 0
    for sample in smoke_nusc.sample:
        token = sample["data"]["LIDAR_TOP"]
        path, boxes, _ = smoke_nusc.get_sample_data(token)
        pts = LidarPointCloud.from_file(path).points
        for box in boxes:
            ann = smoke_nusc.get("sample_annotation", box.token)
            assert int(points_in_box(box, pts[:3]).sum()) == ann["num_lidar_pts"]
            checked += 1
    assert checked > 50
    # Objects really are hit by the LiDAR: most annotations near the ego have points.
    assert np.mean([a["num_lidar_pts"] > 0 for a in smoke_nusc.sample_annotation]) > 0.5


def test_point_cloud_format(smoke_world, smoke_nusc):
    sd = smoke_nusc.get("sample_data", smoke_nusc.sample[0]["data"]["LIDAR_TOP"])
    raw = np.fromfile(smoke_world.dataroot / sd["filename"], dtype=np.float32).reshape(-1, 5)
    assert len(raw) > 5000
    assert set(np.unique(raw[:, 4]).astype(int)) <= set(range(32))
    assert raw[:, 3].min() >= 0 and raw[:, 3].max() <= 255
    assert np.hypot(raw[:, 0], raw[:, 1]).max() <= 70.5


def test_projected_boxes_land_on_their_masks(smoke_world, smoke_nusc):
    """Mask pixels of an object lie within its projected 3D box; the projected centre of each fully
    visible object lies inside its own mask's bounding box."""
    hits = total = 0
    for sample in smoke_nusc.sample:
        for cam in ("CAM_FRONT", "CAM_BACK", "CAM_FRONT_LEFT"):
            sd = smoke_nusc.get("sample_data", sample["data"][cam])
            path, boxes, K = smoke_nusc.get_sample_data(sd["token"])
            stem = sd["filename"].split("/")[-1][: -len(".jpg")]
            mask = cv2.imread(str(smoke_world.dataroot / "masks" / cam / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            meta = json.loads((smoke_world.dataroot / "masks" / cam / f"{stem}.json").read_text())
            assert mask.dtype == np.uint16 and mask.shape == (sd["height"], sd["width"])
            by_ann = {i["annotation_token"]: i["id"] for i in meta["instances"]}
            for box in boxes:
                if box.center[2] < 1.0 or box.token not in by_ann:
                    continue
                fully_visible = smoke_nusc.get("sample_annotation", box.token)["visibility_token"] == "4"
                ys, xs = np.nonzero(mask == by_ann[box.token])
                if len(xs) < 30:
                    continue
                u, v = view_points(box.center[:, None], np.asarray(K), normalize=True)[:2, 0]
                corners = view_points(box.corners(), np.asarray(K), normalize=True)[:2]
                inside = (
                    box.corners()[2].min() > 0.5
                    and corners[0].min() >= 0
                    and corners[1].min() >= 0
                    and corners[0].max() < sd["width"]
                    and corners[1].max() < sd["height"]
                )
                fully_visible = fully_visible and inside
                # Every mask pixel of the object lies within the projected 3D box's 2D extent.
                assert xs.min() >= corners[0].min() - 2 and xs.max() <= corners[0].max() + 2
                assert ys.min() >= corners[1].min() - 2 and ys.max() <= corners[1].max() + 2
                total += fully_visible
                hits += (
                    fully_visible
                    and (xs.min() - 2 <= u <= xs.max() + 2)
                    and (ys.min() - 2 <= v <= ys.max() + 2)
                )
    assert total > 10
    assert hits / total > 0.95


def test_deterministic_and_seed_dependent(smoke_world, tmp_path):
    cfg = load_config(
        WorldConfig,
        [],
        [
            "num_scenes=2",
            "num_val_scenes=1",
            "samples_per_scene=2",
            "image_width=48",
            "image_height=27",
            "lidar_azimuth_steps=128",
        ],
    )
    a = generate_world(cfg, tmp_path / "a", seed=3)
    generate_world(cfg, tmp_path / "b", seed=3)
    generate_world(cfg, tmp_path / "c", seed=4)
    assert a["samples"] == 4
    for table in ("sample_annotation.json", "sample_data.json", "ego_pose.json"):
        ta = (tmp_path / "a" / cfg.version / table).read_bytes()
        assert ta == (tmp_path / "b" / cfg.version / table).read_bytes()
        assert ta != (tmp_path / "c" / cfg.version / table).read_bytes()
    bins = sorted((tmp_path / "a" / "samples" / "LIDAR_TOP").iterdir())
    assert bins[0].read_bytes() == (tmp_path / "b" / "samples" / "LIDAR_TOP" / bins[0].name).read_bytes()


def test_refuses_non_empty_output(tmp_path):
    cfg = load_config(
        WorldConfig,
        [],
        [
            "num_scenes=2",
            "num_val_scenes=1",
            "samples_per_scene=2",
            "image_width=32",
            "image_height=18",
            "lidar_azimuth_steps=64",
        ],
    )
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_world(cfg, tmp_path / "w")
    assert (tmp_path / "w" / "keep.txt").read_text() == "x"


def test_bad_config_values():
    with pytest.raises(Exception, match="samples_per_scene"):
        load_config(WorldConfig, [], ["samples_per_scene=1"])
    with pytest.raises(Exception, match="num_scene"):
        load_config(WorldConfig, [], ["num_scene=3"])
