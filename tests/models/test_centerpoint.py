"""CenterPoint-pillar teacher at smoke scale: taps, gradients, variants, config checks."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch

from distillbev.config import ConfigError, load_config
from distillbev.data.batch import Batch
from distillbev.data.virtual_points import MVP_POINT_FEATURES, to_mvp_layout
from distillbev.models.centerpoint import CenterPointConfig, build_centerpoint
from distillbev.models.heads import HeadConfig
from distillbev.models.mvp import build_mvp
from distillbev.structures import CLASS_NAMES

# A smoke-scale teacher: 3.2 m pillars (32^2 canvas), PFN 16, BEV (8, 16, 32), strides
# (1, 2, 2); FPN 8 per stage with the head at the canvas resolution (32^2).
SMOKE = CenterPointConfig(
    pillar_size=3.2,
    pfn_channels=16,
    backbone_layers=(1, 1, 1),
    backbone_strides=(1, 2, 2),
    backbone_channels=(8, 16, 32),
    fpn_channels=(8, 8, 8),
    fpn_stride=1,
    head=HeadConfig(share_channels=8, head_channels=8),
)
# One object of every task group so every regression branch receives a box-loss gradient.
BOX_CLASSES = ("car", "truck", "bus", "barrier", "motorcycle", "pedestrian")


def _boxes(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = len(BOX_CLASSES)
    xy = (torch.rand(n, 2, generator=g) - 0.5) * 80
    boxes = torch.cat(
        [
            xy,
            torch.full((n, 1), 0.5),
            torch.tensor([[4.5, 2.0, 1.6]]).expand(n, 3),
            torch.rand(n, 1, generator=g) * 6 - 3,
            torch.randn(n, 2, generator=g),
        ],
        1,
    )
    return boxes, torch.tensor([CLASS_NAMES.index(c) for c in BOX_CLASSES])


def _points(boxes: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Background points over the range plus a cluster on every box; x, y, z, intensity, time lag."""
    g = torch.Generator().manual_seed(seed)
    bg = torch.rand(n, 3, generator=g) * torch.tensor([102.4, 102.4, 8.0]) - torch.tensor([51.2, 51.2, 5.0])
    fg = (boxes[:, None, :3] + torch.randn(len(boxes), 40, 3, generator=g) * 0.8).reshape(-1, 3)
    xyz = torch.cat([bg, fg])
    return torch.cat(
        [xyz, torch.rand(len(xyz), 1, generator=g), torch.rand(len(xyz), 1, generator=g) * 0.45], 1
    )


def _batch(b: int = 2, point_features: int = 5) -> Batch:
    boxes, labels = zip(*[_boxes(i) for i in range(b)], strict=True)
    points = [_points(bx, 1500, i) for i, bx in enumerate(boxes)]
    if point_features == MVP_POINT_FEATURES:
        points = [torch.from_numpy(to_mvp_layout(p.numpy())) for p in points]
    eye = torch.eye(4).expand(b, 4, 4)
    return Batch(
        images=torch.zeros(b, 1, 3, 4, 4),
        intrinsics=torch.eye(3).expand(b, 1, 3, 3),
        cam2lidar=torch.eye(4).expand(b, 1, 4, 4),
        post_rot=torch.eye(3).expand(b, 1, 3, 3),
        post_tran=torch.zeros(b, 1, 3),
        depth=torch.zeros(b, 1, 4, 4),
        points=points,
        gt_boxes=list(boxes),
        gt_labels=list(labels),
        bev_aug=eye,
        lidar2global=eye,
    )


@pytest.mark.parametrize("voxelization", ["dynamic", "hard"])
def test_taps_shapes_and_every_parameter_gets_a_gradient(voxelization):
    torch.manual_seed(0)
    model = build_centerpoint(replace(SMOKE, voxelization=voxelization, max_pillars=800))
    batch = _batch(b=1)  # one object per task: an L1 bias gradient cannot cancel between objects
    taps, preds = model(batch)
    expected = {"B0": (1, 8, 32, 32), "B1": (1, 16, 16, 16), "B2": (1, 32, 8, 8), "H": (1, 24, 32, 32)}
    expected["HS"] = (1, model.head.cfg.share_channels, 32, 32)  # the head's shared map (forward_head)
    assert {k: tuple(v.shape) for k, v in taps.items()} == expected
    assert all(torch.isfinite(v).all() for v in taps.values())
    assert model.head.grid.shape == (32, 32) and model.head.grid.cell == pytest.approx(3.2)
    losses = model.loss(batch, taps, preds)
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing}"


def test_taps_at_tiny_default_resolution():
    cfg = CenterPointConfig()  # T-S32: 0.8 m pillars (128^2), strides (2, 2, 2), head at 64^2
    assert cfg.pillar_grid().height == 128 and cfg.head_grid().shape == (64, 64)
    assert cfg.fpn_scale_factors() == (Fraction(1), Fraction(2), Fraction(4))


def test_pfn_input_scale_from_the_config():
    cfg = CenterPointConfig()  # range [-51.2, 51.2]^2 x [-5, 3], 0.8 m pillars, 5 point columns
    scale = cfg.pfn_input_scale()
    expected = (1 / 51.2, 1 / 51.2, 1 / 5.0, 1 / 255, 2.0) + (1 / 0.8,) * 5
    assert scale == pytest.approx(expected)
    # MVP layout: one-hot, score and flag (columns 4-15) pass unscaled; the time lag is column 16
    mvp = replace(cfg, point_features=MVP_POINT_FEATURES).pfn_input_scale()
    assert mvp[:4] == pytest.approx(expected[:4]) and mvp[4:16] == (1.0,) * 12
    assert mvp[16] == pytest.approx(2.0) and mvp[17:] == pytest.approx(expected[5:])
    assert replace(cfg, normalize_inputs=False).pfn_input_scale() is None
    model = build_centerpoint(cfg)
    assert model.pfn.input_scale.tolist() == pytest.approx(expected)
    assert "pfn.input_scale" not in model.state_dict()  # derived from the config, not saved


def test_full_scale_geometry_and_parameter_count():
    full = CenterPointConfig(
        pillar_size=0.2,
        pfn_channels=64,
        backbone_layers=(3, 5, 5),
        backbone_channels=(64, 128, 256),
        fpn_channels=(128, 128, 128),
        fpn_stride=4,
        head=HeadConfig(),
    )
    assert full.pillar_grid().height == 512 and full.head_grid().shape == (128, 128)
    assert full.head_grid().cell == pytest.approx(0.8)
    assert full.fpn_scale_factors() == (Fraction(1, 2), Fraction(1), Fraction(2))
    model = build_centerpoint(full)

    def count(m: torch.nn.Module) -> float:
        return sum(p.numel() for p in m.parameters()) / 1e6

    # Measured on the reference implementation: SECOND 4.2 M, SECONDFPN 0.18 M, total 6.0 M.
    assert count(model.backbone) == pytest.approx(4.2, abs=0.05)
    assert count(model.neck) == pytest.approx(0.18, abs=0.01)
    assert count(model) == pytest.approx(6.0, abs=0.1)


@pytest.mark.parametrize("voxelization", ["dynamic", "hard"])
def test_temporal_split_stacks_new_and_old_canvases(voxelization):
    """With temporal_split_lag the canvas is [PFN(new points), PFN(old points)] on channels: an old point
    alone in its pillar shows only in the second half, a new one only in the first."""
    cfg = replace(SMOKE, temporal_split_lag=0.25, voxelization=voxelization)
    model = build_centerpoint(cfg).eval()
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 2 * SMOKE.pfn_channels
    with torch.no_grad():  # make every PFN channel fire for any point, so occupancy is visible
        model.pfn.norm.bias.fill_(5.0)
    pts = torch.tensor([[1.0, 1.0, 0.0, 0.5, 0.0], [20.0, -7.0, 0.0, 0.5, 0.5], [1.5, 1.2, 0.3, 0.2, 0.1]])
    canvas = model.canvas([pts, pts[:1]])
    c, grid = SMOKE.pfn_channels, SMOKE.pillar_grid()
    iy, ix, _ = grid.pillar_coords(pts)
    new_cell, old_cell = (int(iy[0]), int(ix[0])), (int(iy[1]), int(ix[1]))
    new_half, old_half = canvas[:, :c], canvas[:, c:]
    assert bool((new_half[0, :, new_cell[0], new_cell[1]] > 0).all())
    assert bool((old_half[0, :, old_cell[0], old_cell[1]] > 0).all())
    assert int((new_half[0].amax(0) > 0).sum()) == 1 and int((old_half[0].amax(0) > 0).sum()) == 1
    assert int((old_half[1] > 0).sum()) == 0  # sample 1 has no old point
    plain = build_centerpoint(replace(SMOKE, voxelization=voxelization)).eval()
    plain.pfn.load_state_dict(model.pfn.state_dict())
    torch.testing.assert_close(new_half[:1], plain.canvas([pts[[0, 2]]]))
    torch.testing.assert_close(old_half[:1], plain.canvas([pts[[1]]]))
    with pytest.raises(ValueError, match="temporal_split_lag"):
        replace(SMOKE, temporal_split_lag=0.25, point_features=4)


def test_temporal_split_reads_the_mvp_time_lag_column():
    """In the 17-column MVP layout the lag is column 16 (column 4 is the car one-hot)."""
    cfg = replace(SMOKE, temporal_split_lag=0.25, point_features=MVP_POINT_FEATURES)
    model = build_centerpoint(cfg).eval()
    with torch.no_grad():
        model.pfn.norm.bias.fill_(5.0)
    old_point = torch.zeros(1, MVP_POINT_FEATURES)
    old_point[0, 16] = 0.5  # previous key frame, not a car
    new_car = torch.zeros(1, MVP_POINT_FEATURES)
    new_car[0, :2] = 20.0
    new_car[0, 4] = 1.0  # car one-hot, time lag 0
    canvas = model.canvas([torch.cat([old_point, new_car])])
    c = SMOKE.pfn_channels
    iy, ix, _ = SMOKE.pillar_grid().pillar_coords(torch.cat([old_point, new_car]))
    assert int((canvas[0, :c].amax(0) > 0).sum()) == 1 and bool(canvas[0, :c, iy[1], ix[1]].gt(0).all())
    assert int((canvas[0, c:].amax(0) > 0).sum()) == 1 and bool(canvas[0, c:, iy[0], ix[0]].gt(0).all())


def test_hard_and_dynamic_agree_when_no_cap_is_hit():
    torch.manual_seed(1)
    dyn = build_centerpoint(SMOKE).eval()
    hard = build_centerpoint(
        replace(SMOKE, voxelization="hard", max_points_per_pillar=200, max_pillars=10_000)
    ).eval()
    hard.load_state_dict(dyn.state_dict())
    batch = _batch()
    with torch.no_grad():
        a, b = dyn.forward_bev(batch), hard.forward_bev(batch)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-5)
    capped = build_centerpoint(replace(SMOKE, voxelization="hard", max_points_per_pillar=1)).eval()
    capped.load_state_dict(dyn.state_dict())
    with torch.no_grad():
        assert not torch.allclose(capped.forward_bev(batch)["H"], a["H"])  # the cap changes the input


def test_wrong_point_columns_are_refused():
    model = build_centerpoint(SMOKE)
    with pytest.raises(ValueError, match="point_features=5"):
        model.forward_bev(_batch(point_features=MVP_POINT_FEATURES))


def test_mvp_model_takes_17_features():
    torch.manual_seed(2)
    model = build_mvp(SMOKE)
    assert model.cfg.point_features == MVP_POINT_FEATURES
    assert model.pfn.linear.in_features == MVP_POINT_FEATURES + 5
    batch = _batch(point_features=MVP_POINT_FEATURES)
    taps, preds = model(batch)
    assert taps["H"].shape == (2, 24, 32, 32) and torch.isfinite(taps["H"]).all()
    dets = model.predict(batch)
    assert len(dets) == 2 and all(np.isfinite(d.boxes.numpy()).all() for d in dets)


def test_config_validation_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match="not divisible"):
        load_config(CenterPointConfig, overrides=["pillar_size=3.2", "backbone_strides=[4,4,4]"])
    with pytest.raises(ConfigError, match="3 entries"):
        load_config(CenterPointConfig, overrides=["backbone_layers=[1,1]"])
    with pytest.raises(ConfigError, match="voxelization"):
        load_config(CenterPointConfig, overrides=["voxelization=sparse"])
    cfg = load_config(CenterPointConfig, overrides=["fpn_stride=4", "head.share_channels=8"])
    assert cfg.fpn_stride == 4 and cfg.head.share_channels == 8
