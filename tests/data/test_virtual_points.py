"""Virtual points, painting, mask files and degradation on a hand-built camera and scene."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from distillbev.data.virtual_points import (
    COL_ONE_HOT,
    COL_SCORE,
    COL_TIME_LAG,
    COL_VIRTUAL,
    MVP_POINT_FEATURES,
    PERFECT_MASKS,
    CameraMasks,
    MaskDegradation,
    MVPConfig,
    SyntheticMaskSource,
    build_mask_source,
    degrade_masks,
    generate_virtual_points,
    mvp_points_for_sample,
    to_mvp_layout,
)
from distillbev.structures import CLASS_NAMES

H, W = 96, 128
K = np.array([[100.0, 0.0, 64.0], [0.0, 100.0, 48.0], [0.0, 0.0, 1.0]])
# Camera looking along LiDAR +x: camera x -> LiDAR -y, camera y (down) -> LiDAR -z, camera z -> LiDAR +x.
CAM2LIDAR = np.eye(4)
CAM2LIDAR[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
CAM2LIDAR[:3, 3] = [0.5, 0.0, 1.5]
CAR, PED = CLASS_NAMES.index("car"), CLASS_NAMES.index("pedestrian")


def _plane(x: float, y_range: tuple[float, float], lag: float = 0.0, step: float = 0.1) -> np.ndarray:
    """LiDAR points on the plane x = const (a wall facing the camera), intensity 0.3."""
    ys = np.arange(y_range[0], y_range[1], step)
    zs = np.arange(0.05, 3.0, step)  # half-pixel offsets: no point projects onto a pixel border
    gy, gz = np.meshgrid(ys, zs)
    n = gy.size
    return np.stack([np.full(n, x), gy.ravel(), gz.ravel(), np.full(n, 0.3), np.full(n, lag)], 1)


def _project(xyz: np.ndarray) -> np.ndarray:
    """(N, 3) LiDAR -> (N, 3) u, v, depth in the test camera."""
    p = (np.c_[xyz, np.ones(len(xyz))] @ np.linalg.inv(CAM2LIDAR).T)[:, :3]
    uv = p @ K.T
    return np.c_[uv[:, :2] / p[:, 2:], p[:, 2]]


def _two_instance_masks() -> CameraMasks:
    ids = np.zeros((H, W), np.int32)
    ids[30:60, 20:64] = 1  # car, on the 10 m wall (left half of the image = LiDAR +y)
    ids[30:60, 64:100] = 2  # pedestrian, on the 20 m wall, directly adjacent
    return CameraMasks(ids, np.array([-1, CAR, PED]), np.array([1.0, 0.9, 0.7], np.float32))


def _scene() -> np.ndarray:
    # Wall at 10 m covers LiDAR y > 0 (image left), wall at 20 m covers y < 0 (image right).
    return np.concatenate([_plane(10.5, (0.05, 6.0)), _plane(20.5, (-12.05, 0.0))])


def test_virtual_points_take_depth_of_their_own_mask():
    pts = _scene()
    out = generate_virtual_points(
        pts, [_two_instance_masks()], K[None], CAM2LIDAR[None], 50, np.random.default_rng(0)
    )
    assert out.shape[1] == MVP_POINT_FEATURES
    virt = out[out[:, COL_VIRTUAL] == 1]
    assert len(virt) == 100  # 50 per instance: both masks are larger than 50 pixels
    uvd = _project(virt[:, :3])
    car = virt[:, COL_ONE_HOT.start + CAR] == 1
    assert car.sum() == 50 and (virt[car, COL_SCORE] == np.float32(0.9)).all()
    assert (virt[~car, COL_ONE_HOT.start + PED] == 1).all() and (virt[:, COL_ONE_HOT].sum(1) == 1).all()
    # Every car virtual point sits on the 10 m wall and back-projects inside the car rectangle, even the
    # pixels next to the pedestrian mask (nearest point overall would be on the 20 m wall there).
    np.testing.assert_allclose(uvd[car, 2], 10.0, atol=1e-4)
    np.testing.assert_allclose(uvd[~car, 2], 20.0, atol=1e-4)
    assert ((uvd[car, 0] >= 20) & (uvd[car, 0] < 64) & (uvd[car, 1] >= 30) & (uvd[car, 1] < 60)).all()
    assert ((uvd[~car, 0] >= 64) & (uvd[~car, 0] < 100)).all()
    assert (virt[:, COL_TIME_LAG] == 0).all()


def test_painted_copies_are_the_points_inside_masks():
    pts = _scene()
    out = generate_virtual_points(
        pts, [_two_instance_masks()], K[None], CAM2LIDAR[None], 5, np.random.default_rng(0)
    )
    raw, rest = out[: len(pts)], out[len(pts) :]
    np.testing.assert_allclose(raw, to_mvp_layout(pts))  # originals unpainted, flag 0
    painted = rest[rest[:, COL_VIRTUAL] == 0]
    uvd = _project(pts[:, :3])
    u, v = np.floor(uvd[:, 0]), np.floor(uvd[:, 1])
    in_car = (u >= 20) & (u < 64) & (v >= 30) & (v < 60) & (uvd[:, 2] > 0)
    in_ped = (u >= 64) & (u < 100) & (v >= 30) & (v < 60) & (uvd[:, 2] > 0)
    assert in_car.sum() > 10 and in_ped.sum() > 10
    assert (painted[:, COL_ONE_HOT.start + CAR] == 1).sum() == in_car.sum()
    assert (painted[:, COL_ONE_HOT.start + PED] == 1).sum() == in_ped.sum()
    assert len(painted) == in_car.sum() + in_ped.sum()

    in_place = generate_virtual_points(
        pts,
        [_two_instance_masks()],
        K[None],
        CAM2LIDAR[None],
        5,
        np.random.default_rng(0),
        duplicate_painted=False,
    )
    assert len(in_place) == len(pts) + 10
    assert (in_place[: len(pts)][in_car, COL_ONE_HOT.start + CAR] == 1).all()
    assert (in_place[: len(pts)][in_car, COL_ONE_HOT].sum(1) == 1).all()


def test_sweep_points_are_not_used_beyond_max_time_lag():
    pts = _plane(10.5, (0.05, 6.0), lag=0.3)  # only a sweep sees the car (and nothing else)
    masks = [_two_instance_masks()]
    none = generate_virtual_points(pts, masks, K[None], CAM2LIDAR[None], 50, max_time_lag=0.0)
    assert len(none) == len(pts)
    some = generate_virtual_points(pts, masks, K[None], CAM2LIDAR[None], 50, max_time_lag=0.5)
    assert (some[:, COL_VIRTUAL] == 1).sum() == 50


def test_miss_rate_one_gives_no_virtual_or_painted_points():
    masks = degrade_masks(_two_instance_masks(), MaskDegradation(miss_rate=1.0), np.random.default_rng(0))
    assert (masks.ids == 0).all()
    pts = _scene()
    out = generate_virtual_points(pts, [masks], K[None], CAM2LIDAR[None], 50, np.random.default_rng(0))
    np.testing.assert_array_equal(out, to_mvp_layout(pts))


def test_degradation_dilate_erode_confuse_score():
    base = _two_instance_masks()
    rng = np.random.default_rng(0)
    grown = degrade_masks(base, MaskDegradation(miss_rate=0.0, dilate_px=2, class_confusion=0.0), rng)
    # Car 30x44 grows by 2 px on every side into background only: its 34x48 grown box minus the
    # 30x2 pedestrian pixels right of it.
    assert (grown.ids == 1).sum() == (30 + 4) * (44 + 4) - 30 * 2
    assert (grown.ids == 2).sum() >= 30 * 36  # the pedestrian keeps its pixels
    shrunk = degrade_masks(base, MaskDegradation(miss_rate=0.0, dilate_px=-2, class_confusion=0.0), rng)
    assert (shrunk.ids == 1).sum() == (30 - 4) * (44 - 4)
    confused = degrade_masks(
        base, MaskDegradation(miss_rate=0.0, dilate_px=0, class_confusion=1.0, score_range=(0.2, 0.4)), rng
    )
    assert (
        confused.labels[1] != CAR and confused.labels[2] != PED and confused.labels.max() < len(CLASS_NAMES)
    )
    assert 0.2 <= confused.scores[1] <= 0.4 and 0.2 <= confused.scores[2] <= 0.4
    perfect = degrade_masks(base, PERFECT_MASKS, rng)
    np.testing.assert_array_equal(perfect.ids, base.ids)
    np.testing.assert_array_equal(perfect.labels, base.labels)


def _write_masks(root, cam: str, stem: str, ids: np.ndarray, instances: list[dict]) -> None:
    folder = root / "masks" / cam
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{stem}.png"), ids.astype(np.uint16))
    (folder / f"{stem}.json").write_text(json.dumps({"instances": instances}))


def test_synthetic_mask_source_reads_files_and_end_to_end(tmp_path):
    ids = _two_instance_masks().ids
    inst = [
        {
            "id": 1,
            "annotation_token": "a",
            "instance_token": "i",
            "category_name": "vehicle.car",
            "detection_name": "car",
        },
        {
            "id": 2,
            "annotation_token": "b",
            "instance_token": "j",
            "category_name": "human.pedestrian.adult",
            "detection_name": "pedestrian",
        },
        {
            "id": 3,
            "annotation_token": "c",
            "instance_token": "k",
            "category_name": "animal",
            "detection_name": "",
        },
    ]
    _write_masks(tmp_path, "CAM_FRONT", "frame0", ids, inst)
    src = SyntheticMaskSource(tmp_path, PERFECT_MASKS)
    m = src.load("CAM_FRONT", "samples/CAM_FRONT/frame0.jpg")
    np.testing.assert_array_equal(m.ids, ids)
    assert m.labels.tolist() == [-1, CAR, PED, -1]
    cfg = MVPConfig(degradation=PERFECT_MASKS)
    pts = _scene()
    a = mvp_points_for_sample(pts, [("CAM_FRONT", "frame0.jpg")], K[None], CAM2LIDAR[None], src, cfg, "tok")
    b = mvp_points_for_sample(pts, [("CAM_FRONT", "frame0.jpg")], K[None], CAM2LIDAR[None], src, cfg, "tok")
    np.testing.assert_array_equal(a, b)  # deterministic per sample key
    assert (a[:, COL_VIRTUAL] == 1).sum() == 100

    with pytest.raises(FileNotFoundError, match="frame1.png"):
        src.load("CAM_FRONT", "frame1.jpg")
    _write_masks(tmp_path, "CAM_BACK", "frame0", ids, inst[:1])
    with pytest.raises(ValueError, match=r"mask ids \[2\] are not listed"):
        src.load("CAM_BACK", "frame0.jpg")


def test_mvp_config_validation(tmp_path):
    from distillbev.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="miss_rate"):
        load_config(MVPConfig, overrides=["degradation.miss_rate=1.5"])
    with pytest.raises(ConfigError, match="score_range"):
        load_config(MVPConfig, overrides=["degradation.score_range=[0.9, 0.1]"])
    cfg = load_config(
        MVPConfig,
        overrides=["mask_source=folder", f"mask_folder={tmp_path / 'missing'}", "num_samples_per_mask=20"],
    )
    assert cfg.num_samples_per_mask == 20 and cfg.degradation == MaskDegradation()
    with pytest.raises(FileNotFoundError, match="missing is not a directory"):
        build_mask_source(cfg, "unused")
    with pytest.raises(ValueError, match="needs mvp.mask_folder"):
        build_mask_source(MVPConfig(mask_source="folder"), "unused")
    assert isinstance(build_mask_source(MVPConfig(), "root"), SyntheticMaskSource)
