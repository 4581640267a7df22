"""CenterHead: radius formula, Gaussian targets, losses, decoding round trip, NMS modes, overfitting."""

import dataclasses
import math

import pytest
import torch

from distillbev.layers.conv import ConvBNReLU
from distillbev.models.heads import (
    CenterHead,
    HeadConfig,
    HeadTargets,
    draw_gaussian,
    gaussian_focal_loss,
    gaussian_radius,
)
from distillbev.structures import CLASS_NAMES, TASK_GROUPS, BEVGrid, class_index, wrap_angle

GRID = BEVGrid()  # 128 x 128 cells of 0.8 m
SMALL = HeadConfig(share_channels=8, head_channels=8)


def _head(cfg: HeadConfig = SMALL, grid: BEVGrid = GRID, in_channels: int = 4) -> CenterHead:
    torch.manual_seed(0)
    return CenterHead(in_channels, grid, cfg)


def _box(x, y, z=0.5, l=4.5, w=1.9, h=1.6, yaw=0.3, vx=1.0, vy=-2.0) -> list[float]:
    return [x, y, z, l, w, h, yaw, vx, vy]


# ------------------------------------------------------------------------------------------ radius formula
def test_gaussian_radius_hand_computed():
    L = W = 10.0
    o = 0.1
    r1 = (20 + math.sqrt(20**2 - 4 * (100 * 0.9 / 1.1))) / 2  # b1 = L+W, c1 = LW(1-o)/(1+o)
    r2 = (40 + math.sqrt(40**2 - 16 * (0.9 * 100))) / 2  # b2 = 2(L+W), c2 = (1-o)LW
    r3 = (-4 + math.sqrt(4**2 - 16 * 0.1 * (-0.9 * 100))) / 2  # b3 = -2o(L+W), c3 = (o-1)LW
    assert r3 < r1 and r3 < r2
    assert gaussian_radius(L, W, o) == pytest.approx(min(r1, r2, r3), rel=1e-12)
    assert gaussian_radius(L, W, o) == pytest.approx(4.3245553, abs=1e-6)
    # Tensor form matches, and the formula is symmetric in length and width.
    t = gaussian_radius(
        torch.tensor([10.0, 3.0], dtype=torch.float64), torch.tensor([10.0, 7.0], dtype=torch.float64)
    )
    assert t[0].item() == pytest.approx(min(r1, r2, r3), rel=1e-12)
    assert t[1].item() == pytest.approx(gaussian_radius(7.0, 3.0), rel=1e-12)


def _support(heatmap: torch.Tensor) -> tuple[int, int]:
    """Extent (rows, cols) of the non-zero part of a 2D map."""
    ys, xs = heatmap.nonzero(as_tuple=True)
    return int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)


def test_radius_floor_and_min_radius_in_targets():
    head = _head()
    # Car 4.5 x 1.9 m at 0.8 m cells: radius 1.57 -> floor 1 -> raised to min_radius 2 -> 5x5 window.
    # An 8 x 8 m box (10 x 10 cells): radius 4.32 -> 4 -> 9x9 window.
    boxes = torch.tensor([_box(0.4, 0.4), _box(40.4, 40.4, l=8.0, w=8.0)])
    t = head.build_targets([boxes], [torch.tensor([0, 0])])
    heat = t.heatmaps[0][0, 0]
    assert _support(heat[:80, :80]) == (5, 5)
    assert _support(heat[80:, 80:]) == (9, 9)


# ------------------------------------------------------------------------------------------ targets
def test_heatmap_peak_gaussian_values_index_and_regression_target():
    head = _head()
    x, y = (
        3.3,
        -7.9,
    )  # cell x = floor((3.3 + 51.2) / 0.8) = 68 (68.125), cell y = floor(43.3 / 0.8) = 54 (54.125)
    box = _box(x, y, z=-0.7, l=0.8, w=0.6, h=1.7, yaw=-2.5, vx=0.4, vy=0.1)
    t = head.build_targets([torch.tensor([box])], [torch.tensor([class_index("pedestrian")])])
    heat = t.heatmaps[5][0]  # task 5 = pedestrian, traffic_cone
    assert heat[0, 54, 68].item() == 1.0
    assert heat[1].abs().sum() == 0  # traffic_cone channel untouched
    assert all(h.abs().sum() == 0 for i, h in enumerate(t.heatmaps) if i != 5)
    sigma = 5 / 6  # r = 2 -> diameter 5
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            want = math.exp(-(dx * dx + dy * dy) / (2 * sigma**2)) if max(abs(dx), abs(dy)) <= 2 else 0.0
            assert heat[0, 54 + dy, 68 + dx].item() == pytest.approx(want, rel=1e-6, abs=1e-12)
    assert int((heat > 0).sum()) == 25
    assert t.indices[5][0, 0].item() == 54 * 128 + 68
    assert t.masks[5][0].tolist() == [True] + [False] * 499
    want = [
        0.125,
        0.125,
        -0.7,
        math.log(0.8),
        math.log(0.6),
        math.log(1.7),
        math.sin(-2.5),
        math.cos(-2.5),
        0.4,
        0.1,
    ]
    assert t.box_targets[5][0, 0].tolist() == pytest.approx(want, abs=1e-5)


def test_overlapping_gaussians_take_the_max_and_slots_follow_input_order():
    head = _head()
    boxes = torch.tensor([_box(0.4, 0.4), _box(100.0, 0.0), _box(1.2, 0.4), _box(-20.0, 5.0)])
    labels = torch.tensor([0, 0, 0, 1])  # the off-grid car keeps slot 1 without a target
    t = head.build_targets([boxes, torch.zeros(0, 9)], [labels, torch.zeros(0, dtype=torch.long)])
    heat = t.heatmaps[0][0, 0]
    assert heat[64, 64].item() == 1.0 and heat[64, 65].item() == 1.0  # neighbours: max, not sum (not 1.49)
    assert heat.max().item() == 1.0
    assert t.masks[0][0, :4].tolist() == [True, False, True, False]
    assert t.indices[0][0, 2].item() == 64 * 128 + 65
    assert t.masks[1][0, 0].item() and t.masks[1][0, 1:].sum() == 0  # the truck is slot 0 of task 1
    assert t.masks[0][1].sum() == 0 and t.heatmaps[0][1].sum() == 0  # the empty sample
    assert CenterHead.gt_score_map(t).shape == (2, 1, 128, 128)
    assert torch.equal(CenterHead.gt_score_map(t)[0, 0], torch.maximum(heat, t.heatmaps[1][0].amax(0)))


def test_draw_gaussian_clips_at_the_grid_border():
    heat = torch.zeros(1, 4, 4)
    draw_gaussian(heat, torch.tensor([0]), torch.tensor([[0, 3]]), torch.tensor([2]))
    assert heat[0, 3, 0].item() == 1.0
    assert heat[0, 1, 2].item() == pytest.approx(math.exp(-8 / (2 * (5 / 6) ** 2)), rel=1e-6)
    assert int((heat > 0).sum()) == 9  # 3 x 3 corner of the 5 x 5 window


def test_bad_ground_truth_is_rejected():
    head = _head()
    with pytest.raises(ValueError, match="gt_boxes must be"):
        head.build_targets([torch.zeros(2, 7)], [torch.zeros(2, dtype=torch.long)])
    with pytest.raises(ValueError, match="NaN"):
        head.build_targets([torch.full((1, 9), float("nan"))], [torch.zeros(1, dtype=torch.long)])
    with pytest.raises(ValueError, match="gt_labels"):
        head.build_targets([torch.ones(1, 9)], [torch.tensor([10])])
    with pytest.raises(ValueError, match="grid"):
        head(torch.zeros(1, 4, 64, 64))


# ------------------------------------------------------------------------------------------ layers
def test_layers_and_init():
    head = _head()
    assert isinstance(head.shared_conv, ConvBNReLU) and head.shared_conv.conv.bias is None
    for t, names in enumerate(TASK_GROUPS):
        branches = head.task_heads[t].branches
        assert branches["heatmap"][-1].out_channels == len(names)
        assert torch.allclose(branches["heatmap"][-1].bias, torch.tensor(-2.19))
        assert [branches[k][-1].out_channels for k in ("reg", "height", "dim", "rot", "vel")] == [
            2,
            1,
            3,
            2,
            2,
        ]
    out = ConvBNReLU(3, 5, k=3, stride=2)(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 5, 4, 4) and out.min() >= 0


# ------------------------------------------------------------------------------------------ losses
def test_gaussian_focal_loss_hand_computed():
    pred = torch.tensor([[0.9, 0.2], [0.5, 0.1]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.5], [0.0, 0.8]], dtype=torch.float64)
    want = (
        -math.log(0.9) * 0.1**2  # positive cell
        - math.log(0.8) * 0.2**2 * 0.5**4
        - math.log(0.5) * 0.5**2 * 1.0**4
        - math.log(0.9) * 0.1**2 * 0.2**4
    )
    assert gaussian_focal_loss(pred, target).item() == pytest.approx(want, rel=1e-9)


def test_head_loss_normalisers_on_a_hand_computed_case():
    grid = BEVGrid(-6.4, 6.4, -6.4, 6.4, 0.8)  # 16 x 16
    head = _head(grid=grid)
    preds = [{k: torch.zeros_like(v) for k, v in p.items()} for p in head(torch.randn(2, 4, 16, 16))]
    box = _box(0.4, 0.4, z=0.5, l=4.5, w=1.9, h=1.6, yaw=0.3, vx=1.0, vy=-2.0)  # a car at cell (8, 8)
    gt_boxes, gt_labels = (
        [torch.tensor([box]), torch.zeros(0, 9)],
        [torch.tensor([0]), torch.zeros(0, dtype=torch.long)],
    )
    loss = head.loss(preds, gt_boxes, gt_labels)
    # Heatmap with p = 0.5 everywhere: each cell costs 0.25 ln 2 x (1 at the peak, else (1 - Y)^4).
    sigma2 = (5 / 6) ** 2
    neg = sum(
        (1 - math.exp(-(dx * dx + dy * dy) / (2 * sigma2))) ** 4
        for dx in range(-2, 3)
        for dy in range(-2, 3)
        if (dx, dy) != (0, 0)
    )
    task0 = 0.25 * math.log(2) * (1 + neg + (2 * 16 * 16 - 25))
    others = 0.25 * math.log(2) * 2 * 16 * 16 * sum(len(t) for t in TASK_GROUPS[1:])  # no peaks: divided by 1
    assert loss["heatmap"].item() == pytest.approx(task0 + others, rel=1e-5)
    # Box: zero predictions -> sum |target| x code weight over one object, / (1 + 1e-4), x 0.25.
    code = [
        0.5,
        0.5,
        0.5,
        math.log(4.5),
        math.log(1.9),
        math.log(1.6),
        math.sin(0.3),
        math.cos(0.3),
        1.0,
        -2.0,
    ]
    weights = [1] * 8 + [0.2, 0.2]
    want_box = 0.25 * sum(abs(c) * w for c, w in zip(code, weights, strict=True)) / (1 + 1e-4)
    assert loss["box"].item() == pytest.approx(want_box, rel=1e-5)


# ------------------------------------------------------------------------------------------ decoding
def _scene() -> tuple[torch.Tensor, torch.Tensor]:
    """One box of every class (plus a second car), spread >= 8 m apart, random sizes, yaws, velocities."""
    g = torch.Generator().manual_seed(7)
    labels = list(range(len(CLASS_NAMES))) + [0]
    centres: list[tuple[float, float]] = []
    while len(centres) < len(labels):
        c = ((torch.rand(2, generator=g) - 0.5) * 96).tolist()
        if all(math.dist(c, o) > 8 for o in centres):
            centres.append(tuple(c))
    rows = []
    for x, y in centres:
        z, l, w, h, yaw, vx, vy = (
            torch.rand(7, generator=g) * torch.tensor([2, 4, 2, 2, 6.28, 8, 8])
        ).tolist()
        rows.append([x, y, z - 1, l + 0.3, w + 0.3, h + 0.3, yaw - 3.14, vx - 4, vy - 4])
    return torch.tensor(rows), torch.tensor(labels)


def _perfect_preds(head: CenterHead, targets: HeadTargets) -> list[dict[str, torch.Tensor]]:
    """Prediction maps that decode to the targets: logit 10 at peaks, -10 elsewhere, codes at peak cells."""
    preds = []
    h, w = head.grid.shape
    for t in range(len(head.tasks)):
        heat = targets.heatmaps[t]
        n_b = heat.shape[0]
        code = torch.zeros(n_b, h * w, 10)
        for b in range(n_b):
            m = targets.masks[t][b]
            code[b, targets.indices[t][b][m]] = targets.box_targets[t][b][m]
        code = code.transpose(1, 2).reshape(n_b, 10, h, w)
        preds.append(
            {
                "heatmap": torch.where(heat == 1, 10.0, -10.0),
                "reg": code[:, 0:2],
                "height": code[:, 2:3],
                "dim": code[:, 3:6],
                "rot": code[:, 6:8],
                "vel": code[:, 8:10],
            }
        )
    return preds


@pytest.mark.parametrize("nms", ["circle", "rotate", "scale", "none"])
def test_encode_decode_round_trip(nms):
    head = _head(dataclasses.replace(SMALL, nms=nms))
    boxes, labels = _scene()
    targets = head.build_targets([boxes, boxes[:3]], [labels, labels[:3]])
    dets = head.decode(_perfect_preds(head, targets))
    for det, (gt, gl) in zip(dets, [(boxes, labels), (boxes[:3], labels[:3])], strict=True):
        assert len(det.boxes) == len(gt)
        match = torch.cdist(det.boxes[:, :2], gt[:, :2]).argmin(1)
        assert sorted(match.tolist()) == list(range(len(gt)))
        got, ref = det.boxes, gt[match]
        torch.testing.assert_close(
            got[:, [0, 1, 2, 3, 4, 5, 7, 8]], ref[:, [0, 1, 2, 3, 4, 5, 7, 8]], atol=1e-4, rtol=0
        )
        assert torch.from_numpy(wrap_angle((got[:, 6] - ref[:, 6]).numpy())).abs().max() < 1e-4
        assert torch.equal(det.labels, gl[match])
        assert torch.all(det.scores > 0.99)


def test_velocity_scale_round_trip_and_loss():
    """The branch predicts v / velocity_scale: maps holding the scaled targets decode to the GT velocity
    in m/s and give zero box loss; the unscaled targets then cost exactly the scaled L1 of the velocity."""
    head = _head(dataclasses.replace(SMALL, velocity_scale=4.0))
    boxes, labels = _scene()
    targets = head.build_targets([boxes], [labels])
    preds = _perfect_preds(head, targets)
    for p in preds:
        p["vel"] = p["vel"] / 4.0
    det = head.decode(preds)[0]
    match = torch.cdist(det.boxes[:, :2], boxes[:, :2]).argmin(1)
    torch.testing.assert_close(det.boxes[:, 7:9], boxes[match, 7:9], atol=1e-4, rtol=0)
    assert float(head.loss_from_targets(preds, targets)["box"]) < 1e-5
    unscaled = head.loss_from_targets(_perfect_preds(head, targets), targets)["box"]
    weights = torch.tensor(SMALL.code_weights[8:10])
    expected = 0.0
    for t in range(len(head.tasks)):  # per task: weighted L1 / (#objects + 1e-4)
        m = targets.masks[t]
        vel = targets.box_targets[t][m][:, 8:10]
        expected += SMALL.box_loss_weight * ((vel - vel / 4.0).abs() * weights).sum() / (m.sum() + 1e-4)
    assert float(unscaled) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="velocity_scale"):
        _head(dataclasses.replace(SMALL, velocity_scale=0.0))


def test_heading_from_motion_turns_only_moving_reversed_boxes():
    boxes, labels = _scene()
    speed = torch.linspace(0.0, 3.0, len(boxes))  # the first boxes are slower than the 0.5 m/s threshold
    boxes[:, 7] = speed * torch.cos(boxes[:, 6])  # every box moves forwards
    boxes[:, 8] = speed * torch.sin(boxes[:, 6])
    head = _head(dataclasses.replace(SMALL, heading_from_motion=0.5))
    targets = head.build_targets([boxes], [labels])
    preds = _perfect_preds(head, targets)
    for p in preds:
        p["rot"] = -p["rot"]  # every predicted heading reversed
    det = head.decode(preds)[0]
    match = torch.cdist(det.boxes[:, :2], boxes[:, :2]).argmin(1)
    err = torch.from_numpy(wrap_angle((det.boxes[:, 6] - boxes[match, 6]).numpy())).abs()
    moving = speed[match] > 0.5
    assert bool(moving.any()) and bool((~moving).any())
    assert float(err[moving].max()) < 1e-4  # turned back to the truth
    assert float((err[~moving] - math.pi).abs().max()) < 1e-4  # slow boxes keep the reversed heading
    plain = _head().decode(preds)[0]  # off by default: every heading stays reversed
    plain_err = torch.from_numpy(wrap_angle((plain.boxes[:, 6] - det.boxes[:, 6]).numpy())).abs()
    assert float((plain_err[moving] - math.pi).abs().max()) < 1e-4


@pytest.mark.parametrize("nms,expected", [("circle", 1), ("none", 2)])
def test_decode_nms_removes_a_duplicate(nms, expected):
    head = _head(dataclasses.replace(SMALL, nms=nms))
    boxes, labels = torch.tensor([_box(0.4, 0.4)]), torch.tensor([0])
    preds = _perfect_preds(head, head.build_targets([boxes], [labels]))
    # A second car peak in the neighbouring cell regressing to 0.5 m beside it (within circle radius 2 m).
    preds[0]["heatmap"][0, 0, 64, 65] = 8.0
    preds[0]["reg"][0, :, 64, 65] = torch.tensor([0.125, 0.5])
    preds[0]["dim"][0, :, 64, 65] = preds[0]["dim"][0, :, 64, 64]
    det = head.decode(preds)[0]
    assert len(det.boxes) == expected
    assert det.boxes[0, 0].item() == pytest.approx(0.4, abs=1e-5)  # the best-scoring box comes first


def test_decode_threshold_and_centre_range():
    head = _head(dataclasses.replace(SMALL, score_threshold=0.5, post_center_range=50.0))
    boxes, labels = torch.tensor([_box(0.4, 0.4), _box(40.4, 0.4)]), torch.tensor([0, 0])
    preds = _perfect_preds(head, head.build_targets([boxes], [labels]))
    preds[0]["heatmap"][0, 0, 64, 64] = 0.0  # score 0.5: not > 0.5
    preds[0]["reg"][0, 0, 64, 114] += 20.0  # decoded x = 56.4 m: outside the 50 m centre range
    assert len(head.decode(preds)[0].boxes) == 0


def test_score_map():
    head = _head(grid=BEVGrid(-3.2, 3.2, -3.2, 3.2, 0.8))
    preds = head(torch.randn(2, 4, 8, 8))
    preds[5]["heatmap"][1, 1, 2, 3] = 30.0
    preds[0]["heatmap"][0, 0, 4, 4] = -30.0
    for p in preds:
        p["heatmap"][0, :, 4, 4] = -30.0
    s = head.score_map(preds)
    assert s.shape == (2, 1, 8, 8)
    assert s[1, 0, 2, 3].item() == pytest.approx(1 - 1e-4)
    assert s[0, 0, 4, 4].item() == pytest.approx(1e-4)
    every = torch.cat([torch.sigmoid(p["heatmap"]) for p in preds], 1)
    torch.testing.assert_close(s[0, 0, 0], every[0, :, 0].amax(0))


# ------------------------------------------------------------------------------------------ overfit
@pytest.fixture
def one_thread():
    """Small-op training is many times slower with 2 threads on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_overfit_three_boxes(one_thread):
    torch.manual_seed(0)
    grid = BEVGrid(-12.8, 12.8, -12.8, 12.8, 1.6)  # 16 x 16
    head = CenterHead(8, grid, HeadConfig(share_channels=8, head_channels=8))
    features = torch.randn(1, 8, 16, 16)
    boxes = torch.tensor(
        [
            _box(-5.3, 4.1, yaw=0.7),
            _box(6.2, -3.3, l=10.0, w=2.5, h=3.2, yaw=-1.2, vx=3.0, vy=0.0),
            _box(2.5, 8.9, l=0.7, w=0.6, h=1.8, yaw=2.0, vx=0.5, vy=0.5),
        ]
    )
    labels = torch.tensor([0, 1, 8])
    steps = 150
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)  # decay: L1 needs it to settle
    for _ in range(steps):
        loss = head.loss(head(features), [boxes], [labels])
        opt.zero_grad()
        (loss["heatmap"] + loss["box"]).backward()
        opt.step()
        schedule.step()
    head.eval()
    det = head.decode(head(features))[0]
    top = det.scores.topk(3).indices
    got, gl = det.boxes[top], det.labels[top]
    match = torch.cdist(got[:, :2], boxes[:, :2]).argmin(1)
    assert sorted(match.tolist()) == [0, 1, 2]
    assert torch.equal(gl, labels[match])
    assert (got[:, :2] - boxes[match, :2]).norm(dim=1).max() < 0.3
