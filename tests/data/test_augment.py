"""Augmentation, geometry and depth helpers: hand-computed cases and exact invariants."""

import math

import numpy as np
import pytest
from pyquaternion import Quaternion

from distillbev.data.augment import bev_matrix, image_affine, post_matrices, warp_image
from distillbev.data.config import BEVAugConfig, ImageAugConfig
from distillbev.data.depth import depth_map
from distillbev.data.geometry import (
    global_box_to_lidar,
    invert_rigid,
    lidar_boxes_to_global,
    matrix_quaternion,
    pose_matrix,
    quaternion_matrix,
    transform_boxes,
    transform_points,
)
from distillbev.structures import box_corners_3d, points_in_boxes


def test_test_mode_affine_matches_bevdet_full_scale():
    # 1600x900 -> 256x704: r = 704/1600 + 0.04 = 0.48 -> 768x432; bottom crop 432-256, centred (768-704)/2.
    aug = image_affine((900, 1600), ImageAugConfig(final_size=(256, 704)), None)
    np.testing.assert_allclose(aug.A, 0.48 * np.eye(2))
    np.testing.assert_allclose(aug.b, [-32.0, -176.0])
    assert aug.resized_hw == (432, 768)


def test_train_affine_is_rot_flip_crop_resize():
    cfg = ImageAugConfig(final_size=(64, 176))
    flips = 0
    for seed in range(12):
        aug = image_affine((108, 192), cfg, np.random.default_rng(seed))
        # Re-draw the same numbers and compose 3x3 homogeneous maps independently.
        rng = np.random.default_rng(seed)
        r = 176 / 192 + rng.uniform(*cfg.resize_jitter)
        rh, rw = int(108 * r), int(192 * r)
        crop = np.array(
            [[1, 0, -int(rng.uniform(0, max(rw - 176, 0)))], [0, 1, -max(rh - 64, 0)], [0, 0, 1.0]]
        )
        flip = np.eye(3)
        if rng.random() < 0.5:
            flip = np.array([[-1, 0, 176], [0, 1, 0], [0, 0, 1.0]])
            flips += 1
        a = math.radians(rng.uniform(-5.4, 5.4))
        rot = np.array([[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0], [0, 0, 1.0]])
        about = np.array([[1, 0, 88], [0, 1, 32], [0, 0, 1.0]])
        total = about @ rot @ np.linalg.inv(about) @ flip @ crop @ np.diag([r, r, 1.0])
        np.testing.assert_allclose(aug.A, total[:2, :2], atol=1e-12)
        np.testing.assert_allclose(aug.b, total[:2, 2], atol=1e-9)
        post_rot, post_tran = post_matrices(aug)
        np.testing.assert_allclose(post_rot, np.block([[total[:2, :2], np.zeros((2, 1))], [0, 0, 1]]))
        np.testing.assert_allclose(post_tran, [*total[:2, 2], 0.0])
    assert 0 < flips < 12  # both branches exercised


@pytest.mark.parametrize(
    ("src_hw", "seed"), [((108, 192), 0), ((108, 192), 3), ((300, 400), 1), ((40, 90), 2)]
)
def test_warp_image_agrees_with_post_rot(src_hw, seed):
    """Warp an image whose pixels store their own centre coordinates: every output pixel must show the
    source position A^-1 (u' - b) of its centre (bilinear/area filtering is exact on a linear image)."""
    h, w = src_hw
    jj, ii = np.meshgrid(np.arange(w, dtype=np.float32) + 0.5, np.arange(h, dtype=np.float32) + 0.5)
    coords = np.stack([jj, ii, np.ones_like(jj)], -1)  # (H, W, 3) continuous (u, v) of pixel centres
    aug = image_affine(src_hw, ImageAugConfig(final_size=(64, 176)), np.random.default_rng(seed))
    out = warp_image(coords, aug)
    fj, fi = np.meshgrid(np.arange(176) + 0.5, np.arange(64) + 0.5)
    expect = (np.stack([fj, fi], -1) - aug.b) @ np.linalg.inv(aug.A).T  # (64, 176, 2)
    # Interior pixels only: their whole filter footprint lies inside the source image.
    margin = 2.0 / min(abs(np.linalg.det(aug.A)) ** 0.5, 1.0)
    inside = (
        (expect[..., 0] > margin)
        & (expect[..., 0] < w - margin)
        & (expect[..., 1] > margin)
        & (expect[..., 1] < h - margin)
    )
    assert inside.sum() > 0.3 * inside.size
    err_out = (out[..., :2][inside] - expect[inside]) @ aug.A.T  # in output pixels
    assert np.abs(err_out).max() < 0.04  # cv2 rounds sampling positions to 1/32 pixel
    assert np.all(out[..., 2][~inside & (out[..., 2] == 0)] == 0)  # outside the source: black


def test_bev_matrix_deterministic_and_composed_in_order():
    cfg = BEVAugConfig()
    m1 = bev_matrix(cfg, np.random.default_rng(7))
    m2 = bev_matrix(cfg, np.random.default_rng(7))
    np.testing.assert_array_equal(m1, m2)
    rng = np.random.default_rng(7)
    theta, s = rng.uniform(-cfg.rotate, cfg.rotate), rng.uniform(*cfg.scale)
    fy, fx = rng.random() < 0.5, rng.random() < 0.5
    expect = np.eye(4)
    expect[:3, :3] = np.diag([-1.0 if fx else 1.0, -1.0 if fy else 1.0, 1.0]) @ (
        s * quaternion_matrix([math.cos(theta / 2), 0, 0, math.sin(theta / 2)])
    )
    np.testing.assert_allclose(m1, expect, atol=1e-12)
    off = bev_matrix(BEVAugConfig(rotate=0.0, scale=(1.0, 1.0), flip_x=False, flip_y=False), rng)
    np.testing.assert_array_equal(off, np.eye(4))


def test_transform_boxes_hand_cases():
    box = np.array([[2.0, 1.0, 0.5, 4.0, 2.0, 1.5, 0.3, 1.0, -2.0]])
    rot90 = np.eye(4)
    rot90[:2, :2] = [[0, -1], [1, 0]]
    out = transform_boxes(box, np.diag([2.0, 2.0, 2.0, 1.0]) @ rot90)  # +90 deg, then scale 2
    np.testing.assert_allclose(
        out[0], [-2.0, 4.0, 1.0, 8.0, 4.0, 3.0, 0.3 + math.pi / 2, 4.0, 2.0], atol=1e-12
    )
    flip_y = transform_boxes(box, np.diag([1.0, -1.0, 1.0, 1.0]))
    np.testing.assert_allclose(flip_y[0], [2.0, -1.0, 0.5, 4.0, 2.0, 1.5, -0.3, 1.0, 2.0], atol=1e-12)
    flip_x = transform_boxes(box, np.diag([-1.0, 1.0, 1.0, 1.0]))
    np.testing.assert_allclose(
        flip_x[0], [-2.0, 1.0, 0.5, 4.0, 2.0, 1.5, math.pi - 0.3, -1.0, -2.0], atol=1e-12
    )


def test_transform_boxes_moves_corners_like_points():
    rng = np.random.default_rng(0)
    boxes = np.concatenate(
        [rng.uniform(-20, 20, (5, 3)), rng.uniform(0.5, 5, (5, 3)), rng.uniform(-3, 3, (5, 3))], 1
    )
    for seed in range(6):
        m = bev_matrix(BEVAugConfig(), np.random.default_rng(seed))
        moved = box_corners_3d(transform_boxes(boxes, m))  # (5, 8, 3)
        expect = transform_points(box_corners_3d(boxes).reshape(-1, 3), m).reshape(5, 8, 3)
        for a, b in zip(moved, expect, strict=True):  # same corner set (a flip reorders the corners)
            d = np.linalg.norm(a[:, None] - b[None], axis=-1)
            assert d.min(1).max() < 1e-9
        pts = rng.uniform(-25, 25, (4000, 3))
        np.testing.assert_array_equal(
            points_in_boxes(pts, boxes), points_in_boxes(transform_points(pts, m), transform_boxes(boxes, m))
        )


def test_quaternions_and_box_frames_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.normal(size=4)
        np.testing.assert_allclose(
            quaternion_matrix(q), Quaternion(q / np.linalg.norm(q)).rotation_matrix, atol=1e-12
        )
        r = quaternion_matrix(q)
        np.testing.assert_allclose(quaternion_matrix(matrix_quaternion(r)), r, atol=1e-12)
    l2g = pose_matrix(Quaternion(axis=[0, 0, 1], angle=1.1).elements, [100.0, -50.0, 1.8])
    np.testing.assert_allclose(invert_rigid(l2g), np.linalg.inv(l2g), atol=1e-12)
    yaw_q = Quaternion(axis=[0, 0, 1], angle=-2.5).elements
    box = global_box_to_lidar([110.0, -40.0, 1.0], [2.0, 4.5, 1.6], yaw_q, [3.0, 1.0, 0.0], invert_rigid(l2g))
    np.testing.assert_allclose(box[3:6], [4.5, 2.0, 1.6])
    np.testing.assert_allclose(math.remainder(box[6] - (-2.5 - 1.1), 2 * math.pi), 0.0, atol=1e-12)
    back = lidar_boxes_to_global(box[None], l2g)
    np.testing.assert_allclose(back["translation"][0], [110.0, -40.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(back["size"][0], [2.0, 4.5, 1.6])
    np.testing.assert_allclose(back["velocity"][0], [3.0, 1.0], atol=1e-12)
    assert abs(abs(np.dot(back["rotation"][0], yaw_q)) - 1) < 1e-12


def test_depth_map_keeps_the_nearest_point_per_pixel():
    k = np.array([[10.0, 0, 8], [0, 10.0, 6], [0, 0, 1]])
    cam2lidar = np.eye(4)  # camera frame = LiDAR frame: z is the depth
    pts = np.array(
        [
            [0.0, 0.0, 5.0],  # pixel (8, 6) at 5 m
            [0.01, 0.01, 3.0],  # same pixel (8.03, 6.03), nearer
            [0.0, 0.0, 9.0],  # same pixel, farther
            [0.5, -0.2, 2.0],  # (10.5, 5.0)
            [0.0, 0.0, -4.0],  # behind the camera
            [9.0, 0.0, 1.0],  # outside the image (98, 6)
        ]
    )
    post_rot, post_tran = np.eye(3), np.zeros(3)
    d = depth_map(pts, k, cam2lidar, post_rot, post_tran, (12, 16))
    expect = np.zeros((12, 16), np.float32)
    expect[6, 8], expect[5, 10] = 3.0, 2.0
    np.testing.assert_array_equal(d, expect)
    # Half size plus a (1, 0) shift: (8.03, 6.03) -> (5.02, 3.02) and (10.5, 5.0) -> (6.25, 2.5).
    post_rot[:2, :2] *= 0.5
    post_tran[:2] = [1.0, 0.0]
    d = depth_map(pts, k, cam2lidar, post_rot, post_tran, (12, 16))
    expect = np.zeros((12, 16), np.float32)
    expect[3, 5], expect[2, 6] = 3.0, 2.0
    np.testing.assert_array_equal(d, expect)


def test_flip_together_keeps_handedness():
    """One coin for both flips: every draw is a proper transform (det > 0, a right-hand-traffic scene
    stays right-hand), half of them a half turn; independent flips mirror about half of the draws."""
    rng = np.random.default_rng(3)
    cfg = BEVAugConfig(rotate=0.0, scale=(1.0, 1.0), flip_together=True)
    dets, half_turns = [], 0
    for _ in range(400):
        m = bev_matrix(cfg, rng)
        dets.append(np.linalg.det(m[:3, :3]))
        half_turns += bool(np.allclose(m, np.diag([-1.0, -1.0, 1.0, 1.0])))
    assert min(dets) > 0
    assert 160 < half_turns < 240
    # An oncoming car on the ego's left (y = 3, yaw pi, 5 m/s towards -x) has the road's centre line (the
    # x axis) on its own left: right-hand traffic. A half turn keeps that; a single flip mirrors it.
    car = np.array([[10.0, 3.0, 0.0, 4.5, 1.9, 1.6, math.pi, -5.0, 0.0]])

    def centre_on_left(box: np.ndarray) -> bool:
        left = np.array([-math.sin(box[6]), math.cos(box[6])])  # the car's left, from its heading
        return float(left @ np.array([0.0, -box[1]])) > 0

    turned = transform_boxes(car, np.diag([-1.0, -1.0, 1.0, 1.0]))[0]
    np.testing.assert_allclose(turned[[0, 1, 7, 8]], [-10.0, -3.0, 5.0, 0.0], atol=1e-12)
    assert centre_on_left(car[0]) and centre_on_left(turned)
    assert not centre_on_left(transform_boxes(car, np.diag([1.0, -1.0, 1.0, 1.0]))[0])
    mirrored = sum(
        np.linalg.det(bev_matrix(BEVAugConfig(rotate=0.0, scale=(1.0, 1.0)), rng)[:3, :3]) < 0
        for _ in range(400)
    )
    assert 160 < mirrored < 240
    with pytest.raises(ValueError, match="flip_together"):
        BEVAugConfig(flip_x=False, flip_together=True)
