"""DistillLoss against a slow per-cell reference, its invariants, gradients, warm-up and the presets."""

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distillbev.config import ConfigError, load_config
from distillbev.distill.config import DistillConfig
from distillbev.distill.loss import DistillLoss
from distillbev.distill.regions import GAUSSIAN_SIGMA
from distillbev.structures import BEVGrid

GRID = BEVGrid(-6.4, 6.4, -6.4, 6.4, 0.8)  # 16 x 16
PRESETS = Path(__file__).resolve().parents[2] / "configs" / "distill"
ALL_OFF = DistillConfig(
    layers=("H",),
    use_region_split=False,
    use_attention=False,
    use_scaling=False,
    use_false_positive_region=False,
)


def box(x, y, l, w, yaw=0.0):
    return [x, y, 0.5, l, w, 1.5, yaw, 0.0, 0.0]


def make_loss(cfg, channels=8, teacher_channels=6):
    """H: same 16 x 16 grid; B1: student 4 x 4 upsampled x4; B2: student 2 x 2 -> teacher 8 x 8."""
    layers = cfg.layers
    return DistillLoss(
        cfg,
        student_channels={n: channels for n in layers},
        teacher_channels={n: teacher_channels for n in layers},
        student_sizes={n: {"H": (16, 16), "B1": (4, 4), "B2": (2, 2), "B0": (8, 8)}[n] for n in layers},
        teacher_sizes={n: {"H": (16, 16), "B1": (16, 16), "B2": (8, 8), "B0": (16, 16)}[n] for n in layers},
        grids={n: GRID.scaled(2) if n == "B2" else GRID for n in layers},
    )


def inputs(seed=0, b=2):
    """Tiny taps, boxes (no cell point lies on a box edge, in either cell-point mode) and score maps."""
    g = torch.Generator().manual_seed(seed)
    student = {
        "H": torch.randn(b, 8, 16, 16, generator=g),
        "B1": torch.randn(b, 8, 4, 4, generator=g),
        "B2": torch.randn(b, 8, 2, 2, generator=g),
        "B0": torch.randn(b, 8, 8, 8, generator=g),
    }
    teacher = {
        "H": torch.randn(b, 6, 16, 16, generator=g).relu(),
        "B1": torch.randn(b, 6, 16, 16, generator=g).relu(),
        "B2": torch.randn(b, 6, 8, 8, generator=g).relu(),
        "B0": torch.randn(b, 6, 16, 16, generator=g).relu(),
    }
    boxes = [
        torch.tensor([box(-0.35, 0.85, 4.0, 1.6), box(3.3, -2.9, 2.2, 1.1, 0.7), box(-4.4, -4.4, 0.4, 0.4)]),
        torch.tensor([box(0.13, 0.21, 5.0, 2.0, math.pi / 4)]),
    ]
    t_score = torch.rand(b, 1, 16, 16, generator=g) * 0.3
    gt_score = torch.rand(b, 1, 16, 16, generator=g) * 0.2
    return student, teacher, boxes[:b], t_score, gt_score


def reference_terms(cfg, g, t, boxes, t_score, gt_score, grid, conv=None):
    """Slow per-cell float64 reference of docs/method.md (regions to the loss) for one layer; ``conv`` is the
    layer's 3x3 attention conv (zero padding), applied here tap by tap."""
    g, t = g.detach().double().numpy(), t.detach().double().numpy()
    n_b, n_c, n_h, n_w = t.shape
    kernel = conv.weight.detach().double().numpy()[0, 0] if conv is not None else np.zeros((3, 3))
    bias = conv.bias.detach().double().item() if conv is not None else 0.0
    tau, r = cfg.attention_temperature, cfg.attention_student_ratio
    off = 0.5 if cfg.cell_point == "center" else 0.0
    terms = {"fg": 0.0, "bg": 0.0, "fp": 0.0, "plain": 0.0, "att": 0.0}
    for b in range(n_b):
        s_mean = np.pad(g[b].mean(0), 1)  # (H + 2, W + 2), zero padding

        def spatial(f):
            a = np.abs(f).mean(0) / tau
            e = np.exp(a - a.max())
            return n_h * n_w * e / e.sum()

        p = (spatial(t[b]) + r * spatial(g[b])) / (1 + r) if cfg.use_attention else np.ones((n_h, n_w))
        qa = np.abs(t[b]).mean((1, 2)) / tau
        q = n_c * np.exp(qa - qa.max()) / np.exp(qa - qa.max()).sum()
        region = np.zeros((n_h, n_w), dtype=object)
        fg_val = np.zeros((n_h, n_w))
        s_fg = np.zeros((n_h, n_w))
        for i in range(n_h):
            for j in range(n_w):
                x, y = grid.x_min + (j + off) * grid.cell, grid.y_min + (i + off) * grid.cell
                region[i, j] = "bg"
                for bx in boxes[b].double().numpy():
                    c, s = math.cos(bx[6]), math.sin(bx[6])
                    u = ((x - bx[0]) * c + (y - bx[1]) * s) / (bx[3] / 2)
                    v = (-(x - bx[0]) * s + (y - bx[1]) * c) / (bx[4] / 2)
                    if abs(u) <= 1 and abs(v) <= 1:
                        region[i, j] = "fg"
                        hard = cfg.foreground_mode == "hard"
                        fg_val[i, j] = 1.0 if hard else math.exp(-(u * u + v * v) / (2 * GAUSSIAN_SIGMA**2))
                        s_fg[i, j] = 1 / math.sqrt(bx[3] * bx[4] / grid.cell**2)
                        break
                if (
                    region[i, j] == "bg"
                    and cfg.use_false_positive_region
                    and t_score[b, 0, i, j] > cfg.fp_threshold
                    and gt_score[b, 0, i, j] < cfg.gt_threshold
                ):
                    region[i, j] = "fp"
        n_bg, n_fp = int((region == "bg").sum()), int((region == "fp").sum())
        for i in range(n_h):
            for j in range(n_w):
                sq = (g[b, :, i, j] - t[b, :, i, j]) ** 2
                e = (sq * q).sum() if cfg.use_channel_attention else sq.sum()
                if not cfg.use_region_split:
                    terms["plain"] += cfg.plain_weight * e * p[i, j] / (n_b * n_c * n_h * n_w)
                elif region[i, j] == "fg":
                    terms["fg"] += (
                        cfg.w_fg * e * fg_val[i, j] * (s_fg[i, j] if cfg.use_scaling else 1) * p[i, j] / n_b
                    )
                elif region[i, j] == "bg":
                    terms["bg"] += cfg.w_bg * e * (1 / n_bg if cfg.use_scaling else 1) * p[i, j] / n_b
                else:
                    e_fp = (
                        (sq * q).sum() if cfg.fp_channel_attention or cfg.use_channel_attention else sq.sum()
                    )
                    terms["fp"] += cfg.w_fp * e_fp * (1 / n_fp if cfg.use_scaling else 1) * p[i, j] / n_b
                conv_g = (kernel * s_mean[i : i + 3, j : j + 3]).sum() + bias
                terms["att"] += cfg.w_att * abs(t[b, :, i, j].mean() - conv_g) / n_b
    return terms


REFERENCE_CASES = [
    DistillConfig(layers=("H",)),  # the released recipe on the pre-head layer
    DistillConfig(
        layers=("H",),
        use_channel_attention=True,
        attention_student_ratio=0.0,
        foreground_mode="gaussian",
        cell_point="center",
        align_corners=False,
        attention_conv_init="identity",
        w_fg=0.1,
        w_bg=0.2,
        w_fp=0.3,
        w_att=0.05,
    ),
    DistillConfig(layers=("H",), use_scaling=False, use_attention=False, fp_channel_attention=False),
    DistillConfig(
        layers=("H",),
        use_region_split=False,
        use_scaling=False,
        use_false_positive_region=False,
        plain_weight=0.7,
    ),
]


@pytest.mark.parametrize("cfg", REFERENCE_CASES, ids=["released", "variants", "no-scale-no-att", "plain-att"])
def test_matches_slow_per_cell_reference(cfg):
    torch.manual_seed(0)
    loss = make_loss(cfg)
    student, teacher, boxes, t_score, gt_score = inputs()
    out = loss(student, teacher, boxes, t_score, gt_score)
    g = loss.adapters["H"](student["H"])
    conv = loss.attention_convs["H"] if cfg.use_attention else None
    ref = reference_terms(cfg, g, teacher["H"], boxes, t_score, gt_score, GRID, conv)
    expected_names = (
        ({"fg", "bg"} if cfg.use_region_split else {"plain"})
        | ({"fp"} if cfg.use_false_positive_region else set())
        | ({"att"} if cfg.use_attention else set())
    )
    assert set(out) == {f"kd_{n}_H" for n in expected_names}
    for name in expected_names:
        assert out[f"kd_{name}_H"].item() == pytest.approx(ref[name], rel=1e-4), name
    if cfg.use_false_positive_region:
        assert ref["fp"] > 0  # the test data has FP cells


def test_zero_when_adapted_student_equals_teacher_and_grows_with_difference():
    torch.manual_seed(0)
    # B1 (upsampling adapter), B2, H with every component; the identity attention conv, since a randomly
    # initialised one (the default) leaves an L1 term even when the maps are equal
    cfg = DistillConfig(attention_conv_init="identity")
    loss = make_loss(cfg)
    student, _, boxes, t_score, gt_score = inputs()
    with torch.no_grad():
        target = {n: loss.adapters[n](student[n]) for n in cfg.layers}
    out = loss(student, target, boxes, t_score, gt_score)
    assert len(out) == 10 and all(v.item() == 0.0 for v in out.values())
    direction = {n: torch.randn_like(v) for n, v in target.items()}
    totals = []
    for alpha in (0.0, 0.05, 0.2, 0.5, 1.0, 3.0):
        shifted = {n: target[n] + alpha * direction[n] for n in cfg.layers}
        totals.append(sum(loss(student, shifted, boxes, t_score, gt_score).values()).item())
    assert totals[0] == 0.0
    assert all(a < b for a, b in zip(totals, totals[1:], strict=False))


@pytest.mark.parametrize("plain_weight", [1.0, 0.25])
def test_every_switch_off_is_plain_mse(plain_weight):
    torch.manual_seed(0)
    cfg = replace(ALL_OFF, layers=("B1", "H"), plain_weight=plain_weight)
    loss = make_loss(cfg)
    student, teacher, boxes, _, _ = inputs()
    out = loss(student, teacher, boxes)
    assert set(out) == {"kd_plain_B1", "kd_plain_H"}
    for n in cfg.layers:
        ref = plain_weight * F.mse_loss(loss.adapters[n](student[n]), teacher[n])
        assert out[f"kd_plain_{n}"].item() == pytest.approx(ref.item(), rel=1e-6)


def test_head_shared_map_is_imitated_without_an_adapter():
    """HS (the head's shared map): no parameters, the student's own map against the teacher's, so the
    plain term is the MSE of the raw maps; other widths or grids are refused, naming share_channels."""
    torch.manual_seed(0)
    cfg = replace(ALL_OFF, layers=("HS",))
    loss = DistillLoss(cfg, {"HS": 6}, {"HS": 6}, {"HS": (16, 16)}, {"HS": (16, 16)}, {"HS": GRID})
    assert not list(loss.parameters())
    s = torch.randn(2, 6, 16, 16, requires_grad=True)
    t = torch.randn(2, 6, 16, 16)
    out = loss({"HS": s}, {"HS": t}, [torch.zeros(0, 9)] * 2)
    assert out["kd_plain_HS"].item() == pytest.approx(((s - t) ** 2).mean().item(), rel=1e-6)
    out["kd_plain_HS"].backward()
    torch.testing.assert_close(s.grad, 2 * (s - t).detach() / s.numel())
    assert loss({"HS": t}, {"HS": t}, [torch.zeros(0, 9)] * 2)["kd_plain_HS"].item() == 0.0
    with pytest.raises(ValueError, match="share_channels"):
        DistillLoss(cfg, {"HS": 8}, {"HS": 6}, {"HS": (16, 16)}, {"HS": (16, 16)}, {"HS": GRID})
    with pytest.raises(ValueError, match="layer HS"):
        DistillLoss(cfg, {"HS": 6}, {"HS": 6}, {"HS": (8, 8)}, {"HS": (16, 16)}, {"HS": GRID})


def test_gradients_reach_student_and_adapters_never_the_teacher():
    torch.manual_seed(0)
    cfg = DistillConfig()
    loss = make_loss(cfg)
    student, teacher, boxes, t_score, gt_score = inputs()
    student = {n: v.requires_grad_(True) for n, v in student.items()}
    teacher = {n: v.requires_grad_(True) for n, v in teacher.items()}
    sum(loss(student, teacher, boxes, t_score, gt_score).values()).backward()
    for n in cfg.layers:
        assert student[n].grad is not None and student[n].grad.abs().sum() > 0
        assert teacher[n].grad is None
    for name, param in loss.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert set(loss.attention_convs) == set(cfg.layers)
    assert student["B0"].grad is None  # not a distilled layer


def test_warmup_ramps_linearly_and_loss_weight_scales():
    torch.manual_seed(0)
    cfg = DistillConfig(layers=("H",), warmup_steps=10)
    loss = make_loss(cfg)
    student, teacher, boxes, t_score, gt_score = inputs()

    def total(step, module=loss):
        return sum(module(student, teacher, boxes, t_score, gt_score, step=step).values()).item()

    full = total(10)
    assert full > 0
    assert total(0) == 0.0
    assert total(3) == pytest.approx(0.3 * full, rel=1e-6)
    assert total(5) == pytest.approx(0.5 * full, rel=1e-6)
    assert total(25) == pytest.approx(full, rel=1e-6)
    doubled = make_loss(replace(cfg, loss_weight=2.0))
    doubled.load_state_dict(loss.state_dict())
    assert total(10, doubled) == pytest.approx(2 * full, rel=1e-6)


def test_stop_step_turns_the_imitation_off_after_the_warm_up():
    torch.manual_seed(0)
    cfg = DistillConfig(layers=("H",), warmup_steps=4, stop_step=10)
    loss = make_loss(cfg)
    student, teacher, boxes, t_score, gt_score = inputs()

    def total(step):
        return sum(loss(student, teacher, boxes, t_score, gt_score, step=step).values()).item()

    full = total(9)
    assert full > 0 and total(2) == pytest.approx(0.5 * full, rel=1e-6)
    assert total(10) == 0.0 and total(500) == 0.0
    assert [cfg.active(s) for s in (0, 9, 10, 11)] == [True, True, False, False]
    assert DistillConfig().active(10**6)  # 0 = imitate throughout
    with pytest.raises(ValueError, match="stop_step"):
        DistillConfig(stop_step=-1)
    with pytest.raises(ValueError, match="must come after distill.warmup_steps"):
        DistillConfig(warmup_steps=10, stop_step=10)


def test_components_switch_their_terms():
    student, teacher, boxes, t_score, gt_score = inputs()
    base = DistillConfig(
        layers=("B2", "H"), use_attention=False, use_scaling=False, use_false_positive_region=False
    )
    names = set(make_loss(base)(student, teacher, boxes))
    assert names == {"kd_fg_B2", "kd_bg_B2", "kd_fg_H", "kd_bg_H"}
    with_att = set(make_loss(replace(base, use_attention=True))(student, teacher, boxes))
    assert with_att == names | {"kd_att_B2", "kd_att_H"}
    full = set(
        make_loss(replace(base, use_attention=True, use_scaling=True, use_false_positive_region=True))(
            student, teacher, boxes, t_score, gt_score
        )
    )
    assert full == with_att | {"kd_fp_H"}
    # scaling changes the values but not the names
    torch.manual_seed(0)
    a = make_loss(base)(student, teacher, boxes)["kd_bg_H"]
    torch.manual_seed(0)
    b = make_loss(replace(base, use_scaling=True))(student, teacher, boxes)["kd_bg_H"]
    assert a.item() > 50 * b.item()  # a sum over ~240 cells against their average


def test_masks_for_viz_partition_the_map():
    torch.manual_seed(0)
    loss = make_loss(DistillConfig())
    loss.eval()
    student, teacher, boxes, t_score, gt_score = inputs()
    viz = loss.masks_for_viz(student, teacher, boxes, t_score, gt_score)
    assert set(viz) == {"B1", "B2", "H"}
    for layer, maps in viz.items():
        cover = (maps["fg"] > 0).float() + maps["fp"] + maps["bg"]
        assert torch.equal(cover, torch.ones_like(cover)), layer
        assert torch.allclose(maps["teacher_attention"].mean((1, 2)), torch.ones(2))
        assert torch.allclose(maps["student_attention"].mean((1, 2)), torch.ones(2))
        assert torch.allclose((maps["scale"] * maps["bg"]).sum((1, 2)), torch.ones(2))
    assert viz["H"]["fp"].sum() > 0 and viz["B1"]["fp"].sum() == 0  # FP only on H
    assert torch.allclose((viz["H"]["scale"] * viz["H"]["fp"]).sum((1, 2)), torch.ones(2))


def test_bad_inputs_raise_clear_errors():
    student, teacher, boxes, _, _ = inputs()
    with pytest.raises(ValueError, match="teacher_score"):
        make_loss(DistillConfig(layers=("H",)))(student, teacher, boxes)
    with pytest.raises(ValueError, match="layer H"):
        DistillLoss(ALL_OFF, {"H": 8}, {"H": 8}, {"H": (16, 16)}, {"H": (24, 24)}, {"H": GRID})
    with pytest.raises(ValueError, match="missing from grids"):
        DistillLoss(ALL_OFF, {"H": 8}, {"H": 8}, {"H": (16, 16)}, {"H": (16, 16)}, {})
    with pytest.raises(KeyError, match="no layer 'H'"):
        make_loss(ALL_OFF)({}, teacher, boxes)


@dataclass(frozen=True)
class _Run:
    """Stands in for the run config the presets are layered onto (under ``distill:``)."""

    distill: DistillConfig = field(default_factory=DistillConfig)


PRESET_ROWS = {
    "layers_H": (("H",), True, True, True, False),
    "layers_B2_H": (("B2", "H"), True, True, True, False),
    "layers_B1_B2_H": (("B1", "B2", "H"), True, True, True, False),
    "layers_B0_B1_B2_H": (("B0", "B1", "B2", "H"), True, True, True, False),
    "components_plain": (("B1", "B2", "H"), False, False, False, False),
    "components_fgbg": (("B1", "B2", "H"), True, False, False, False),
    "components_fgbg_att": (("B1", "B2", "H"), True, True, False, False),
    "components_fgbg_att_scale": (("B1", "B2", "H"), True, True, True, False),
    "full": (("B1", "B2", "H"), True, True, True, True),
}


@pytest.mark.parametrize("name", sorted(PRESET_ROWS))
def test_presets_state_every_value_of_their_ablation_row(name):
    import yaml

    path = PRESETS / f"{name}.yaml"
    stated = set(yaml.safe_load(path.read_text())["distill"])
    assert stated == {f.name for f in fields(DistillConfig)}, f"{path} must state every DistillConfig value"
    cfg = load_config(_Run, [path]).distill
    layers, split, att, scale, fp = PRESET_ROWS[name]
    assert (
        cfg.layers,
        cfg.use_region_split,
        cfg.use_attention,
        cfg.use_scaling,
        cfg.use_false_positive_region,
    ) == (layers, split, att, scale, fp)
    # the weights are the released ones in every row, so rows differ only in their switch
    assert (cfg.w_fg, cfg.w_bg, cfg.w_fp, cfg.w_att) == (6e-3, 4e-2, 6e-2, 2.5e-3)
    # and the geometry and init are the released code's, as the defaults are
    assert (cfg.cell_point, cfg.align_corners, cfg.attention_conv_init) == ("corner", True, "default")
    assert sorted(p.stem for p in PRESETS.glob("*.yaml")) == sorted(PRESET_ROWS)


def test_defaults_are_the_released_geometry_and_the_old_ones_are_options():
    """Cell corners, align_corners=True and PyTorch's conv init by default; the former choices (cell
    centres, align_corners=False, identity conv) are each one switch away and reach the modules."""
    cfg = DistillConfig()
    assert (cfg.cell_point, cfg.align_corners, cfg.attention_conv_init) == ("corner", True, "default")
    old = replace(cfg, cell_point="center", align_corners=False, attention_conv_init="identity")
    for c, corners, identity in ((cfg, True, False), (old, False, True)):
        loss = make_loss(c)
        assert loss.adapters["B1"][0].align_corners is corners  # the x4 upsampling of B1
        weight = loss.attention_convs["H"].weight
        assert (weight[0, 0, 1, 1].item() == 1.0 and weight.abs().sum().item() == 1.0) is identity
    # the cell point reaches the FG mask: a 0.4 m box centred on the corner shared by cells (7..8, 7..8)
    # holds the lower-left corner of cell (8, 8) and no cell centre
    boxes = [torch.tensor([box(0.0, 0.0, 0.4, 0.4)])]
    for c, cells in ((cfg, 1), (old, 0)):
        h_only = replace(c, layers=("H",), use_false_positive_region=False)
        fg = make_loss(h_only).regions("H", boxes, None, None).fg
        assert int(fg.sum()) == cells and (cells == 0 or fg[0, 8, 8] == 1)


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="distill.layers"):
        load_config(_Run, [], ["distill.layers=[B3]"])
    with pytest.raises(ConfigError, match="attention_temperature"):
        load_config(_Run, [], ["distill.attention_temperature=0"])
    # cross-field checks run when the loss is built, so --set overrides may be given in any order
    only_b1 = load_config(
        _Run, [], ["distill.layers=[B1]", "distill.use_false_positive_region=false"]
    ).distill
    assert only_b1.layers == ("B1",)
    make_loss(only_b1)
    with pytest.raises(ValueError, match="fp_layers"):
        make_loss(replace(only_b1, use_false_positive_region=True))
    with pytest.raises(ValueError, match="use_region_split"):
        make_loss(replace(only_b1, use_region_split=False))
    assert DistillConfig().ramp(7) == 1.0 and DistillConfig(warmup_steps=4).ramp(1) == 0.25


def test_terms_are_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    loss = make_loss(DistillConfig())
    student, teacher, boxes, t_score, gt_score = inputs()
    ref = loss(student, teacher, boxes, t_score, gt_score)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss(student, teacher, boxes, t_score, gt_score)
    for name, value in low.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), name
        assert value.item() == pytest.approx(ref[name].item(), rel=0.05), name


def test_distillation_imports_no_model_code():
    import ast

    package = Path(__file__).resolve().parents[2] / "distillbev" / "distill"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("distillbev.models"), f"{path.name} imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("distillbev.models") for a in node.names), path.name
