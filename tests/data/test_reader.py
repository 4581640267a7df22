"""The reader: GT round trips, point/box consistency, augmentation consistency, cache and bad input."""

import shutil

import numpy as np
import pytest
from pyquaternion import Quaternion

from distillbev.data import index as index_module
from distillbev.data.augment import transform_boxes, transform_points
from distillbev.data.collate import collate
from distillbev.data.config import ReaderConfig
from distillbev.data.nuscenes import NuScenesDataset
from distillbev.structures import CLASS_NAMES, points_in_boxes


@pytest.fixture(scope="module")
def val_set(smoke_world):
    return NuScenesDataset(
        smoke_world.dataroot, smoke_world.version, smoke_world.val_split, ReaderConfig(drop_empty_boxes=False)
    )


def test_gt_boxes_round_trip_to_global(val_set, smoke_nusc):
    n = 0
    for rec in val_set.records:
        anns = [smoke_nusc.get("sample_annotation", t) for t in smoke_nusc.get("sample", rec.token)["anns"]]
        assert len(anns) == len(rec.boxes)
        l2g = rec.lidar2global
        for box, label, ann in zip(rec.boxes, rec.labels, anns, strict=True):
            c = l2g[:3, :3] @ box[:3] + l2g[:3, 3]
            np.testing.assert_allclose(c, ann["translation"], atol=1e-6)
            np.testing.assert_allclose([box[4], box[3], box[5]], ann["size"], atol=1e-9)
            heading = l2g[:3, :3] @ np.array([np.cos(box[6]), np.sin(box[6]), 0.0])
            expect = Quaternion(ann["rotation"]).rotation_matrix[:, 0]
            np.testing.assert_allclose(heading, expect, atol=1e-6)
            v = l2g[:3, :3] @ np.array([box[7], box[8], 0.0])
            np.testing.assert_allclose(v[:2], smoke_nusc.box_velocity(ann["token"])[:2], atol=1e-6)
            assert CLASS_NAMES[label] == ann["category_name"] or label >= 0
            n += 1
    assert n > 20
    # Boxes outside the BEV range are dropped by the sample, in-range ones kept.
    s = val_set[0]
    assert len(s.boxes) == int((np.abs(val_set.records[0].boxes[:, :2]) < 51.2).all(1).sum())


def test_key_points_in_boxes_match_num_lidar_pts(val_set, smoke_nusc):
    for i in range(len(val_set)):
        s, rec = val_set[i], val_set.records[i]
        key = val_set.load_points(rec)
        key = key[key[:, 4] == 0]
        inside = points_in_boxes(key, rec.boxes, margin=1e-3).sum(0)
        tight = points_in_boxes(key, rec.boxes, margin=-1e-3).sum(0)
        anns = [smoke_nusc.get("sample_annotation", t) for t in smoke_nusc.get("sample", s.token)["anns"]]
        stored = np.array([a["num_lidar_pts"] for a in anns])
        assert np.all(tight <= stored) and np.all(stored <= inside)


def _project(points, K, c2l, prot, ptran):
    l2c = np.linalg.inv(c2l)
    p = points[:, :3] @ l2c[:3, :3].T + l2c[:3, 3]
    uv = (p @ K.T)[:, :2] / p[:, 2:3]
    return uv @ prot[:2, :2].T + ptran[:2], p[:, 2]


def test_augmentation_keeps_lidar_to_image_projection(smoke_world):
    plain = NuScenesDataset(
        smoke_world.dataroot, smoke_world.version, smoke_world.train_split, ReaderConfig(), train=False
    )
    aug = NuScenesDataset(
        smoke_world.dataroot, smoke_world.version, smoke_world.train_split, ReaderConfig(), train=True, seed=5
    )
    a, b = plain[1], aug[1]
    assert not np.allclose(b.bev_aug, np.eye(4))
    key_a = a.points[a.points[:, 4] == 0]
    moved = transform_points(key_a.astype(np.float64), b.bev_aug)  # the same points, augmented
    for c in range(6):
        uv_a, z_a = _project(key_a, a.intrinsics[c], a.cam2lidar[c], np.eye(3), np.zeros(3))
        uv_b, z_b = _project(moved, b.intrinsics[c], b.cam2lidar[c], np.eye(3), np.zeros(3))
        front = z_a > 1
        np.testing.assert_allclose(
            uv_a[front], uv_b[front], atol=1e-3
        )  # BEV aug moves cameras and points alike
        np.testing.assert_allclose(z_a, z_b, rtol=1e-6)
        # Image augmentation: post_rot/post_tran map original pixels to augmented ones as the warp does.
        uv_img, _ = _project(moved, b.intrinsics[c], b.cam2lidar[c], b.post_rot[c], b.post_tran[c])
        np.testing.assert_allclose(
            uv_img[front], uv_a[front] @ b.post_rot[c][:2, :2].T + b.post_tran[c][:2], atol=1e-6
        )


def test_bev_aug_keeps_point_box_membership(smoke_world):
    ds = NuScenesDataset(
        smoke_world.dataroot,
        smoke_world.version,
        smoke_world.train_split,
        ReaderConfig(),
        train=True,
        seed=11,
    )
    plain = NuScenesDataset(
        smoke_world.dataroot, smoke_world.version, smoke_world.train_split, ReaderConfig()
    )
    a, b = plain[2], ds[2]
    m = b.bev_aug
    before = points_in_boxes(a.points, a.boxes, margin=-0.01)
    scale = abs(np.linalg.det(m[:3, :3])) ** (1 / 3)
    after = points_in_boxes(
        transform_points(a.points.astype(np.float64), m), transform_boxes(a.boxes, m), margin=-0.01 * scale
    )
    assert before.sum() > 100
    np.testing.assert_array_equal(before, after)


def test_depth_map_equals_direct_projection(val_set):
    s = val_set[0]
    key = s.points[s.points[:, 4] == 0]
    h, w = s.depth.shape[1:]
    for c in (0, 3):
        uv, z = _project(key, s.intrinsics[c], s.cam2lidar[c], s.post_rot[c], s.post_tran[c])
        ok = (z > 0.1) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        expect = np.zeros((h, w))
        for (u, v), d in zip(np.floor(uv[ok]).astype(int), z[ok], strict=True):
            expect[v, u] = d if expect[v, u] == 0 else min(expect[v, u], d)
        np.testing.assert_allclose(s.depth[c], expect, atol=1e-4)
        assert (expect > 0).sum() > 50


def test_collate_values(val_set):
    samples = [val_set[0], val_set[1]]
    b = collate(samples)
    assert b.images.shape[:2] == (2, 6) and b.batch_size == 2
    np.testing.assert_allclose(b.gt_boxes[1].numpy(), samples[1].boxes, atol=1e-5)
    np.testing.assert_allclose(b.points[0].numpy(), samples[0].points)
    assert b.sample_tokens == [samples[0].token, samples[1].token]
    assert bool(b.has_prev[1]) and not bool(b.has_prev[0])  # the first key frame of a scene has no history


def test_second_construction_uses_cache(smoke_world, monkeypatch):
    NuScenesDataset(smoke_world.dataroot, smoke_world.version, smoke_world.train_split)

    def boom(*args, **kwargs):
        raise AssertionError("the devkit was read again")

    monkeypatch.setattr(index_module, "build_index", boom)
    ds = NuScenesDataset(smoke_world.dataroot, smoke_world.version, smoke_world.train_split)
    assert len(ds) == 8


def test_bad_inputs(smoke_world, tmp_path):
    with pytest.raises(FileNotFoundError, match="table folder"):
        NuScenesDataset(tmp_path, "v1.0-synthetic", "synth_val")
    copy = tmp_path / "copy"
    shutil.copytree(smoke_world.dataroot, copy, ignore=shutil.ignore_patterns(".distillbev_cache"))
    with pytest.raises(ValueError, match="unknown split"):
        NuScenesDataset(copy, smoke_world.version, "no_such_split")
    ds = NuScenesDataset(copy, smoke_world.version, smoke_world.val_split)
    rec = ds.records[0]
    (copy / rec.cameras[2].path).unlink()
    with pytest.raises(FileNotFoundError, match=rec.cameras[2].path.split("/")[-1]):
        ds[0]
    bin_path = copy / ds.records[1].lidar_path
    bin_path.write_bytes(bin_path.read_bytes()[:-6])
    with pytest.raises(ValueError, match="corrupt point cloud"):
        ds[1]
