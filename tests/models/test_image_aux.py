"""Image-plane targets of image pretraining and the student's auxiliary head (``models/image_aux.py``):
projection, centre heatmaps, class occupancy, label warping, depth bin centres, and that the targets
line up with the rendered images of the smoke world."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from distillbev.config import load_config
from distillbev.data.augment import ImageAug, image_affine, warp_labels
from distillbev.data.batch import Batch
from distillbev.data.collate import collate
from distillbev.data.config import ImageAugConfig
from distillbev.models.image_aux import NUM_CLASSES, center_heatmaps, class_occupancy, to_image
from distillbev.models.lss import DepthBins
from distillbev.structures import CLASS_NAMES
from distillbev.train.config import RunConfig
from distillbev.train.pretrain import pretrain_dataset

ROOT = Path(__file__).resolve().parents[2]

#: A camera looking along +x of the LiDAR frame: its axes (x right, y down, z forward) as columns.
FORWARD = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def camera(rotation: torch.Tensor, origin: tuple[float, float, float]) -> torch.Tensor:
    """``cam2lidar`` (4, 4) of a camera with these axes (columns) at ``origin`` (LiDAR frame, m)."""
    m = torch.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = torch.tensor(origin)
    return m


def yawed(deg: float) -> torch.Tensor:
    """``FORWARD`` turned by ``deg`` about the LiDAR z axis (180: looking along -x)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    rz = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return rz @ FORWARD


def test_to_image_hand_computed():
    # K: f = 100, principal point (50, 40); camera at (0.5, 0, 1) looking along +x.
    K = torch.tensor([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]])
    # Two cameras: forward, and backward (yaw 180) at the same place.
    intrinsics = torch.stack([K, K])
    cam2lidar = torch.stack([camera(FORWARD, (0.5, 0.0, 1.0)), camera(yawed(180.0), (0.5, 0.0, 1.0))])
    post_rot = torch.diag(torch.tensor([0.5, 0.5, 1.0])).expand(2, 3, 3)
    post_tran = torch.tensor([-3.0, 4.0, 0.0]).expand(2, 3)
    # Point 10 m ahead, 2 m to the right (lidar y = -2) and 0.5 m below the camera.
    points = torch.tensor([[[10.5, -2.0, 0.5]], [[0.5, 0.0, 6.0]]])  # (2, 1, 3)
    uv, z = to_image(points, intrinsics, cam2lidar, post_rot, post_tran)
    assert uv.shape == (2, 2, 1, 2) and z.shape == (2, 2, 1)
    # Forward camera: p_cam = (2, 0.5, 10) -> (100*0.2 + 50, 100*0.05 + 40) = (70, 45) -> x0.5 + (-3, 4).
    assert torch.allclose(uv[0, 0, 0], torch.tensor([32.0, 26.5]), atol=1e-4)
    assert z[0, 0, 0].item() == pytest.approx(10.0, abs=1e-5)
    # Backward camera sees it 10 m behind: depth -10 (the caller drops depth < min_depth).
    assert z[1, 0, 0].item() == pytest.approx(-10.0, abs=1e-5)
    # The second point lies 5 m straight above the camera: depth 0 along the optical axis.
    assert z[0, 1, 0].item() == pytest.approx(0.0, abs=1e-5)


def hand_batch(boxes: list[list[float]], labels: list[int], cams: list[torch.Tensor]) -> Batch:
    """One sample, cameras ``cams`` (cam2lidar), f = 64, principal point (64, 32) of a 64x128 image."""
    n = len(cams)
    K = torch.tensor([[64.0, 0.0, 64.0], [0.0, 64.0, 32.0], [0.0, 0.0, 1.0]])
    return Batch(
        images=torch.zeros(1, n, 3, 64, 128),
        intrinsics=K.expand(1, n, 3, 3).clone(),
        cam2lidar=torch.stack(cams)[None],
        post_rot=torch.eye(3).expand(1, n, 3, 3).clone(),
        post_tran=torch.zeros(1, n, 3),
        depth=torch.zeros(1, n, 64, 128),
        points=[torch.zeros(0, 5)],
        gt_boxes=[torch.tensor(boxes, dtype=torch.float32).reshape(-1, 9)],
        gt_labels=[torch.tensor(labels, dtype=torch.long)],
        bev_aug=torch.eye(4)[None],
        lidar2global=torch.eye(4, dtype=torch.float64)[None],
    )


def test_center_heatmap_one_box_ahead_of_one_camera():
    bus = CLASS_NAMES.index("bus")
    front, back = camera(FORWARD, (0.0, 0.0, 0.0)), camera(yawed(180.0), (0.0, 0.0, 0.0))
    # 20 m ahead, 2.5 m to the left: u = 64 + 64 * 2.5 / 20 = 56 -> x cell 7 (stride 8); v = 32 -> y cell 4.
    box = [20.0, 2.5, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]
    heat = center_heatmaps(hand_batch([box], [bus], [front, back]), (64, 128), 8)
    assert heat.shape == (2, NUM_CLASSES, 8, 16)
    assert heat.eq(1).sum() == 1 and heat[0, bus, 4, 7] == 1.0
    assert heat.max() == 1.0
    assert 0 < heat[0, bus, 4, 8] < 1  # a Gaussian (radius >= 1) around the peak
    assert heat[0, torch.arange(NUM_CLASSES) != bus].abs().sum() == 0  # other classes empty
    assert heat[1].abs().sum() == 0  # the backward camera sees nothing


@pytest.mark.parametrize(
    "centre",
    [
        (-20.0, 0.0, 0.0),  # behind the camera
        (0.3, 0.0, 0.0),  # in front, closer than min_depth (0.5 m)
        (10.0, 30.0, 0.0),  # in front, far outside the image to the left
    ],
)
def test_center_heatmap_box_not_in_the_image_gives_nothing(centre):
    box = [*centre, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]
    heat = center_heatmaps(hand_batch([box], [0], [camera(FORWARD, (0.0, 0.0, 0.0))]), (64, 128), 8)
    assert heat.shape == (1, NUM_CLASSES, 8, 16) and heat.abs().sum() == 0


def test_class_occupancy_hand_case():
    k = 4  # mask value k = class CLASS_NAMES[k - 1]
    masks = torch.zeros(1, 2, 16, 16, dtype=torch.long)
    masks[0, 0, 8:12, 0:8] = k  # 4x8 pixels of the bottom-left cell (stride 8) of camera 0
    masks[0, 1, 0:8, 8:16] = 1  # camera 1: the whole top-right cell is class 0
    occ = class_occupancy(masks, 8)
    assert occ.shape == (2, NUM_CLASSES, 2, 2)
    assert occ[0, k - 1, 1, 0].item() == pytest.approx(32 / 64)
    assert occ[1, 0, 0, 1].item() == pytest.approx(1.0)
    expected = torch.zeros_like(occ)
    expected[0, k - 1, 1, 0], expected[1, 0, 0, 1] = 0.5, 1.0
    assert torch.equal(occ, expected)  # zeros everywhere else, label 0 counts for no class
    with pytest.raises(ValueError, match="not divisible"):
        class_occupancy(torch.zeros(1, 1, 12, 16, dtype=torch.long), 8)


def test_warp_labels_nearest_keeps_labels_and_flip_mirrors():
    rng = np.random.default_rng(0)
    labels = np.zeros((48, 80), dtype=np.uint8)
    for value in (3, 7, 10):
        y, x = rng.integers(0, 40), rng.integers(0, 70)
        labels[y : y + 8, x : x + 10] = value
    cfg = ImageAugConfig(final_size=(40, 96), rotate_deg=5.4)
    seen = set()
    for seed in range(6):  # resizes, crops, flips and rotations
        aug = image_affine(labels.shape, cfg, np.random.default_rng(seed))
        out = warp_labels(labels, aug)
        assert out.shape == (40, 96) and out.dtype == np.uint8
        assert set(np.unique(out)) <= {0, 3, 7, 10}  # no blended values
        seen |= set(np.unique(out).tolist())
    assert seen >= {3, 7, 10}
    h, w = labels.shape
    flip = ImageAug(np.array([[-1.0, 0.0], [0.0, 1.0]]), np.array([float(w), 0.0]), 1.0, (h, w), (h, w))
    assert np.array_equal(warp_labels(labels, flip), labels[:, ::-1])
    identity = ImageAug(np.eye(2), np.zeros(2), 1.0, (h, w), (h, w))
    assert np.array_equal(warp_labels(labels, identity), labels)


def test_depth_bins_centres():
    edges, centres = DepthBins(1.0, 61.0, 1.875), DepthBins(1.0, 61.0, 1.875, centers=True)
    assert centres.num_bins == edges.num_bins == 32
    assert torch.allclose(centres.candidates(), edges.candidates() + 0.9375)
    assert centres.candidates()[0].item() == pytest.approx(1.9375)
    assert centres.candidates()[-1].item() == pytest.approx(61.0 - 0.9375)
    d = torch.tensor([0.5, 1.0, 2.8, 2.9, 30.0, 60.9, 100.0])
    assert torch.equal(centres.bin_of(d), edges.bin_of(d))
    assert edges.bin_of(d).tolist() == [0, 0, 0, 1, 15, 31, 31]
    assert torch.equal(centres.bin_of(centres.candidates()), torch.arange(32))


def _world_batch(smoke_world, train: bool, image_size: tuple[int, int]) -> Batch:
    h, w = image_size
    cfg = load_config(
        RunConfig,
        [ROOT / "configs/student/bevdet.yaml"],
        [
            f"data.dataroot={smoke_world.dataroot}",
            "student.image_pretrained=",
            f"student.image_size=[{h}, {w}]",
            f"data.reader.image.final_size=[{h}, {w}]",
        ],
    )
    ds = pretrain_dataset(cfg, train=train)
    return collate([ds[i] for i in range(len(ds))])


def _centre_mask_agreement(batch: Batch, heat: torch.Tensor, stride: int, mirror: bool) -> tuple[int, int]:
    """(boxes whose class shows in the mask around their projected centre, boxes whose centre is a
    heatmap peak); the projection recomputed here in float64 numpy, not with ``to_image``."""
    masks = batch.class_masks.numpy()
    b_n, n_cam = heat.shape[0], batch.intrinsics.shape[1]
    h, w = masks.shape[-2:]
    agree = total = 0
    for i in range(b_n):
        b, n = divmod(i, n_cam)
        K = batch.intrinsics[b, n].double().numpy()
        lidar2cam = np.linalg.inv(batch.cam2lidar[b, n].double().numpy())
        A, t = batch.post_rot[b, n, :2, :2].double().numpy(), batch.post_tran[b, n, :2].double().numpy()
        for box, label in zip(batch.gt_boxes[b].double().numpy(), batch.gt_labels[b].tolist(), strict=True):
            p = lidar2cam[:3, :3] @ box[:3] + lidar2cam[:3, 3]
            if p[2] < 0.5:
                continue
            u, v = A @ ((K @ p)[:2] / p[2]) + t
            if not (0 <= u < w and 0 <= v < h) or heat[i, label, int(v // stride), int(u // stride)] != 1:
                continue
            total += 1
            if mirror:  # wrong geometry: the mirror image of the centre
                u = w - 1 - u
            x, y = int(u), int(v)
            window = masks[b, n, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]  # 3x3 pixels
            agree += bool((window == label + 1).any())
    return agree, total


@pytest.mark.parametrize("image_size", [(64, 176), (112, 320)])
@pytest.mark.parametrize("train", [True, False])
def test_pretraining_targets_line_up_with_the_image(smoke_world, train, image_size):
    """A mask pixel's class and the projected box centre agree on rendered samples (occlusion allowed),
    with image augmentation (resize, crop, flip, rotation) on and off; a mirrored centre does not."""
    batch = _world_batch(smoke_world, train, image_size)
    assert batch.class_masks is not None and batch.class_masks.shape[-2:] == image_size
    assert batch.class_masks.dtype == torch.long and int(batch.class_masks.max()) <= NUM_CLASSES
    a = batch.post_rot[..., :2, :2]
    if train:  # the draw really flips and rotates some cameras
        assert (a[..., 0, 0] < 0).any() and (a[..., 0, 0] > 0).any() and (a[..., 0, 1].abs() > 1e-3).any()
    else:
        assert torch.all(a[..., 0, 0] > 0) and torch.all(a[..., 0, 1] == 0)
    stride = 8
    heat = center_heatmaps(batch, image_size, stride)
    agree, total = _centre_mask_agreement(batch, heat, stride, mirror=False)
    wrong, total_mirror = _centre_mask_agreement(batch, heat, stride, mirror=True)
    assert total == total_mirror >= 30
    assert total >= 0.9 * int(heat.eq(1).sum())  # nearly every peak is a box found by the recomputation
    assert agree / total >= 0.75, (agree, total)
    assert wrong / total <= 0.3 and wrong <= agree / 3, (wrong, agree, total)
    if train:  # flipped cameras agree as well as the others
        flipped = a[..., 0, 0].flatten() < 0
        keep = torch.zeros_like(heat)
        keep[flipped] = heat[flipped]
        agree_f, total_f = _centre_mask_agreement(batch, keep, stride, mirror=False)
        assert total_f >= 10 and agree_f / total_f >= 0.75, (agree_f, total_f)
