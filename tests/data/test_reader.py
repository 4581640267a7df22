"""The reader on the smoke world: GT against the devkit, sweeps, augmentation consistency, depth,
previous frames, collate, the index cache and bad input."""

import dataclasses
import os
import shutil

import numpy as np
import pytest
import torch
from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.utils.data_classes import LidarPointCloud
from pyquaternion import Quaternion

from distillbev.data import index as index_module
from distillbev.data import nuscenes as reader_module
from distillbev.data.collate import collate
from distillbev.data.config import ReaderConfig
from distillbev.data.geometry import lidar_boxes_to_global, transform_boxes, transform_points
from distillbev.data.index import cache_path
from distillbev.data.nuscenes import IMAGENET_MEAN, IMAGENET_STD, NuScenesDataset, load_points
from distillbev.structures import CLASS_NAMES, points_in_boxes

HUGE = (-1e4, -1e4, -1e4, 1e4, 1e4, 1e4)  # a point range that filters nothing


@pytest.fixture(scope="module")
def val_set(smoke_world):
    cfg = ReaderConfig(drop_empty_boxes=False)
    return NuScenesDataset(smoke_world.dataroot, smoke_world.version, smoke_world.val_split, cfg)


def _pair(world, seed, cfg=ReaderConfig(point_range=HUGE), split=None):
    """The same split read plainly (test mode) and augmented (train mode)."""
    split = split or world.train_split
    plain = NuScenesDataset(world.dataroot, world.version, split, cfg, train=False)
    aug = NuScenesDataset(world.dataroot, world.version, split, cfg, train=True, seed=seed)
    return plain, aug


def _project(points, k, cam2lidar, post_rot, post_tran):
    """Augmented pixel coordinates (N, 2) and camera depth (N,) of LiDAR-frame points."""
    l2c = np.linalg.inv(cam2lidar)
    p = points[:, :3].astype(np.float64) @ l2c[:3, :3].T + l2c[:3, 3]
    uv = (p @ k.T)[:, :2] / p[:, 2:3]
    return uv @ post_rot[:2, :2].T + post_tran[:2], p[:, 2]


def test_gt_boxes_round_trip_to_global(val_set, smoke_nusc):
    n_boxes, n_nan = 0, 0
    for rec in val_set.records:
        sample = smoke_nusc.get("sample", rec.token)
        anns = [smoke_nusc.get("sample_annotation", t) for t in sample["anns"]]
        detection = [a["token"] for a in anns if category_to_detection_name(a["category_name"]) is not None]
        assert rec.ann_tokens == detection
        back = lidar_boxes_to_global(rec.boxes, rec.lidar2global)
        # The devkit's own sensor-frame boxes (an independent code path).
        _, dev_boxes, _ = smoke_nusc.get_sample_data(sample["data"]["LIDAR_TOP"])
        dev = {b.token: b for b in dev_boxes}
        for j, token in enumerate(rec.ann_tokens):
            ann = smoke_nusc.get("sample_annotation", token)
            np.testing.assert_allclose(back["translation"][j], ann["translation"], atol=1e-6)
            np.testing.assert_allclose(back["size"][j], ann["size"], atol=1e-9)
            r_back = Quaternion(back["rotation"][j]).rotation_matrix
            np.testing.assert_allclose(r_back, Quaternion(ann["rotation"]).rotation_matrix, atol=1e-6)
            v = smoke_nusc.box_velocity(token)[:2]
            assert rec.velocity_valid[j] == np.isfinite(v).all()
            np.testing.assert_allclose(back["velocity"][j], np.nan_to_num(v, nan=0.0), atol=1e-6)
            n_nan += int(not rec.velocity_valid[j])
            assert CLASS_NAMES[rec.labels[j]] == category_to_detection_name(ann["category_name"])
            assert rec.num_points[j] == ann["num_lidar_pts"] + ann["num_radar_pts"]
            b = dev[token]
            np.testing.assert_allclose(rec.boxes[j, :3], b.center, atol=1e-6)
            np.testing.assert_allclose(rec.boxes[j, [4, 3, 5]], b.wlh, atol=1e-9)
            np.testing.assert_allclose(
                np.cos(rec.boxes[j, 6] - b.orientation.yaw_pitch_roll[0]), 1.0, atol=1e-9
            )
            n_boxes += 1
    assert n_boxes > 20


def test_sample_boxes_are_range_and_point_filtered(smoke_world, val_set):
    dropping = NuScenesDataset(
        smoke_world.dataroot, smoke_world.version, smoke_world.val_split, ReaderConfig()
    )
    for i, rec in enumerate(val_set.records):
        in_range = (np.abs(rec.boxes[:, :2]) < 51.2).all(1)
        s_all, s_drop = val_set[i], dropping[i]
        np.testing.assert_allclose(s_all.boxes, rec.boxes[in_range], atol=1e-12)
        np.testing.assert_allclose(s_drop.boxes, rec.boxes[in_range & (rec.num_points > 0)], atol=1e-12)
        np.testing.assert_array_equal(s_drop.labels, rec.labels[in_range & (rec.num_points > 0)])
        np.testing.assert_array_equal(
            s_drop.velocity_valid, rec.velocity_valid[in_range & (rec.num_points > 0)]
        )


def test_key_points_in_boxes_match_num_lidar_pts(val_set, smoke_nusc):
    """The devkit counts a box's key-frame points inclusively; ray-cast points often lie exactly on a
    face, so the count is checked between a 10 um shrunk and a 10 um grown box (a tight bracket)."""
    checked, slack = 0, 0
    for rec in val_set.records:
        points, num_key = load_points(val_set.root, rec, val_set.cfg)
        key = points[:num_key]
        lo = points_in_boxes(key, rec.boxes, margin=-1e-5).sum(0)
        hi = points_in_boxes(key, rec.boxes, margin=1e-5).sum(0)
        stored = np.array([smoke_nusc.get("sample_annotation", t)["num_lidar_pts"] for t in rec.ann_tokens])
        assert np.all(lo <= stored) and np.all(stored <= hi)
        checked += int(stored.sum())
        slack += int((hi - lo).sum())
    assert checked > 1000 and slack < 0.01 * checked


def test_sweeps_match_devkit_multisweep(smoke_world, smoke_nusc):
    cfg = ReaderConfig(num_sweeps=3)
    ds = NuScenesDataset(smoke_world.dataroot, smoke_world.version, smoke_world.train_split, cfg)
    lags = set()
    for i in (0, 2):
        rec = ds.records[i]
        ours, num_key = load_points(ds.root, rec, cfg)
        sample = smoke_nusc.get("sample", rec.token)
        pc, times = LidarPointCloud.from_file_multisweep(
            smoke_nusc,
            sample,
            "LIDAR_TOP",
            "LIDAR_TOP",
            nsweeps=cfg.num_sweeps + 1,
            min_distance=cfg.remove_close,
        )
        np.testing.assert_allclose(ours[:, :4], pc.points.T, atol=1e-4)
        np.testing.assert_allclose(ours[:, 4], times[0], atol=1e-6)
        assert np.all(ours[:num_key, 4] == 0) and np.all(ours[num_key:, 4] > 0)
        assert len(np.unique(ours[:, 4])) == 1 + min(len(rec.sweeps), cfg.num_sweeps)
        lags |= set(np.unique(ours[:, 4]).tolist())
    assert len(lags) > 3  # several sweeps were merged and compared


def test_empty_sweeps_are_padded_with_the_key_frame(val_set):
    rec = dataclasses.replace(val_set.records[0], sweeps=[])
    cfg = ReaderConfig(num_sweeps=3)
    padded, num_key = load_points(val_set.root, rec, cfg)
    key = padded[:num_key]
    np.testing.assert_array_equal(padded, np.concatenate([key] * 4))
    assert np.all(key[:, 4] == 0)
    unpadded, _ = load_points(val_set.root, rec, dataclasses.replace(cfg, pad_empty_sweeps=False))
    np.testing.assert_array_equal(unpadded, key)
    assert not ((np.abs(key[:, 0]) < 1.0) & (np.abs(key[:, 1]) < 1.0)).any()  # remove_close


def _coordinate_image(path):
    """Stand-in for read_image: each pixel stores its own centre (u, v) and 1, as float32."""
    h, w = reader_module.cv2.imread(str(path)).shape[:2]
    jj, ii = np.meshgrid(np.arange(w, dtype=np.float32) + 0.5, np.arange(h, dtype=np.float32) + 0.5)
    return np.stack([jj, ii, np.ones_like(jj)], -1)


def test_augmentation_keeps_lidar_to_image_projection(smoke_world, monkeypatch):
    monkeypatch.setattr(reader_module, "read_image", _coordinate_image)
    plain, aug = _pair(smoke_world, seed=5)
    flipped = 0
    for i in (1, 3):
        a, b = plain[i], aug[i]
        m = b.bev_aug
        assert not np.allclose(m, np.eye(4)) and b.has_prev
        np.testing.assert_allclose(
            b.points[:, :3], transform_points(a.points[:, :3].astype(np.float64), m), atol=1e-4
        )
        key = a.points[a.points[:, 4] == 0]
        key_aug = transform_points(key.astype(np.float64), m)  # the same points, BEV-augmented
        raw = (
            b.images.transpose(0, 2, 3, 1) * IMAGENET_STD + IMAGENET_MEAN
        ) * 255.0  # (N, H, W, 3) source (u, v)
        fh, fw = raw.shape[1:3]
        for c in range(6):
            A, t = b.post_rot[c][:2, :2], b.post_tran[c][:2]
            flipped += int(np.linalg.det(A) < 0)
            uv_raw, z = _project(key, a.intrinsics[c], a.cam2lidar[c], np.eye(3), np.zeros(3))
            uv_aug, z_aug = _project(key_aug, b.intrinsics[c], b.cam2lidar[c], b.post_rot[c], b.post_tran[c])
            front = z > 0.5
            assert front.sum() > 50
            np.testing.assert_allclose(uv_aug[front], uv_raw[front] @ A.T + t, atol=1e-3)
            np.testing.assert_allclose(z_aug, z, rtol=1e-9)
            # The augmented image shows, at each pixel centre c', the source position A^-1 (c' - t).
            jj, ii = np.meshgrid(np.arange(fw) + 0.5, np.arange(fh) + 0.5)
            src = (np.stack([jj, ii], -1) - t) @ np.linalg.inv(A).T
            h, w = aug.records[i].cameras[c].size
            inside = (src[..., 0] > 3) & (src[..., 0] < w - 3) & (src[..., 1] > 3) & (src[..., 1] < h - 3)
            assert inside.sum() > 0.3 * inside.size
            err = np.abs((raw[c][..., :2][inside] - src[inside]) @ A.T)  # in output pixels
            assert err.max() < 0.05
            # The previous frame's camera reuses the draw: the same warp of the same stand-in image.
            np.testing.assert_array_equal(b.prev_images[c], b.images[c])
    assert flipped > 0


def test_bev_aug_keeps_point_box_membership(smoke_world):
    plain, aug = _pair(smoke_world, seed=11)
    for i in (0, 2):
        a, b = plain[i], aug[i]
        m = b.bev_aug
        s = abs(np.linalg.det(m[:3, :3])) ** (1 / 3)
        np.testing.assert_allclose(b.boxes, transform_boxes(a.boxes, m), atol=1e-9)
        np.testing.assert_allclose(
            np.hypot(b.boxes[:, 7], b.boxes[:, 8]), s * np.hypot(a.boxes[:, 7], a.boxes[:, 8])
        )
        before = points_in_boxes(a.points, a.boxes, margin=0.01)
        after = points_in_boxes(b.points, b.boxes, margin=0.01 * s)
        assert before.sum() > 100
        np.testing.assert_array_equal(before, after)
        # Cameras moved with the points: cam2lidar and the previous frame's, left-multiplied.
        np.testing.assert_allclose(b.cam2lidar, m @ a.cam2lidar, atol=1e-9)
        np.testing.assert_allclose(b.prev_cam2lidar, m @ a.prev_cam2lidar, atol=1e-9)


def _reference_depth(points, k, c2l, post_rot, post_tran, hw):
    """A slow per-point loop: the minimum depth of the points landing in each pixel."""
    uv, z = _project(points, k, c2l, post_rot, post_tran)
    out, hits = np.zeros(hw), np.zeros(hw, dtype=int)
    for (u, v), d in zip(uv, z, strict=True):
        if d <= 0.1 or not (0 <= u < hw[1] and 0 <= v < hw[0]):
            continue
        iu, iv = int(np.floor(u)), int(np.floor(v))
        out[iv, iu] = d if hits[iv, iu] == 0 else min(out[iv, iu], d)
        hits[iv, iu] += 1
    return out, hits


@pytest.mark.parametrize("train", [False, True])
def test_depth_maps_equal_direct_reprojection(smoke_world, train):
    cfg = ReaderConfig(point_range=HUGE, num_sweeps=1)
    ds = NuScenesDataset(
        smoke_world.dataroot, smoke_world.version, smoke_world.val_split, cfg, train=train, seed=3
    )
    s = ds[1]
    key = s.points[s.points[:, 4] == 0]  # depth uses the key frame only
    hw = s.depth.shape[1:]
    assert hw == cfg.image.final_size
    shared = 0
    for c in range(6):
        expect, hits = _reference_depth(
            key, s.intrinsics[c], s.cam2lidar[c], s.post_rot[c], s.post_tran[c], hw
        )
        np.testing.assert_allclose(s.depth[c], expect, atol=1e-4)
        shared += int((hits > 1).sum())
        assert (expect > 0).sum() > 30
    assert shared > 0  # several points per pixel: the minimum matters


def test_previous_frame_and_scene_start(smoke_world):
    ds = NuScenesDataset(smoke_world.dataroot, smoke_world.version, smoke_world.train_split, ReaderConfig())
    starts = 0
    for i, rec in enumerate(ds.records):
        s = ds[i]
        if rec.prev < 0:
            starts += 1
            assert not s.has_prev
            np.testing.assert_array_equal(s.prev_images, s.images)
            np.testing.assert_array_equal(s.prev_cam2lidar, s.cam2lidar)
            continue
        assert rec.prev == i - 1 and s.has_prev
        assert (rec.timestamp - ds.records[i - 1].timestamp) / 1e6 == pytest.approx(0.5)  # key frames at 2 Hz
        p = ds[i - 1]  # test mode: every sample uses the same per-camera draw
        np.testing.assert_array_equal(s.prev_images, p.images)
        prev_to_cur = np.linalg.inv(rec.lidar2global) @ ds.records[i - 1].lidar2global
        np.testing.assert_allclose(s.prev_cam2lidar, prev_to_cur @ p.cam2lidar, atol=1e-9)
    assert starts == 2  # two train scenes


def test_collate_values(val_set):
    samples = [val_set[0], val_set[1]]
    b = collate(samples)
    n, (h, w) = 6, val_set.cfg.image.final_size
    assert b.images.shape == (2, n, 3, h, w) and b.images.dtype == torch.float32
    assert b.depth.shape == (2, n, h, w) and b.prev_images.shape == (2, n, 3, h, w)
    for name in (
        "images",
        "intrinsics",
        "cam2lidar",
        "post_rot",
        "post_tran",
        "depth",
        "bev_aug",
        "prev_cam2lidar",
    ):
        for j, s in enumerate(samples):
            np.testing.assert_allclose(getattr(b, name)[j].numpy(), getattr(s, name), rtol=1e-6, atol=1e-6)
    for j, s in enumerate(samples):
        np.testing.assert_allclose(b.points[j].numpy(), s.points)
        np.testing.assert_allclose(b.gt_boxes[j].numpy(), s.boxes, atol=1e-4)
        assert b.gt_labels[j].dtype == torch.long and b.gt_labels[j].tolist() == s.labels.tolist()
    assert b.lidar2global.dtype == torch.float64
    np.testing.assert_array_equal(b.lidar2global[1].numpy(), samples[1].lidar2global)
    assert b.sample_tokens == [samples[0].token, samples[1].token]
    assert b.has_prev.tolist() == [False, True]  # the first key frame of a scene has no history
    assert b.batch_size == 2


def _copy_tables(world, dst):
    """A dataroot holding only the tables and the map (enough for the devkit and the index)."""
    shutil.copytree(world.dataroot / world.version, dst / world.version)
    shutil.copytree(world.dataroot / "maps", dst / "maps")
    return dst


def _count_devkit_loads(monkeypatch):
    import nuscenes

    calls = []
    original = nuscenes.NuScenes

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(nuscenes, "NuScenes", counting)
    return calls


def test_second_construction_uses_cache(smoke_world, tmp_path, monkeypatch):
    import nuscenes

    root = _copy_tables(smoke_world, tmp_path)
    v, split = smoke_world.version, smoke_world.train_split
    calls = _count_devkit_loads(monkeypatch)
    cfg = ReaderConfig(load_images=False)
    first = NuScenesDataset(root, v, split, cfg)
    assert len(calls) == 1 and cache_path(root, v, split, 10).is_file()

    # An unreadable cache file is rebuilt (with a warning), not trusted.
    good = cache_path(root, v, split, 10).read_bytes()
    cache_path(root, v, split, 10).write_bytes(b"not a pickle")
    with pytest.warns(UserWarning, match="unreadable index cache"):
        NuScenesDataset(root, v, split, cfg)
    assert len(calls) == 2 and cache_path(root, v, split, 10).read_bytes() == good

    def boom(*args, **kwargs):
        raise AssertionError("NuScenes was instantiated again")

    monkeypatch.setattr(nuscenes, "NuScenes", boom)
    second = NuScenesDataset(root, v, split, cfg)
    assert second.sample_tokens() == first.sample_tokens() and len(second) == 8
    np.testing.assert_array_equal(second.records.boxes, first.records.boxes)
    # More sweeps than the cached 10, or an edited table, need a new index.
    assert cache_path(root, v, split, 12) != cache_path(root, v, split, 10)
    table = root / v / "sample_annotation.json"
    os.utime(table, ns=(table.stat().st_atime_ns, table.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="instantiated again"):
        NuScenesDataset(root, v, split, cfg)


def test_read_only_dataroot_caches_in_user_folder(smoke_world, tmp_path, monkeypatch):
    import nuscenes

    root = _copy_tables(smoke_world, tmp_path / "ro")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    real_write = index_module._write_cache

    def write(path, index):
        if root in path.parents:
            raise PermissionError(f"read-only: {path}")
        real_write(path, index)

    monkeypatch.setattr(index_module, "_write_cache", write)
    with pytest.warns(UserWarning, match="could not write"):
        NuScenesDataset(root, smoke_world.version, smoke_world.val_split)
    assert not (root / ".distillbev_cache").exists() and list((tmp_path / "user").rglob("*.pkl"))
    monkeypatch.setattr(nuscenes, "NuScenes", None)  # any devkit use would fail
    assert len(NuScenesDataset(root, smoke_world.version, smoke_world.val_split)) == 4


def test_bad_dataroots_and_splits(smoke_world, tmp_path):
    with pytest.raises(FileNotFoundError, match="table folder"):
        NuScenesDataset(tmp_path, "v1.0-synthetic", "synth_val")
    root = _copy_tables(smoke_world, tmp_path / "copy")
    with pytest.raises(ValueError, match="unknown split 'no_such_split'.*synth_train, synth_val"):
        NuScenesDataset(root, smoke_world.version, "no_such_split")
    with pytest.raises(ValueError, match="trainval"):
        NuScenesDataset(root, smoke_world.version, "val")
    with pytest.raises(FileNotFoundError, match="table folder.*v1.0-mini.*found: v1.0-synthetic"):
        NuScenesDataset(root, "v1.0-mini", "mini_val")
    (root / smoke_world.version / "map.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing nuScenes tables: map\.json"):
        NuScenesDataset(root, smoke_world.version, smoke_world.val_split)


def test_bad_files_name_the_file(smoke_world, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(smoke_world.dataroot, copy, ignore=shutil.ignore_patterns(".distillbev_cache"))
    ds = NuScenesDataset(copy, smoke_world.version, smoke_world.val_split, ReaderConfig(num_sweeps=1))
    image = ds.records[0].cameras[2].path
    (copy / image).unlink()
    with pytest.raises(FileNotFoundError, match=image):
        ds[0]
    key = copy / ds.records[1].lidar_path
    key.write_bytes(key.read_bytes()[:-6])
    with pytest.raises(ValueError, match=f"corrupt point cloud {key}"):
        ds[1]
    sweep = copy / ds.records[2].sweeps[0].path
    pts = np.fromfile(sweep, dtype=np.float32).reshape(-1, 5)
    pts[7, 1] = np.nan
    pts.tofile(sweep)
    with pytest.raises(ValueError, match=f"corrupt point cloud {sweep}.*NaN"):
        ds[2]
    (copy / ds.records[3].sweeps[0].path).unlink()
    with pytest.raises(FileNotFoundError, match=ds.records[3].sweeps[0].path):
        ds[3]
