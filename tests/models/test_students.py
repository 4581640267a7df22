"""Camera students (BEVDet, BEVDet4D, BEVDepth, BEVDepth4D) at smoke scale, ResNet weights, depth targets."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from distillbev.config import ConfigError, load_config
from distillbev.data.batch import Batch
from distillbev.layers.resnet import ResNet, load_torchvision_weights, resnet, tiny_resnet
from distillbev.models.bevdepth import (
    ModulatedDeformConv3x3,
    camera_vector,
    depth_loss,
    depth_targets,
)
from distillbev.models.heads import HeadConfig
from distillbev.models.lss import CameraGeometry, DepthBins
from distillbev.models.student_config import StudentConfig
from distillbev.models.students import build_student

#: nuScenes camera yaws (deg) in CAMERA_NAMES order.
CAMERA_YAWS = (55.0, 0.0, -55.0, 110.0, 180.0, -110.0)


def smoke_config(**changes) -> StudentConfig:
    """A smoke-scale student: 6 cams at 32x96, D=8, C=8, G=32, width 8, BEV (8,16,32) (1,2,2),
    FPN 16, head 16."""
    cfg = StudentConfig(
        image_size=(32, 96),
        tiny_stem_width=8,
        tiny_widths=(8, 16, 32, 64),
        neck_channels=16,
        depth_bins=(1.0, 49.0, 6.0),
        context_channels=8,
        bev_cell=3.2,
        bev_channels=(8, 16, 32),
        bev_strides=(1, 2, 2),
        fpn_channels=16,
        fpn_mid_channels=32,
        depthnet_mid_channels=8,
        depthnet_blocks=1,
        head=HeadConfig(share_channels=16, head_channels=16, tasks=(("car",),), circle_radius=(4.0,)),
    )
    return replace(cfg, **changes)


def camera_rig(b: int, image_size: tuple[int, int]) -> CameraGeometry:
    """Six outward-looking cameras; K of a 900x1600 image, resized to width W and bottom-cropped."""
    h, w = image_size
    r = w / 1600.0
    K = torch.tensor([[1266.0, 0.0, 800.0], [0.0, 1266.0, 450.0], [0.0, 0.0, 1.0]])
    cam2lidar = []
    for yaw in CAMERA_YAWS:
        c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
        m = torch.eye(4)
        # camera axes (x right, y down, z forward) in the LiDAR frame, as columns
        m[:3, :3] = torch.tensor([[s, 0.0, c], [-c, 0.0, s], [0.0, -1.0, 0.0]])
        m[:3, 3] = torch.tensor([1.0 * c, 1.0 * s, -0.3])
        cam2lidar.append(m)
    post_rot = torch.diag(torch.tensor([r, r, 1.0]))
    post_tran = torch.tensor([0.0, -(900 * r - h), 0.0])
    n = len(CAMERA_YAWS)
    return CameraGeometry(
        intrinsics=K.expand(b, n, 3, 3).clone(),
        cam2lidar=torch.stack(cam2lidar).expand(b, n, 4, 4).clone(),
        post_rot=post_rot.expand(b, n, 3, 3).clone(),
        post_tran=post_tran.expand(b, n, 3).clone(),
    )


def translation(x: float, y: float) -> torch.Tensor:
    m = torch.eye(4)
    m[0, 3], m[1, 3] = x, y
    return m


def smoke_batch(cfg: StudentConfig, b: int = 2, seed: int = 0, temporal: bool = True) -> Batch:
    """A random Batch with a realistic rig, sparse LiDAR depth, two or three cars per sample, a previous frame
    2 m behind (prev LiDAR -> current = translation (-2, 0))."""
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.image_size
    cams = camera_rig(b, cfg.image_size)
    n = cams.intrinsics.shape[1]
    depth = torch.rand(b, n, h, w, generator=g) * 60
    depth[torch.rand(b, n, h, w, generator=g) > 0.1] = 0
    boxes = torch.tensor(
        [
            [10.0, 3.0, -1.0, 4.5, 1.9, 1.6, 0.3, 2.0, 0.0],
            [-15.0, -8.0, -1.0, 4.2, 1.8, 1.5, 1.9, 0.0, 0.0],
            [20.0, -20.0, -1.0, 4.0, 1.7, 1.5, -0.5, 0.0, 3.0],
        ]
    )
    counts = [2 + i % 2 for i in range(b)]  # an odd total for b = 2, so L1 gradient signs cannot cancel
    prev = translation(-2.0, 0.0) @ cams.cam2lidar if temporal else None
    return Batch(
        images=torch.randn(b, n, 3, h, w, generator=g),
        intrinsics=cams.intrinsics,
        cam2lidar=cams.cam2lidar,
        post_rot=cams.post_rot,
        post_tran=cams.post_tran,
        depth=depth,
        points=[torch.randn(100, 5, generator=g) for _ in range(b)],
        gt_boxes=[boxes[:k] + 0.1 * torch.rand(k, 9, generator=g) for k in counts],
        gt_labels=[torch.zeros(k, dtype=torch.long) for k in counts],
        bev_aug=torch.eye(4).expand(b, 4, 4).clone(),
        lidar2global=torch.eye(4).expand(b, 4, 4).clone(),
        sample_tokens=[f"s{i}" for i in range(b)],
        prev_images=torch.randn(b, n, 3, h, w, generator=g) if temporal else None,
        prev_cam2lidar=prev,
        has_prev=torch.ones(b, dtype=torch.bool) if temporal else None,
    )


STUDENTS = [("bevdet", False), ("bevdet", True), ("bevdepth", False), ("bevdepth", True)]


@pytest.mark.parametrize("kind,temporal", STUDENTS)
@pytest.mark.parametrize("strides", [(1, 2, 2), (2, 2, 2)])
def test_every_student_builds_runs_and_trains_every_parameter(kind, temporal, strides):
    torch.manual_seed(0)
    cfg = smoke_config(kind=kind, temporal=temporal, bev_strides=strides)
    model = build_student(cfg)
    batch = smoke_batch(cfg, temporal=temporal)
    if temporal:
        batch.prev_images.requires_grad_(True)
    taps, preds = model(batch)
    g = cfg.bev_grid().shape[0]  # 32
    s0 = strides[0]
    assert taps["B0"].shape == (2, 8, g // s0, g // s0)
    assert taps["B1"].shape == (2, 16, g // (s0 * 2), g // (s0 * 2))
    assert taps["B2"].shape == (2, 32, g // (s0 * 4), g // (s0 * 4))
    assert taps["H"].shape == (2, 16, g, g)
    assert ("depth_logits" in taps) == (kind == "bevdepth")
    if kind == "bevdepth":
        assert taps["depth_logits"].shape == (12, 8, 2, 6)
    assert all(torch.isfinite(t).all() for t in taps.values())
    losses = model.loss(batch, taps, preds)
    assert set(losses) == ({"heatmap", "box", "depth"} if kind == "bevdepth" else {"heatmap", "box"})
    sum(losses.values()).backward()
    missing = [
        name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
    ]
    assert not missing, f"parameters without a finite gradient: {missing}"
    zero = [name for name, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, f"parameters with an all-zero gradient: {zero}"
    if temporal:
        assert batch.prev_images.grad is None  # the previous branch is detached


def test_stride_8_image_features_quadruple_the_frustum_and_train_every_parameter():
    torch.manual_seed(0)
    cfg = smoke_config(kind="bevdepth", image_stride=8)
    assert cfg.feature_size() == (4, 12)  # 32x96 images at stride 8
    model = build_student(cfg)
    assert not hasattr(model.backbone, "layer4")  # stage 4 would be unused: it is not built
    assert model.view_transformer.frustum.shape[1:3] == (4, 12)
    batch = smoke_batch(cfg, temporal=False)
    taps, preds = model(batch)
    assert taps["depth_logits"].shape == (12, 8, 4, 12)
    losses = model.loss(batch, taps, preds)
    # the depth targets are taken per 8x8 cell: the same LiDAR depth map gives 4x the target cells
    assert torch.isfinite(losses["depth"])
    sum(losses.values()).backward()
    zero = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not zero, f"parameters without a gradient: {zero}"
    with pytest.raises(ValueError, match="image_stride"):
        smoke_config(image_stride=4)


def test_resnet_built_to_stride_16_loads_a_full_torchvision_checkpoint(tmp_path):
    torch.manual_seed(0)
    src = resnet("resnet18")
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)  # has layer4, which a stride-8 student does not build
    cfg = smoke_config(backbone="resnet18", pretrained=str(path), image_stride=8, neck_channels=16)
    model = build_student(cfg)
    assert torch.equal(model.backbone.layer3[1].conv2.weight, src.layer3[1].conv2.weight)
    x = torch.randn(1, 3, 64, 64)
    src.eval(), model.backbone.eval()
    assert torch.equal(model.backbone(x)[-1], src(x)[0])  # both are the layer3 output


def test_temporal_student_uses_the_previous_frame_and_refuses_a_batch_without_it():
    torch.manual_seed(0)
    cfg = smoke_config(temporal=True)
    model = build_student(cfg).eval()
    batch = smoke_batch(cfg, b=1)
    with torch.no_grad():
        h1 = model.forward_bev(batch)["H"]
        batch.prev_images = batch.prev_images + 1.0
        h2 = model.forward_bev(batch)["H"]
    assert not torch.allclose(h1, h2)
    batch.prev_images = None
    with pytest.raises(ValueError, match="prev_images"):
        model.forward_bev(batch)


def test_wrong_image_size_is_refused():
    cfg = smoke_config()
    model = build_student(cfg)
    batch = smoke_batch(smoke_config(image_size=(48, 96)), b=1, temporal=False)
    with pytest.raises(ValueError, match="image_size"):
        model.forward_bev(batch)


def test_config_validation_and_yaml(tmp_path):
    with pytest.raises(ValueError, match="multiples of 16"):
        smoke_config(image_size=(30, 96))
    with pytest.raises(ValueError, match="depth bins"):
        smoke_config(depth_bins=(1.0, 60.0, 7.0))
    with pytest.raises(ValueError, match="bev_strides"):
        smoke_config(bev_strides=(4, 4, 4))
    with pytest.raises(ValueError, match="pretrained"):
        smoke_config(pretrained="weights.pth")
    path = tmp_path / "s.yaml"
    path.write_text("kind: bevdepth\ntemporal: true\ndepth_bins: [1, 60, 1]\nbev_cell: 0.8\n")
    cfg = load_config(StudentConfig, [path])
    assert cfg.bins().num_bins == 59 and cfg.bev_grid().shape == (128, 128) and cfg.temporal
    path.write_text("depth_bin: [1, 60, 1]\n")
    with pytest.raises(ConfigError, match="depth_bins"):
        load_config(StudentConfig, [path])


def test_full_scale_shapes_and_parameter_counts():
    """BEVDepth4D-R50 at 256x704 (docs/architectures.md): shapes on the meta device, parameter split."""
    cfg = StudentConfig(
        kind="bevdepth",
        temporal=True,
        image_size=(256, 704),
        backbone="resnet50",
        neck_channels=512,
        depth_bins=(1.0, 60.0, 1.0),
        context_channels=64,
        bev_cell=0.8,
        bev_channels=(128, 256, 512),
        bev_strides=(2, 2, 2),
        fpn_channels=256,
        fpn_mid_channels=512,
        depthnet_mid_channels=256,
        depth_dcn=True,
        head=HeadConfig(),
    )
    with torch.device("meta"):
        model = build_student(cfg)

    def millions(m: torch.nn.Module) -> float:
        return sum(p.numel() for p in m.parameters()) / 1e6

    assert millions(model.backbone) == pytest.approx(23.5, abs=0.1)  # ResNet-50 without fc
    assert millions(model.neck) == pytest.approx(3.9, abs=0.1)
    assert millions(model.depth_net) == pytest.approx(4.9, abs=0.15)
    assert millions(model.fpn) == pytest.approx(6.6, abs=0.1)
    assert cfg.feature_size() == (16, 44) and model.view_transformer.frustum.shape == (59, 16, 44, 3)


# ------------------------------------------------------------------------------------------ ResNet weights
def test_resnet18_loads_a_torchvision_state_dict_and_names_wrong_keys(tmp_path):
    torch.manual_seed(0)
    src = resnet("resnet18")
    state = src.state_dict()
    for key in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.bn1.running_mean",
        "layer2.0.downsample.0.weight",
        "layer4.1.conv2.weight",
    ):
        assert key in state
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)  # classifier is dropped
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    dst = resnet("resnet18")
    load_torchvision_weights(dst, path)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    x = torch.randn(1, 3, 64, 64)
    src.eval(), dst.eval()
    assert torch.equal(src(x)[-1], dst(x)[-1])

    wrong = dict(state)
    wrong["layer1.0.bn1.running_mean_typo"] = wrong.pop("layer1.0.bn1.running_mean")
    torch.save(wrong, path)
    with pytest.raises(
        ValueError,
        match=r"missing keys \(1\): layer1\.0\.bn1\.running_mean;.*unexpected keys "
        r"\(1\): layer1\.0\.bn1\.running_mean_typo",
    ):
        load_torchvision_weights(dst, path)
    torch.save(ResNet("basic", (2, 2, 2, 2), (64, 128, 256, 128)).state_dict(), path)  # layer4 narrower
    with pytest.raises(ValueError, match=r"shape mismatch.*layer4\.0\.conv1\.weight \(128, 256, 3, 3\)"):
        load_torchvision_weights(dst, path)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_torchvision_weights(dst, tmp_path / "nope.pth")


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients():
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for flag in (False, True):
        torch.manual_seed(0)
        net = tiny_resnet(8, (8, 16, 16, 32), grad_checkpoint=flag)
        out = net(x.clone().requires_grad_(True))
        sum(o.square().sum() for o in out).backward()
        grads.append([p.grad for p in net.parameters()])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads, strict=True))


def test_pretrained_path_is_loaded_by_the_builder(tmp_path):
    torch.manual_seed(1)
    src = resnet("resnet18")
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    cfg = smoke_config(backbone="resnet18", pretrained=str(path))
    model = build_student(cfg)
    assert torch.equal(model.backbone.layer3[0].conv1.weight, src.layer3[0].conv1.weight)


# ------------------------------------------------------------------------------------------- BEVDepth parts
def test_depth_targets_keep_the_minimum_valid_depth_per_cell_and_land_in_the_right_bin():
    bins = DepthBins(1.0, 60.0, 1.0)
    depth = torch.zeros(1, 1, 32, 48)
    depth[0, 0, 3, 5] = 30.2  # cell (0, 0)
    depth[0, 0, 10, 1] = 12.7  # cell (0, 0): the minimum
    depth[0, 0, 0, 0] = 0.5  # cell (0, 0): below d_min, ignored
    depth[0, 0, 17, 40] = 61.0  # cell (1, 2): beyond d_max, ignored -> no return
    depth[0, 0, 20, 20] = 59.9  # cell (1, 1)
    target = depth_targets(depth, 16, bins)
    assert target.shape == (1, 2, 3)
    expected = torch.tensor([[[12.7, 0.0, 0.0], [0.0, 59.9, 0.0]]])
    assert torch.allclose(target, expected)
    assert bins.bin_of(target)[0, 0, 0] == 11 and bins.bin_of(target)[0, 1, 1] == 58  # floor(d - 1)

    # the loss is minimised by logits that put the mass in those bins
    logits = torch.full((1, 59, 2, 3), -8.0)
    logits[0, 11, 0, 0] = 8.0
    logits[0, 58, 1, 1] = 8.0
    good = depth_loss(logits, target, bins)
    shifted = depth_loss(logits.roll(1, dims=1), target, bins)
    assert good < 0.001 < shifted
    # reference normalisation: mean over all B*N*D*h*w elements (masked cells count)
    zero = torch.zeros(1, 59, 2, 3)
    assert depth_loss(zero, target, bins, "all") == pytest.approx(2 * 59 * math.log(2) / (59 * 6), rel=1e-5)
    assert depth_loss(zero, target, bins, "valid") == pytest.approx(math.log(2), rel=1e-5)
    # softmax: uniform p = 1/D per bin; per cell -log(1/D) - (D-1) log(1 - 1/D), 2 cells with a return
    d = 59
    per_cell = math.log(d) - (d - 1) * math.log(1 - 1 / d)
    assert depth_loss(zero, target, bins, "all", "softmax") == pytest.approx(2 * per_cell / (d * 6), rel=1e-5)
    assert depth_loss(logits, target, bins, "valid", "softmax") < 0.001
    assert depth_loss(logits.roll(1, dims=1), target, bins, "valid", "softmax") > 0.1
    with pytest.raises(ValueError, match="depth_loss_prob"):
        depth_loss(zero, target, bins, "all", "softplus")


def test_camera_vector_layout():
    cams = camera_rig(1, (32, 96))
    vec = camera_vector(cams)
    assert vec.shape == (6, 33)
    assert torch.equal(vec[1, :9], cams.intrinsics[0, 1].flatten())
    assert torch.equal(vec[1, 18:21], cams.post_tran[0, 1])
    assert torch.equal(vec[1, 30:], cams.cam2lidar[0, 1, :3, 3])


def test_deformable_conv_with_zero_offsets_is_half_a_plain_conv_and_shifts_with_offsets():
    torch.manual_seed(0)
    dcn = ModulatedDeformConv3x3(3, 4)
    x = torch.randn(2, 3, 5, 7)
    plain = torch.nn.functional.conv2d(x, dcn.weight, dcn.bias, padding=1)
    # zero-initialised offset/mask conv: offsets 0, masks sigmoid(0) = 0.5
    assert torch.allclose(
        dcn(x), 0.5 * (plain - dcn.bias[None, :, None, None]) + dcn.bias[None, :, None, None], atol=1e-5
    )
    # every tap shifted by dx = +1 and a saturated mask: output column j reads input columns j, j+1, j+2
    with torch.no_grad():
        dcn.offset_mask.bias[1:18:2] = 1.0
        dcn.offset_mask.bias[18:] = 30.0
    padded = torch.nn.functional.pad(x, (0, 2, 1, 1))  # zeros right of the last column, above and below
    expected = torch.nn.functional.conv2d(padded, dcn.weight, dcn.bias)
    assert torch.allclose(dcn(x), expected, atol=1e-5)


# ---------------------------------------------------------------------------------------------- overfit
def test_overfit_one_batch_decodes_boxes_near_the_ground_truth():
    """100 steps on one fixed smoke batch (3.2 m cells): every GT car is found to within 0.5 m, its size
    to 15 % and its yaw to 0.2 rad. Decoding uses batch statistics (train-mode BN): with 1x3 stride-32
    image maps the unbiased running variance differs enough from the batch one to bias the sizes."""
    torch.manual_seed(0)
    cfg = smoke_config(kind="bevdet", head=replace(smoke_config().head, code_weights=(1.0,) * 10))
    model = build_student(cfg)
    batch = smoke_batch(cfg, b=1, temporal=False)
    steps = 100
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-2, total_steps=steps, pct_start=0.2)
    for _ in range(steps):
        taps, preds = model(batch)
        loss = sum(model.loss(batch, taps, preds).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    det = model.predict(batch)[0]
    for box in batch.gt_boxes[0]:
        d = (det.boxes[:, :2] - box[:2]).norm(dim=1)
        i = int(d.argmin())
        assert d[i] < 0.5, f"no detection within 0.5 m of {box[:2].tolist()}"
        assert det.scores[i] > 0.5 and det.labels[i] == 0
        assert torch.allclose(det.boxes[i, 3:6], box[3:6], rtol=0.15)
        assert abs(float(det.boxes[i, 6] - box[6])) < 0.2
