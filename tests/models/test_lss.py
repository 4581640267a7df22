"""LSS geometry (frustum -> LiDAR through K, image augmentation, extrinsics) and the view transformer."""

from __future__ import annotations

import math

import pytest
import torch

from distillbev.models.lss import (
    CameraGeometry,
    DepthBins,
    LSSViewTransformer,
    create_frustum,
    frustum_to_lidar,
)
from distillbev.structures import BEVGrid

K = torch.tensor([[100.0, 0.0, 50.0], [0.0, 100.0, 20.0], [0.0, 0.0, 1.0]])
#: A camera at (1, 2, 1.5) looking along +x: camera x (right) = -y, y (down) = -z, z (forward) = +x.
FORWARD = torch.tensor(
    [[0.0, 0.0, 1.0, 1.0], [-1.0, 0.0, 0.0, 2.0], [0.0, -1.0, 0.0, 1.5], [0.0, 0.0, 0.0, 1.0]]
)


def _cams(cam2lidar=FORWARD, post_rot=None, post_tran=None, intrinsics=K) -> CameraGeometry:
    post_rot = torch.eye(3) if post_rot is None else post_rot
    post_tran = torch.zeros(3) if post_tran is None else post_tran
    return CameraGeometry(
        intrinsics[None, None], cam2lidar[None, None], post_rot[None, None], post_tran[None, None]
    )


def test_frustum_positions():
    bins = DepthBins(1.0, 60.0, 1.0)
    f = create_frustum((256, 704), (16, 44), bins)
    assert f.shape == (59, 16, 44, 3)
    assert (
        f[0, 0, -1, 0] == 703 and f[0, -1, 0, 1] == 255 and f[-1, 0, 0, 2] == 59
    )  # linspace quirk, d = 1..59
    centers = create_frustum((256, 704), (16, 44), bins, cell_centers=True)
    assert centers[0, 0, 0, 0] == pytest.approx(7.5) and centers[0, 1, 1, 1] == pytest.approx(23.5)
    with pytest.raises(ValueError, match="whole number"):
        DepthBins(1.0, 60.0, 0.7)


def test_hand_computed_lift_without_augmentation():
    frustum = torch.tensor([[[[50.0, 20.0, 10.0], [150.0, 20.0, 10.0], [50.0, 70.0, 4.0]]]])  # (1, 1, 3, 3)
    pts = frustum_to_lidar(frustum, _cams())[0, 0, 0, 0]  # (3, 3)
    # principal point at 10 m -> 10 m ahead; 100 px right at 10 m -> 10 m right (-y);
    # 50 px down at 4 m -> 2 m down
    expected = torch.tensor([[11.0, 2.0, 1.5], [11.0, -8.0, 1.5], [5.0, 2.0, -0.5]])
    assert torch.allclose(pts, expected, atol=1e-5)


def _augment(r: float, crop: tuple[float, float], flip: bool, angle_deg: float, size: tuple[int, int]):
    """The image augmentation of ``data/augment.py`` as a pixel function and as (post_rot, post_tran)."""
    h, w = size
    a = math.radians(angle_deg)
    rot = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    centre = torch.tensor([w / 2, h / 2])

    def step_by_step(uv: torch.Tensor) -> torch.Tensor:  # (..., 2) original pixels -> augmented pixels
        uv = uv * r - torch.tensor(crop)  # resize, then crop
        if flip:
            uv = torch.stack([w - uv[..., 0], uv[..., 1]], -1)
        return (uv - centre) @ rot.T + centre  # rotate about the crop centre

    flip_m = torch.diag(torch.tensor([-1.0, 1.0])) if flip else torch.eye(2)
    flip_b = torch.tensor([float(w), 0.0]) if flip else torch.zeros(2)
    A = rot @ flip_m * r
    b = rot @ (flip_m @ -torch.tensor(crop) + flip_b) + (centre - rot @ centre)
    post_rot, post_tran = torch.eye(3), torch.zeros(3)
    post_rot[:2, :2], post_tran[:2] = A, b
    return step_by_step, post_rot, post_tran


@pytest.mark.parametrize("flip,angle", [(False, 0.0), (True, 0.0), (True, 4.0), (False, -5.4)])
def test_frustum_points_project_back_to_their_pixels_through_the_augmentation(flip, angle):
    size, bins = (64, 176), DepthBins(2.0, 50.0, 8.0)
    frustum = create_frustum(size, (4, 11), bins)  # (D, h, w, 3) augmented (u, v, d)
    step_by_step, post_rot, post_tran = _augment(0.11, (3.0, 35.0), flip, angle, size)
    yaw = math.radians(30.0)  # a camera turned 30 deg left of FORWARD, placed at (0.5, -0.3, 1.6)
    turn = torch.eye(4)
    turn[:2, :2] = torch.tensor([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])
    cam2lidar = turn @ FORWARD
    cam2lidar[:3, 3] = torch.tensor([0.5, -0.3, 1.6])
    K_full = torch.tensor([[1266.0, 0.0, 816.0], [0.0, 1266.0, 491.0], [0.0, 0.0, 1.0]])
    pts = frustum_to_lidar(frustum, _cams(cam2lidar, post_rot, post_tran, K_full))[0, 0]  # (D, h, w, 3)
    # back to the camera, project with K in the ORIGINAL image, then apply the augmentation step by step
    cam = (pts - cam2lidar[:3, 3]) @ cam2lidar[:3, :3]  # R^T (p - t)
    assert torch.allclose(cam[..., 2], frustum[..., 2], atol=1e-3)  # the depth is the camera z
    uv_orig = (cam @ K_full.T)[..., :2] / cam[..., 2:3]
    assert torch.allclose(step_by_step(uv_orig), frustum[..., :2], atol=2e-3)


def test_view_transformer_splats_a_pixel_at_a_known_depth_into_the_expected_cell():
    grid = BEVGrid(-8.0, 8.0, -8.0, 8.0, 1.0)
    bins = DepthBins(1.0, 13.0, 2.0)  # 1, 3, ..., 11 m
    vt = LSSViewTransformer((40, 100), (3, 5), bins, grid, z_range=(-10.0, 10.0))
    cams = _cams()
    # frustum column 2 = u 49.5, row 1 = v 19.5 (linspace): ~on the optical axis; all mass on d = 5 m
    depth = torch.zeros(1, 1, 6, 3, 5)
    depth[0, 0, 2, 1, 2] = 1.0
    context = torch.zeros(1, 1, 4, 3, 5)
    context[0, 0, :, 1, 2] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    bev = vt(depth, context, cams)
    assert bev.shape == (1, 4, 16, 16)
    # camera at (1, 2), 5 m ahead along +x, 0.025 m left -> (6.0, 2.025): column 14, row 10
    nz = torch.nonzero(bev[0, 0])
    assert nz.tolist() == [[10, 14]]
    assert torch.allclose(bev[0, :, 10, 14], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    # triples are cached while the cameras do not change, rebuilt when they do
    first = vt.index(cams)
    assert vt.index(_cams()) is first
    moved = FORWARD.clone()
    moved[0, 3] = 2.0
    assert vt.index(_cams(moved)) is not first
    with pytest.raises(ValueError, match="frustum"):
        vt(torch.zeros(1, 1, 5, 3, 5), context, cams)


# ------------------------------------------------------------------------------------------ temporal warp
