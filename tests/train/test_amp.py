"""Mixed precision in the training loop: fp16 trains through a GradScaler whose state is checkpointed;
bf16 autocast runs on the CPU without one."""

import json
import math
from pathlib import Path

import torch
from test_training import SMOKE, STUDENT_SMOKE

from distillbev.config import load_config
from distillbev.models import build_model
from distillbev.train.checkpoint import read_checkpoint
from distillbev.train.config import RunConfig
from distillbev.train.loop import _autocast, train

ROOT = Path(__file__).resolve().parents[2]


def test_fp16_trains_with_a_grad_scaler(smoke_world, tmp_path):
    over = [f"data.dataroot={smoke_world.dataroot}", *SMOKE, *STUDENT_SMOKE, "optim.amp=fp16"]
    cfg = load_config(RunConfig, [ROOT / "configs/student/bevdet.yaml"], over)
    torch.manual_seed(0)
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(cfg, tmp_path, model)
    blob = read_checkpoint(tmp_path / "checkpoint.pt")
    assert blob["step"] == 2 and blob["scaler"]["scale"] > 0  # the loss scale, restored on resume
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_bf16_autocast_on_cpu_trains_with_finite_losses(smoke_world, tmp_path):
    over = [f"data.dataroot={smoke_world.dataroot}", *SMOKE, *STUDENT_SMOKE, "optim.amp=bf16"]
    cfg = load_config(RunConfig, [ROOT / "configs/student/bevdet.yaml"], over)
    with _autocast(cfg, torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.nn.Linear(4, 2)(torch.ones(1, 4)).dtype == torch.bfloat16
    torch.manual_seed(0)
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(cfg, tmp_path, model)
    blob = read_checkpoint(tmp_path / "checkpoint.pt")
    assert blob["step"] == 2 and blob["scaler"] is None  # bf16 needs no loss scaling
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    losses = [v for row in rows for k, v in row.items() if k.startswith("loss/")]
    assert losses and all(math.isfinite(v) for v in losses)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())
