"""Image-plane heading (``models/image_heading.py``): the angle an image shows, its mirror signs under
image and BEV flips, the exact turn back into the BEV frame, and a student that trains with it."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_image_aux import FORWARD, camera, hand_batch, yawed
from test_students import smoke_batch, smoke_config

from distillbev.data.batch import Batch
from distillbev.data.geometry import transform_boxes
from distillbev.models.image_heading import (
    handedness,
    heading_loss,
    heading_targets,
    ray_azimuths,
    to_bev_heading,
)
from distillbev.models.lss import CameraGeometry
from distillbev.models.students import build_student
from distillbev.structures import CLASS_NAMES

CAR, CONE = CLASS_NAMES.index("car"), CLASS_NAMES.index("traffic_cone")


def _alpha(target: torch.Tensor, cam: int, row: int, col: int) -> float:
    """The angle of the (sin, cos) target at one cell."""
    s, c = target[cam, :, row, col].tolist()
    return math.atan2(s, c)


def test_targets_hand_computed_one_camera():
    # Forward camera at the origin, f = 64, principal point (64, 32), 64x128 image, stride 8.
    # A car 20 m ahead, 2.5 m left: centre pixel (56, 32) -> cell (row 4, col 7); its ray's azimuth
    # phi = atan2(2.5, 20). Yaw 0 (driving away: its back shows) -> alpha = -phi.
    front = camera(FORWARD, (0.0, 0.0, 0.0))
    phi = math.atan2(2.5, 20.0)
    for yaw in (0.0, math.pi / 2, math.pi):
        box = [20.0, 2.5, 0.0, 4.0, 2.0, 1.5, yaw, 0.0, 0.0]
        target, mask = heading_targets(hand_batch([box], [CAR], [front]), (64, 128), 8)
        assert target.shape == (1, 2, 8, 16) and mask.shape == (1, 8, 16)
        assert mask.sum() == 1 and mask[0, 4, 7]
        want = math.remainder(yaw - phi, 2 * math.pi)
        assert math.remainder(_alpha(target, 0, 4, 7) - want, 2 * math.pi) == pytest.approx(0.0, abs=1e-5)
    # A cone (no heading in the devkit) and a box behind the camera give no target.
    cone = [20.0, 2.5, 0.0, 0.4, 0.4, 0.8, 0.3, 0.0, 0.0]
    behind = [-20.0, 2.5, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]
    _, mask = heading_targets(hand_batch([cone, behind], [CONE, CAR], [front]), (64, 128), 8)
    assert mask.sum() == 0


def test_two_boxes_in_one_cell_keep_the_nearer_heading():
    front = camera(FORWARD, (0.0, 0.0, 0.0))
    near = [10.0, 0.0, 0.0, 4.0, 2.0, 1.5, 1.0, 0.0, 0.0]  # both on the optical axis: cell (4, 8)
    far = [30.0, 0.0, 0.0, 4.0, 2.0, 1.5, -2.0, 0.0, 0.0]
    for boxes in ([near, far], [far, near]):
        target, mask = heading_targets(hand_batch(boxes, [CAR, CAR], [front]), (64, 128), 8)
        assert mask.sum() == 1 and _alpha(target, 0, 4, 8) == pytest.approx(1.0, abs=1e-5)


def _flip_image(batch: Batch, width: int) -> Batch:
    """The same scene seen through a horizontally flipped image (u -> W - u), as the image augmentation
    flips: post_rot's x row negated."""
    flip = torch.tensor([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    post_rot = flip @ batch.post_rot
    post_tran = batch.post_tran @ flip.T + torch.tensor([float(width), 0.0, 0.0])
    return replace(batch, post_rot=post_rot, post_tran=post_tran)


def _flip_bev(batch: Batch, m: np.ndarray) -> Batch:
    """The BEV augmentation ``m`` folded in as the dataset does: into cam2lidar and the boxes."""
    mt = torch.tensor(m, dtype=torch.float32)
    boxes = [torch.tensor(transform_boxes(b.numpy(), m), dtype=torch.float32) for b in batch.gt_boxes]
    return replace(batch, cam2lidar=mt @ batch.cam2lidar, gt_boxes=boxes, bev_aug=mt[None])


def test_mirror_signs_follow_what_the_image_shows():
    """An image flip mirrors what is seen: the angle changes sign. A BEV flip mirrors only the frame the
    yaw is measured in, not the image: the angle is unchanged. Both flips: mirrored once."""
    front = camera(yawed(20.0), (1.0, 0.5, 0.0))
    box = [15.0, 4.0, 0.0, 4.0, 2.0, 1.5, 0.7, 0.0, 0.0]
    batch = hand_batch([box], [CAR], [front])
    base, mask = heading_targets(batch, (64, 128), 8)
    ((cam, row, col),) = mask.nonzero().tolist()
    a0 = _alpha(base, cam, row, col)
    assert abs(a0) > 0.2  # not a symmetric case

    img, mask_i = heading_targets(_flip_image(batch, 128), (64, 128), 8)
    ((cam_i, row_i, col_i),) = mask_i.nonzero().tolist()
    assert (row_i, col_i) == (row, 15 - col)  # the centre lands in the mirrored cell
    assert _alpha(img, cam_i, row_i, col_i) == pytest.approx(-a0, abs=1e-5)

    flip_y = np.diag([1.0, -1.0, 1.0, 1.0])
    bev, mask_b = heading_targets(_flip_bev(batch, flip_y), (64, 128), 8)
    assert torch.equal(mask_b, mask)  # the image is the same
    assert _alpha(bev, cam, row, col) == pytest.approx(a0, abs=1e-5)

    both, _ = heading_targets(_flip_bev(_flip_image(batch, 128), flip_y), (64, 128), 8)
    assert _alpha(both, cam_i, row_i, col_i) == pytest.approx(-a0, abs=1e-5)
    cams = CameraGeometry.from_batch(_flip_bev(_flip_image(batch, 128), flip_y))
    assert handedness(cams).tolist() == [[1.0]]  # two mirrors cancel
    assert handedness(CameraGeometry.from_batch(_flip_image(batch, 128))).tolist() == [[-1.0]]


@pytest.mark.parametrize("image_flip", [False, True])
@pytest.mark.parametrize("bev", ["none", "flip_x", "rotate_scale"])
def test_targets_turned_back_give_the_gt_yaw(image_flip, bev):
    """``to_bev_heading`` of the target at its cell's ray is the GT yaw in the (augmented) frame, up to
    the angle between the cell's ray and the box centre's (half a cell: under 0.07 rad here)."""
    cams = [
        camera(yawed(a), (0.8 * math.cos(math.radians(a)), 0.8 * math.sin(math.radians(a)), 0.0))
        for a in (0.0, 60.0, 180.0)
    ]
    rng = np.random.default_rng(0)
    boxes, labels = [], []
    for a in (0.0, 60.0, 180.0):
        for _ in range(4):
            az = math.radians(a + rng.uniform(-25, 25))
            r = rng.uniform(8, 40)
            boxes.append([r * math.cos(az), r * math.sin(az), 0.0, 4.0, 2.0, 1.5, rng.uniform(-3, 3), 0, 0])
            labels.append(CAR)
    batch = hand_batch(boxes, labels, cams)
    if image_flip:
        batch = _flip_image(batch, 128)
    if bev == "flip_x":
        batch = _flip_bev(batch, np.diag([-1.0, 1.0, 1.0, 1.0]))
    elif bev == "rotate_scale":
        c, s = math.cos(0.4), math.sin(0.4)
        batch = _flip_bev(batch, np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]) * 1.05)
    target, mask = heading_targets(batch, (64, 128), 8)
    cams_g = CameraGeometry.from_batch(batch)
    rays = ray_azimuths(cams_g, (64, 128), (8, 16), cell_centers=True)
    assert rays.norm(dim=1).sub(1).abs().max() < 1e-5
    bev_heading = to_bev_heading(target, rays, handedness(cams_g).flatten())  # (N, 2, h, w)
    yaws = batch.gt_boxes[0][:, 6]
    cells = mask.nonzero().tolist()
    assert len(cells) >= 8
    for cam, row, col in cells:
        s, c = bev_heading[cam, :, row, col].tolist()
        err = torch.remainder(torch.tensor(math.atan2(s, c)) - yaws + math.pi, 2 * math.pi) - math.pi
        assert err.abs().min() < 0.07, (cam, row, col, err)
    # Off the cells, an unsure prediction (0, 0) stays (0, 0) in the BEV frame.
    assert to_bev_heading(torch.zeros_like(target), rays, handedness(cams_g).flatten()).abs().max() == 0


def test_heading_loss_hand_computed():
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.zeros(1, 2, 2, 2)
    mask = torch.zeros(1, 2, 2, dtype=torch.bool)
    assert heading_loss(pred, target, mask) == 0  # no target cell
    target[0, :, 0, 1] = torch.tensor([0.6, 0.8])
    pred[0, :, 0, 1] = torch.tensor([0.0, 1.0])
    pred[0, :, 1, 1] = torch.tensor([5.0, 5.0])  # off the mask: ignored
    mask[0, 0, 1] = True
    assert heading_loss(pred, target, mask).item() == pytest.approx(0.6 + 0.2)


@pytest.mark.parametrize(
    ("kind", "region"), [("bevdet", "centre"), ("bevdepth", "centre"), ("bevdepth", "box")]
)
def test_student_with_the_heading_map_trains_it_and_feeds_the_bev(kind, region):
    torch.manual_seed(0)
    cfg = smoke_config(kind=kind, image_heading_weight=2.0, image_heading_region=region)
    model = build_student(cfg)
    plain = build_student(smoke_config(kind=kind))
    # The depth net makes 2 fewer context channels; the BEV side is unchanged.
    assert model.bev_encoder.state_dict().keys() == plain.bev_encoder.state_dict().keys()
    shapes = [v.shape for v in model.bev_encoder.state_dict().values()]
    assert shapes == [v.shape for v in plain.bev_encoder.state_dict().values()]
    batch = smoke_batch(cfg, temporal=False)
    taps, preds = model(batch)
    assert taps["image_heading"].shape == (12, 2, 2, 6)  # 6 cameras x 2 samples, stride 16
    losses = model.loss(batch, taps, preds)
    target, mask = heading_targets(batch, cfg.image_size, cfg.image_stride, region)
    assert mask.sum() > 0
    assert losses["image_heading"].item() == pytest.approx(
        2.0 * heading_loss(taps["image_heading"], target, mask).item(), rel=1e-5
    )
    sum(losses.values()).backward()
    grads = [p.grad for p in model.image_heading.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    # The BEV reads the heading channels: changing only the heading head changes the BEV map.
    with torch.no_grad():
        before = model.lift_splat(batch.images, CameraGeometry.from_batch(batch))[0]
        model.image_heading.out.bias.add_(1.0)
        after = model.lift_splat(batch.images, CameraGeometry.from_batch(batch))[0]
    changed = (after - before).abs().sum(dim=(0, 2, 3))
    assert changed[: cfg.context_channels - 2].max() == 0 and changed[-2:].min() > 0


def test_heading_config_errors():
    with pytest.raises(ValueError, match="image_heading_weight must be >= 0"):
        smoke_config(image_heading_weight=-1.0)
    with pytest.raises(ValueError, match="context_channels"):
        smoke_config(image_heading_weight=1.0, context_channels=2)
    with pytest.raises(ValueError, match="lift-splat"):
        smoke_config(kind="bevformer", image_heading_weight=1.0)


def test_box_region_fills_the_projected_extent_nearer_box_on_top():
    # Forward camera, f = 64, principal point (64, 32), stride 8. A car 20 m ahead (4 x 2 x 1.5 m):
    # its nearest face at 18 m spans u 64 -+ 64/18 = [60.4, 67.6] -> cols 7-8, v 32 -+ 64*0.75/18 ->
    # rows 3-4. A car 40 m ahead, 6 m right, spans u [71.6, 75.8] -> cols 8-9, rows 3-4: col 8 is
    # shared and keeps the nearer car's heading.
    front = camera(FORWARD, (0.0, 0.0, 0.0))
    near = [20.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.4, 0.0, 0.0]
    far = [40.0, -6.0, 0.0, 4.0, 2.0, 1.5, -1.2, 0.0, 0.0]
    for boxes in ([near, far], [far, near]):
        batch = hand_batch(boxes, [CAR, CAR], [front])
        target, mask = heading_targets(batch, (64, 128), 8, region="box")
        cells = {tuple(c) for c in mask[0].nonzero().tolist()}
        assert cells == {(r, c) for r in (3, 4) for c in (7, 8, 9)}
        for r in (3, 4):
            assert _alpha(target, 0, r, 7) == pytest.approx(0.4, abs=1e-5)
            assert _alpha(target, 0, r, 8) == pytest.approx(0.4, abs=1e-5)
            assert _alpha(target, 0, r, 9) == pytest.approx(-1.2 - math.atan2(-6.0, 40.0), abs=1e-5)
    # The centre region of the same scene: one cell per car.
    _, mask = heading_targets(hand_batch([near, far], [CAR, CAR], [front]), (64, 128), 8)
    assert {tuple(c) for c in mask[0].nonzero().tolist()} == {(4, 8), (4, 9)}
