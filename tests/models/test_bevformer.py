"""BEVFormer: pillar projection and hit mask, SCA averaging, temporal alignment, first frame, every
parameter trains, the tiny preset's taps and head inheritance, overfitting a few smoke samples."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_students import camera_rig, smoke_batch, smoke_config, translation

from distillbev.config import load_config
from distillbev.models import build_model
from distillbev.models.bevformer import EncoderLayer, align_previous
from distillbev.models.bevformer_attention import (
    SpatialCrossAttention,
    pillar_heights,
    pillar_points,
    project_to_cameras,
)
from distillbev.models.lss import CameraGeometry
from distillbev.models.students import build_student
from distillbev.structures import BEVGrid
from distillbev.train.config import RunConfig
from distillbev.train.inherit import inherit_head

ROOT = Path(__file__).resolve().parents[2]
IMAGE = (32, 96)
GRID = BEVGrid(cell=3.2)  # 32 x 32 cells; centres at +-1.6, +-4.8, ..., +-20.8 m
FRONT_LEFT, FRONT, FRONT_RIGHT, BACK_LEFT, BACK, BACK_RIGHT = range(6)  # camera_rig's yaws 55, 0, -55, ...
#: Cell centres at ~20 m and the cameras that see them (horizontal half field of view 32.3 deg around
#: yaws 55, 0, -55, 110, 180, -110; every centre is >= 3 deg inside or outside each border).
SEEN_BY = {
    (20.8, 1.6): {FRONT},  # azimuth 4 deg
    (14.4, 17.6): {FRONT_LEFT},  # 51 deg
    (20.8, 11.2): {FRONT, FRONT_LEFT},  # 28 deg: the overlap of the two
    (-20.8, -1.6): {BACK},  # 184 deg
    (-4.8, -20.8): {BACK_RIGHT},  # -103 deg
}


def bevformer_config(**changes) -> object:
    """The smoke student as a BEVFormer: 16 x 16 queries at 6.4 m upsampled to the 32 x 32 head grid."""
    cfg = smoke_config(
        kind="bevformer",
        bev_z_range=(-5.0, 3.0),
        embed_dims=16,
        attn_heads=2,
        tsa_points=2,
        sca_points=4,
        pillar_points=4,
        encoder_layers=2,
    )
    return replace(cfg, **changes)


def query_index(grid: BEVGrid, x: float, y: float) -> int:
    j, i = int((x - grid.x_min) // grid.cell), int((y - grid.y_min) // grid.cell)
    return i * grid.width + j


def rotation_z(deg: float) -> torch.Tensor:
    m = torch.eye(4)
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    m[:2, :2] = torch.tensor([[c, -s], [s, c]])
    return m


def project(cams: CameraGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised locations (N, Q, D, 2) and hit mask (N, Q) of GRID's pillars in sample 0."""
    loc, mask = project_to_cameras(pillar_points(GRID, pillar_heights((-5.0, 3.0), 4)), cams, IMAGE)
    return loc[0], mask[0].any(-1)


def test_reference_points_project_into_the_cameras_that_see_the_cell():
    loc, hit = project(camera_rig(1, IMAGE))
    for (x, y), cams in SEEN_BY.items():
        q = query_index(GRID, x, y)
        assert set(hit[:, q].nonzero().flatten().tolist()) == cams, (x, y)
    # the front camera's view of (20.8, 1.6): 1.6 m left of its axis at 19.8 m depth, by the pinhole
    # model of a 1600-px image with f = 1266 px scaled to 96 px (r = 0.06)
    q = query_index(GRID, 20.8, 1.6)
    u = (800 - 1266 * 1.6 / 19.8) * 0.06
    torch.testing.assert_close(loc[FRONT, q, :, 0], torch.full((4,), u / 96), atol=1e-5, rtol=0)
    # higher pillar points land higher in the image (smaller v)
    assert (loc[FRONT, q, 1:, 1] < loc[FRONT, q, :-1, 1]).all()
    # the cameras see roughly the ring around the car, not the cells next to it (all heights too
    # steep) and not beyond the range of their pillar heights
    assert not hit[:, query_index(GRID, 1.6, 1.6)].any()


def test_projection_follows_the_image_and_bev_augmentation():
    base = camera_rig(1, IMAGE)
    loc, hit = project(base)
    # image flip: u -> W - u (pixel j covers [j, j + 1)); the same cameras, mirrored columns
    flip = CameraGeometry(
        base.intrinsics,
        base.cam2lidar,
        base.post_rot @ torch.diag(torch.tensor([-1.0, 1.0, 1.0])),
        base.post_tran + torch.tensor([float(IMAGE[1]), 0.0, 0.0]),
    )
    loc_f, hit_f = project(flip)
    assert torch.equal(hit_f, hit)
    visible = hit[:, :, None].expand_as(loc[..., 0])
    torch.testing.assert_close(loc_f[..., 0][visible], (1 - loc[..., 0])[visible])
    # BEV augmentation: the world turned by 90 deg about z (folded into cam2lidar) -> a cell seen at
    # (x, y) before is seen at (-y, x), by the same cameras and at the same pixels
    turned = CameraGeometry(base.intrinsics, rotation_z(90.0) @ base.cam2lidar, base.post_rot, base.post_tran)
    loc_t, hit_t = project(turned)
    for x, y in SEEN_BY:
        q, q_t = query_index(GRID, x, y), query_index(GRID, -y, x)
        assert torch.equal(hit_t[:, q_t], hit[:, q])
        seen = hit[:, q]
        torch.testing.assert_close(loc_t[seen, q_t], loc[seen, q], atol=1e-5, rtol=0)


def test_sca_reads_only_the_hit_cameras_and_averages_over_them():
    torch.manual_seed(0)
    cams = camera_rig(1, IMAGE)
    points = pillar_points(GRID, pillar_heights((-5.0, 3.0), 4))
    reference, mask = project_to_cameras(points, cams, IMAGE)
    hit = mask.any(-1)  # (1, 6, Q)
    c, shapes = 8, [(4, 12)]
    sca = SpatialCrossAttention(c, heads=2, levels=1, points=4, pillar_points=4)
    torch.nn.init.normal_(sca.output_proj.bias)
    query, pos = torch.randn(1, GRID.height * GRID.width, c), torch.randn(GRID.height * GRID.width, c)
    tokens = torch.randn(1, 6, 48, c)
    out = sca(query, pos, tokens, shapes, reference, hit)
    front, both, none = (query_index(GRID, *p) for p in ((20.8, 1.6), (20.8, 11.2), (1.6, 1.6)))
    # other cameras' tokens do not reach a query; its own camera's do
    other = tokens.clone()
    other[:, [FRONT_LEFT, FRONT_RIGHT, BACK_LEFT, BACK, BACK_RIGHT]] += 5.0
    torch.testing.assert_close(sca(query, pos, other, shapes, reference, hit)[0, front], out[0, front])
    own = tokens.clone()
    own[:, FRONT] += 5.0
    assert not torch.allclose(sca(query, pos, own, shapes, reference, hit)[0, front], out[0, front])
    # a query seen by two cameras gets the mean of what each camera alone gives
    alone = []
    for cam in (FRONT, FRONT_LEFT):
        only = torch.zeros_like(hit)
        only[:, cam] = hit[:, cam]
        alone.append(sca(query, pos, tokens, shapes, reference, only)[0, both])
    torch.testing.assert_close(out[0, both], (alone[0] + alone[1]) / 2)
    # a query no camera sees is left as it was (plus the output projection's bias)
    torch.testing.assert_close(out[0, none], query[0, none] + sca.output_proj.bias)


@pytest.mark.parametrize(
    "motion, moved_to",
    [
        (translation(-3.2, 0.0), (17.6, 1.6)),  # ego drove 3.2 m forward: the world moves back a cell
        (rotation_z(90.0), (-1.6, 20.8)),  # ego turned 90 deg right: (x, y) -> (-y, x)
    ],
)
def test_temporal_alignment_moves_a_marked_cell_as_the_ego_motion_says(motion, moved_to):
    cfg = bevformer_config(temporal=True, query_stride=1, bev_cell=3.2)  # the query grid is GRID
    model = build_student(cfg)
    batch = smoke_batch(cfg, b=1)
    batch.prev_cam2lidar = motion @ batch.cam2lidar  # previous camera -> current LiDAR frame
    mark = torch.zeros(1, cfg.embed_dims, *GRID.shape)
    i, j = divmod(query_index(GRID, 20.8, 1.6), GRID.width)
    mark[0, :, i, j] = 1.0
    model.encode = lambda images, cams, *rest: (mark, None)  # the previous frame's BEV, in its own frame
    prev = model.previous_bev(batch, CameraGeometry.from_batch(batch))  # (1, Q, C)
    assert prev.shape == (1, GRID.height * GRID.width, cfg.embed_dims)
    q = query_index(GRID, *moved_to)
    torch.testing.assert_close(prev[0, q], torch.ones(cfg.embed_dims), atol=1e-5, rtol=0)
    assert prev.sum() == pytest.approx(cfg.embed_dims, abs=1e-4)  # moved, not smeared
    # align_previous is the same warp on its own
    aligned = align_previous(mark, batch.cam2lidar, batch.prev_cam2lidar, GRID)
    torch.testing.assert_close(aligned.flatten(2).transpose(1, 2), prev)


def test_first_frame_uses_the_current_queries_twice():
    torch.manual_seed(0)
    cfg = bevformer_config()
    layer = EncoderLayer(cfg, levels=1).eval()
    q_len, c = 16 * 16, cfg.embed_dims
    args = dict(
        pos=torch.randn(q_len, c),
        reference_2d=torch.rand(q_len, 2),
        shape=(16, 16),
        tokens=torch.randn(2, 6, 48, c),
        token_shapes=[(4, 12)],
        reference_cam=torch.rand(2, 6, q_len, 4, 2),
        hit=torch.rand(2, 6, q_len) > 0.5,
    )
    torch.nn.init.normal_(layer.tsa.sampling_offsets.weight, std=0.1)  # let the offsets read the inputs
    query, prev = torch.randn(2, q_len, c), torch.randn(2, q_len, c)
    alone = layer(query, prev_bev=None, has_prev=None, **args)
    mixed = layer(query, prev_bev=prev, has_prev=torch.tensor([False, True]), **args)
    torch.testing.assert_close(mixed[0], alone[0])  # sample 0: scene start
    assert not torch.allclose(mixed[1], alone[1])  # sample 1 reads its previous BEV


def test_a_scene_start_ignores_the_previous_images():
    torch.manual_seed(0)
    cfg = bevformer_config(temporal=True)
    model = build_student(cfg).eval()
    batch = smoke_batch(cfg, b=2)
    batch.has_prev = torch.tensor([False, True])
    with torch.no_grad():
        h1 = model.forward_bev(batch)["H"]
        batch.prev_images = batch.prev_images + 1.0
        h2 = model.forward_bev(batch)["H"]
    torch.testing.assert_close(h2[0], h1[0])
    assert not torch.allclose(h2[1], h1[1])
    batch.prev_images = None
    with pytest.raises(ValueError, match="prev_images"):
        model.forward_bev(batch)


@pytest.mark.parametrize("temporal", [False, True])
def test_builds_runs_and_trains_every_parameter(temporal):
    torch.manual_seed(0)
    cfg = bevformer_config(temporal=temporal)
    model = build_student(cfg)
    batch = smoke_batch(cfg, temporal=temporal)
    if temporal:
        batch.prev_images.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(2):  # the positions act through zero-initialised offsets: a gradient from step 2
        opt.zero_grad()
        taps, preds = model(batch)
        losses = model.loss(batch, taps, preds)
        sum(losses.values()).backward()
        opt.step()
    assert {k: tuple(v.shape) for k, v in taps.items()} == {
        "B0": (2, 8, 32, 32),
        "B1": (2, 16, 16, 16),
        "B2": (2, 32, 8, 8),
        "H": (2, 16, 32, 32),
        "HS": (2, cfg.head.share_channels, 32, 32),  # the head's shared map, added by forward_head
    }
    assert set(losses) == {"heatmap", "box"} and all(torch.isfinite(v) for v in losses.values())
    zero = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not zero, f"parameters without a gradient: {zero}"
    if temporal:
        assert batch.prev_images.grad is None  # the previous frame is encoded without gradient


def test_tiny_preset_loads_the_shipped_encoder_matches_the_teacher_taps_and_inherits_its_head():
    torch.manual_seed(0)
    cfg = load_config(RunConfig, [ROOT / "configs/student/bevformer.yaml"])
    if not Path(ROOT / cfg.student.image_pretrained).is_file():
        pytest.skip("checkpoints/image_encoder_small.pt is not here")
    student = build_model(cfg).eval()
    teacher = build_model(load_config(RunConfig, [ROOT / "configs/teacher/centerpoint_pillar.yaml"])).eval()
    batch = smoke_batch(cfg.student, b=1)
    scale, shift = torch.tensor([80.0, 80.0, 4.0, 1.0, 0.5]), torch.tensor([40.0, 40.0, 3.0, 0.0, 0.0])
    batch.points = [torch.rand(2000, 5) * scale - shift]  # x, y in [-40, 40), z in [-3, 1), lag < 0.5 s
    with torch.no_grad():
        s_taps, t_taps = student.forward_bev(batch), teacher.forward_bev(batch)
    for name in ("B0", "B1", "B2", "H"):  # cell for cell: the adapters are 1x1 convs
        assert s_taps[name].shape[-2:] == t_taps[name].shape[-2:], name
    assert s_taps["H"].shape[-2:] == (64, 64)
    inherit_head(student, teacher)
    theirs = teacher.head.task_heads.state_dict()
    for name, mine in student.head.task_heads.state_dict().items():
        assert torch.equal(mine, theirs[name]), name


def test_overfits_a_few_smoke_samples(smoke_world):
    from distillbev.train.data import make_loader

    torch.manual_seed(0)
    overrides = [
        f"data.dataroot={smoke_world.dataroot}",
        "data.max_val_samples=2",
        "optim.batch_size=2",
        "student.image_pretrained=",
        "student.image_size=[32, 96]",
        "data.reader.image.final_size=[32, 96]",
        "student.tiny_stem_width=8",
        "student.tiny_widths=[8, 8, 16, 16]",
        "student.neck_channels=16",
        "student.bev_cell=3.2",
        "student.embed_dims=16",
        "student.bev_channels=[8, 16, 32]",
        "student.fpn_channels=16",
        "student.fpn_mid_channels=16",
        "student.head.share_channels=16",
        "student.head.head_channels=16",
    ]
    cfg = load_config(RunConfig, [ROOT / "configs/student/bevformer.yaml"], overrides)
    batch = next(iter(make_loader(cfg, train=False)))  # two samples, with their previous key frames
    assert batch.prev_images is not None
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    history = []
    for _ in range(40):
        taps, preds = model(batch)
        loss = sum(model.loss(batch, taps, preds).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert all(math.isfinite(v) for v in history)
    first, prior_learnt, last = (sum(history[a : a + 5]) / 5 for a in (0, 10, 35))
    assert last < 0.25 * first, history
    assert last < 0.8 * prior_learnt, history  # still falling once the heatmap prior is learnt


def test_config_validation():
    with pytest.raises(ValueError, match="query_stride"):
        bevformer_config(query_stride=3)
    with pytest.raises(ValueError, match="sca_points"):
        bevformer_config(sca_points=6, pillar_points=4)
    with pytest.raises(ValueError, match="embed_dims"):
        bevformer_config(embed_dims=12, attn_heads=4)
    with pytest.raises(ValueError, match="attn_dropout"):
        bevformer_config(attn_dropout=1.0)
