"""``distillbev pretrain`` on the smoke world: the checkpoint and its provenance, loading it into a
student (strict, architecture-checked), pretraining without masks, and the student's auxiliary image
heatmap loss."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from smoke_sizes import STUDENT_SMOKE
from torch.utils.data import DataLoader

from distillbev.config import load_config
from distillbev.data.collate import collate
from distillbev.data.masks import MASKS_DIR
from distillbev.models.bevdepth import depth_targets
from distillbev.models.image_aux import NUM_CLASSES, center_heatmaps, class_occupancy, heatmap_loss
from distillbev.models.image_encoder import build_image_encoder
from distillbev.models.image_heading import heading_loss, heading_targets
from distillbev.models.image_pretrain import FORMAT, ImagePretrainNet, read_image_encoder
from distillbev.models.students import build_student
from distillbev.train.checkpoint import load_model, save_checkpoint
from distillbev.train.config import RunConfig
from distillbev.train.pretrain import (
    CHECKPOINT,
    pretrain_dataset,
    pretrain_figures,
    pretrain_losses,
    run_pretrain,
)

ROOT = Path(__file__).resolve().parents[2]
STUDENT = ROOT / "configs/student/bevdet.yaml"
PRETRAIN = ROOT / "configs/pretrain/tiny.yaml"
#: A smoke-scale student (as tests/train/test_training.py) that starts from random weights.
PRETRAIN_SMOKE = [
    "seed=3",
    "pretrain.epochs=1",
    "pretrain.batch_size=2",
    "pretrain.head_channels=8",
    "pretrain.val_samples=2",
    "data.max_train_samples=4",
    "log_every_steps=1",
]


def _config(smoke_world, *extra: str, dataroot: Path | None = None) -> RunConfig:
    world = f"data.dataroot={dataroot or smoke_world.dataroot}"
    return load_config(RunConfig, [STUDENT, PRETRAIN], [world, *STUDENT_SMOKE, *PRETRAIN_SMOKE, *extra])


@pytest.fixture(scope="module")
def pretrained(smoke_world, tmp_path_factory) -> tuple[Path, dict]:
    """A pretraining run's output folder and the figures ``run_pretrain`` returned."""
    out = tmp_path_factory.mktemp("pretrain")
    world = f"data.dataroot={smoke_world.dataroot}"
    figures = run_pretrain([STUDENT, PRETRAIN], out, [world, *STUDENT_SMOKE, *PRETRAIN_SMOKE])
    return out, figures


def test_pretrain_writes_encoder_with_provenance(smoke_world, pretrained):
    out, figures = pretrained
    blob = read_image_encoder(out / CHECKPOINT)
    assert blob["format"] == FORMAT
    assert blob["arch"]["neck_channels"] == 16 and blob["arch"]["tiny_widths"] == [8, 8, 16, 16]
    assert blob["backbone"] and blob["neck"]
    prov = blob["provenance"]
    assert "git_sha" in prov and prov["seed"] == 3 and prov["steps"] == 2  # 4 samples / batch 2, 1 epoch
    world_cfg = yaml.safe_load((Path(smoke_world.dataroot) / "world_config.yaml").read_text())
    assert prov["world"]["world_config"] == world_cfg and len(prov["world"]["world_config_sha256"]) == 64
    assert prov["world"]["dataroot"] == str(smoke_world.dataroot)
    assert prov["config"]["student"]["image_pretrained"] == ""
    # The figures are those of pretrain_figures (masks present: occupancy too), as returned and stored.
    cfg = _config(smoke_world)
    net = ImagePretrainNet(cfg.student, *build_image_encoder(cfg.student), 8)
    val = torch.utils.data.Subset(pretrain_dataset(cfg, train=False), range(2))
    keys = set(pretrain_figures(net, DataLoader(val, 2, collate_fn=collate), cfg))
    assert keys == {
        "depth_within_1_bin",
        "depth_abs_rel",
        "center_recall",
        "center_false_peaks_per_image",
        "occupancy_iou",
    }
    assert set(prov["val_figures"]) == keys and prov["val_figures"] == figures
    assert all(math.isfinite(v) for v in figures.values())
    metrics = json.loads((out / "metrics.json").read_text())
    assert {k: metrics[k] for k in keys} == figures and "train_minutes" in metrics
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["student"]["image_pretrained"] == "" and saved["pretrain"]["epochs"] == 1


def test_pretrain_log_has_finite_losses(pretrained):
    out, _ = pretrained
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss/total" in r]
    assert [r["step"] for r in train_rows] == [1, 2]
    for row in train_rows:
        losses = {k: v for k, v in row.items() if k.startswith("loss/")}
        assert set(losses) == {"loss/depth", "loss/center", "loss/occupancy", "loss/total"}
        assert all(math.isfinite(v) and v > 0 for v in losses.values())
        total = losses["loss/depth"] + losses["loss/center"] + losses["loss/occupancy"]
        assert losses["loss/total"] == pytest.approx(total, rel=1e-5)
    assert any(k.startswith("val/") for k in rows[-1])


def test_pretrain_refuses_to_overwrite(smoke_world, pretrained):
    out, _ = pretrained
    before = (out / CHECKPOINT).read_bytes()
    world = f"data.dataroot={smoke_world.dataroot}"
    with pytest.raises(FileExistsError, match=CHECKPOINT):
        run_pretrain([STUDENT, PRETRAIN], out, [world, *STUDENT_SMOKE, *PRETRAIN_SMOKE])
    assert (out / CHECKPOINT).read_bytes() == before


def test_student_loads_pretrained_encoder(smoke_world, pretrained):
    out, _ = pretrained
    blob = read_image_encoder(out / CHECKPOINT)
    cfg = _config(smoke_world, f"student.image_pretrained={out / CHECKPOINT}")
    student = build_student(cfg.student)
    for name in ("backbone", "neck"):
        state = getattr(student, name).state_dict()
        assert state.keys() == blob[name].keys()
        assert all(torch.equal(state[k], blob[name][k]) for k in state), name
    scratch = build_student(replace(cfg.student, image_pretrained=""))
    state = scratch.backbone.state_dict()
    assert any(not torch.equal(state[k], blob["backbone"][k]) for k in state if k.endswith("weight"))
    state = scratch.neck.state_dict()
    assert any(not torch.equal(state[k], blob["neck"][k]) for k in state if k.endswith("weight"))


def test_student_checkpoint_loads_after_its_encoder_file_is_gone(smoke_world, pretrained, tmp_path):
    """A trained student's checkpoint holds every weight: loading it elsewhere (the encoder file it
    started from moved or deleted) gives its own weights, and the config still names the file."""
    out, _ = pretrained
    moved = tmp_path / "encoder.pt"
    shutil.copy(out / CHECKPOINT, moved)
    cfg = _config(smoke_world, f"student.image_pretrained={moved}")
    student = build_student(cfg.student)
    with torch.no_grad():
        for p in student.backbone.parameters():
            p.add_(0.5)  # "trained": differs from the encoder file
    save_checkpoint(tmp_path / "student.pt", student, cfg, step=1, epoch=1)
    moved.unlink()
    model, loaded_cfg, _ = load_model(tmp_path / "student.pt")
    assert loaded_cfg.student.image_pretrained == str(moved)
    mine, theirs = model.state_dict(), student.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


@pytest.mark.parametrize(
    ("change", "key"),
    [({"neck_channels": 32}, "neck_channels"), ({"tiny_widths": (8, 16, 16, 32)}, "tiny_widths")],
)
def test_student_of_another_architecture_is_refused(smoke_world, pretrained, change, key):
    out, _ = pretrained
    cfg = _config(smoke_world, f"student.image_pretrained={out / CHECKPOINT}")
    with pytest.raises(ValueError, match=f"another architecture.*{key}"):
        build_student(replace(cfg.student, **change))


def test_not_an_image_encoder_checkpoint_is_refused(smoke_world, tmp_path):
    cfg = _config(smoke_world)
    other = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(3)}, "kind": "bevdet"}, other)
    with pytest.raises(ValueError, match="not an image encoder checkpoint"):
        build_student(replace(cfg.student, image_pretrained=str(other)))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        build_student(replace(cfg.student, image_pretrained=str(garbage)))
    with pytest.raises(FileNotFoundError, match="image encoder checkpoint not found"):
        build_student(replace(cfg.student, image_pretrained=str(tmp_path / "missing.pt")))


def test_pretrain_losses_without_masks(smoke_world, tmp_path):
    """A dataroot without ``masks/`` (a symlink copy of the smoke world): depth and centres only."""
    root = tmp_path / "no_masks"
    root.mkdir()
    for entry in Path(smoke_world.dataroot).iterdir():
        if entry.name not in (MASKS_DIR, ".distillbev_cache"):
            (root / entry.name).symlink_to(entry)
    torch.manual_seed(0)
    for dataroot, expected in (
        (root, {"depth", "center"}),
        (Path(smoke_world.dataroot), {"depth", "center", "occupancy"}),
    ):
        cfg = _config(smoke_world, dataroot=dataroot)
        ds = pretrain_dataset(cfg, train=True)
        batch = collate([ds[0], ds[1]])
        assert (batch.class_masks is None) == (dataroot == root)
        net = ImagePretrainNet(cfg.student, *build_image_encoder(cfg.student), 8)
        losses = pretrain_losses(net, batch, cfg)
        assert set(losses) == expected
        assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    assert not (root / MASKS_DIR).exists()


@pytest.mark.parametrize("kind", ["bevdet", "bevdepth"])
def test_student_image_aux_loss(smoke_world, kind):
    torch.manual_seed(0)
    cfg = _config(smoke_world, f"student.kind={kind}", "student.image_aux_weight=0.5")
    ds = pretrain_dataset(cfg, train=True)  # images, depth, boxes: all a non-temporal student reads
    batch = collate([ds[0], ds[1]])
    model = build_student(cfg.student)
    assert model.image_aux is not None
    taps = model.forward_bev(batch)
    h, w = cfg.student.feature_size()
    assert taps["image_heatmap"].shape == (2 * 6, NUM_CLASSES, h, w)
    losses = model.loss(batch, taps, model.forward_head(taps))
    target = center_heatmaps(batch, cfg.student.image_size, cfg.student.image_stride)
    assert target.eq(1).sum() > 0
    expected = 0.5 * heatmap_loss(taps["image_heatmap"], target)
    assert expected > 0
    assert torch.allclose(losses["image_heatmap"], expected)
    assert {"heatmap", "box"} <= set(losses) and ("depth" in losses) == (kind == "bevdepth")
    losses["image_heatmap"].backward()
    assert model.image_aux.out.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())

    plain = build_student(replace(cfg.student, image_aux_weight=0.0))
    assert plain.image_aux is None
    assert not any("image_aux" in k for k in plain.state_dict())
    taps = plain.forward_bev(batch)
    assert "image_heatmap" not in taps
    assert "image_heatmap" not in plain.loss(batch, taps, plain.forward_head(taps))


class _Oracle(torch.nn.Module):
    """Stands in for an ``ImagePretrainNet``: returns fixed logits, whatever the images."""

    def __init__(self, out: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.out = out

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.out


@pytest.mark.parametrize("centres", [False, True])
def test_pretrain_figures_of_perfect_predictions(smoke_world, centres):
    """Logits that put all mass on the true depth bin, the true centres and the true occupancy score
    within-1-bin = recall = IoU = 1, no false peaks, and abs_rel = mean |bin centre - d| / d."""
    cfg = _config(smoke_world, f"student.depth_bin_centers={str(centres).lower()}")
    s, bins = cfg.student, cfg.student.bins()
    val = torch.utils.data.Subset(pretrain_dataset(cfg, train=False), range(2))
    batch = collate([val[0], val[1]])
    depth = depth_targets(batch.depth, s.image_stride, bins)  # (M, h, w)
    valid = depth > 0
    k = bins.bin_of(depth)
    heat = center_heatmaps(batch, s.image_size, s.image_stride).clamp(1e-4, 1 - 1e-4)
    occ = class_occupancy(batch.class_masks, s.image_stride) > 0.5
    oracle = _Oracle(
        {
            "depth": 50.0 * torch.nn.functional.one_hot(k, bins.num_bins).permute(0, 3, 1, 2).float(),
            "center": torch.log(heat / (1 - heat)),
            "occupancy": torch.where(occ, 20.0, -20.0),
        }
    )
    figures = pretrain_figures(oracle, DataLoader(val, 2, collate_fn=collate), cfg)
    centre_of_bin = bins.d_min + bins.d_step * (k.float() + 0.5)
    abs_rel = float(((centre_of_bin - depth).abs() / depth)[valid].mean())
    assert valid.sum() > 0 and occ.sum() > 0 and heat.ge(1 - 1e-4).sum() > 0
    assert figures["depth_within_1_bin"] == 1.0
    assert figures["center_recall"] == 1.0 and figures["center_false_peaks_per_image"] == 0.0
    assert figures["occupancy_iou"] == 1.0
    assert figures["depth_abs_rel"] == pytest.approx(abs_rel, rel=1e-4)


def test_pretrain_heading_loss_and_front_back_figure(smoke_world):
    """``pretrain.heading_weight``: a fourth head and loss; the front/back figure is 1 for predictions
    equal to the targets, 0 for reversed ones, and absent without the head."""
    cfg = _config(smoke_world, "pretrain.heading_weight=0.5")
    s = cfg.student
    ds = pretrain_dataset(cfg, train=True)  # image flips on: the targets carry their mirror signs
    batch = collate([ds[0], ds[1]])
    torch.manual_seed(0)
    net = ImagePretrainNet(s, *build_image_encoder(s), 8, heading=True)
    losses = pretrain_losses(net, batch, cfg)
    target, mask = heading_targets(batch, s.image_size, s.image_stride)
    assert mask.sum() > 0
    out = net(batch.images.flatten(0, 1))
    assert losses["heading"].item() == pytest.approx(0.5 * heading_loss(out["heading"], target, mask).item())

    val = torch.utils.data.Subset(pretrain_dataset(cfg, train=False), range(2))
    vbatch = collate([val[0], val[1]])
    vtarget, vmask = heading_targets(vbatch, s.image_size, s.image_stride)
    assert vmask.sum() > 0
    loader = DataLoader(val, 2, collate_fn=collate)
    base = {
        "depth": torch.zeros(12, s.bins().num_bins, *s.feature_size()),
        "center": torch.zeros(12, NUM_CLASSES, *s.feature_size()),
    }
    base["occupancy"] = base["center"]
    for sign, want in ((1.0, 1.0), (-1.0, 0.0)):
        figures = pretrain_figures(_Oracle(base | {"heading": sign * vtarget}), loader, cfg)
        assert figures["heading_front_back"] == want
    assert "heading_front_back" not in pretrain_figures(_Oracle(base), loader, cfg)
