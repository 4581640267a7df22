"""Step time and peak memory of teachers, students and distillation (forward + backward + AdamW).

    python benchmarks/train_step.py [--scale tiny|full] [--batch 2] [--steps 5] [--device cpu|cuda]
                                    [--models centerpoint,mvp,bevdet,...] [--points N]
                                    [--malloc tuned|default|both] [--set key=value ...] [--no-distill]

Uses random inputs shaped like real batches (no dataset needed). Each model runs in its own process
(so the peak memory is that model's: the CUDA allocator's peak, or the process's max RSS on CPU), and
the parent prints one table with ms/step, ms/sample, peak memory, and the distillation overhead as a
ratio to the student-only step (both measured in the same process, so the ratio is one run's).
``--malloc`` picks the glibc allocator settings of the children (``tuned`` = what training uses,
``train/malloc.py``); ``both`` runs every model under each and adds the default/tuned ratio.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import torch

from distillbev.config import load_config
from distillbev.data.batch import Batch
from distillbev.distill.loss import DistillLoss
from distillbev.models import build_model
from distillbev.paths import ROOT
from distillbev.train.config import RunConfig
from distillbev.train.malloc import tune_malloc


def fake_batch(cfg: RunConfig, b: int, n_points: int, device: str, point_features: int = 5) -> Batch:
    """A batch with plausible geometry: 6 cameras looking out from the origin, random points and boxes."""
    h, w = cfg.student.image_size
    yaw = torch.tensor([0.0, 55, -55, 180, 110, -110]).deg2rad()
    cam2lidar = torch.eye(4).repeat(6, 1, 1)
    axes = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    for i, a in enumerate(yaw):
        rz = torch.tensor([[a.cos(), -a.sin(), 0], [a.sin(), a.cos(), 0], [0, 0, 1]])
        cam2lidar[i, :3, :3] = rz @ axes
        cam2lidar[i, :3, 3] = torch.tensor([0.0, 0.0, 1.5])
    K = torch.tensor([[w * 0.8, 0, w / 2], [0, w * 0.8, h / 2], [0, 0, 1]]).repeat(6, 1, 1)
    pts = []
    for _ in range(b):
        p = torch.rand(n_points, point_features)
        p[:, :2] = p[:, :2] * 100 - 50
        p[:, 2] = p[:, 2] * 4 - 2
        pts.append(p.to(device))
    boxes = []
    for _ in range(b):
        bx = torch.zeros(30, 9)
        bx[:, :2] = torch.rand(30, 2) * 80 - 40
        bx[:, 3:6] = torch.tensor([4.5, 1.9, 1.6])
        boxes.append(bx.to(device))
    return Batch(
        images=torch.randn(b, 6, 3, h, w, device=device),
        intrinsics=K.repeat(b, 1, 1, 1).to(device),
        cam2lidar=cam2lidar.repeat(b, 1, 1, 1).to(device),
        post_rot=torch.eye(3).repeat(b, 6, 1, 1).to(device),
        post_tran=torch.zeros(b, 6, 3, device=device),
        depth=torch.rand(b, 6, h, w, device=device) * 40,
        points=pts,
        gt_boxes=boxes,
        gt_labels=[torch.zeros(30, dtype=torch.long, device=device)] * b,
        bev_aug=torch.eye(4).repeat(b, 1, 1).to(device),
        lidar2global=torch.eye(4).repeat(b, 1, 1).double(),
        prev_images=torch.randn(b, 6, 3, h, w, device=device),
        prev_cam2lidar=cam2lidar.repeat(b, 1, 1, 1).to(device),
        has_prev=torch.ones(b, dtype=torch.bool, device=device),
    )


def peak_mb(device: str) -> float:
    """Peak memory so far: CUDA allocator peak, or the process's max RSS on CPU."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(fn, steps: int, device: str) -> float:
    """Median seconds of ``fn`` over ``steps`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(steps):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


MODELS = {
    "centerpoint": "teacher/centerpoint_pillar",
    "mvp": "teacher/mvp",
    "bevdet": "student/bevdet",
    "bevdepth": "student/bevdepth",
    "bevdet4d": "student/bevdet4d",
    "bevdepth4d": "student/bevdepth4d",
    "bevformer": "student/bevformer",
}
#: Points per sample: our tiny teachers read 3 sweeps (~110k points); nuScenes with 10 sweeps ~300k.
DEFAULT_POINTS = {"tiny": 110000, "full": 300000}


def measure(name: str, args: argparse.Namespace) -> list[tuple[str, float, float, float | None]]:
    """Rows ``(label, s/step, peak MB, distill ratio)`` of one model (and its distilled step)."""
    suffix = "" if args.scale == "tiny" else "_full"
    cfg = load_config(RunConfig, [ROOT / f"configs/{MODELS[name]}{suffix}.yaml"], args.set)
    model = build_model(cfg).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    feats = 17 if name == "mvp" else 5
    batch = fake_batch(cfg, args.batch, args.points, args.device, feats)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step(model=model, opt=opt, batch=batch):
        taps, preds = model(batch)
        sum(model.loss(batch, taps, preds).values()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    sec = time_steps(step, args.steps, args.device)
    rows = [(name, sec, peak_mb(args.device), None)]
    if cfg.is_teacher or args.no_distill:
        return rows
    teacher_cfg = load_config(RunConfig, [ROOT / f"configs/teacher/centerpoint_pillar{suffix}.yaml"])
    teacher = build_model(teacher_cfg).to(args.device)
    cfg = replace(cfg, distill=load_config(RunConfig, [ROOT / "configs/distill/full.yaml"]).distill)
    tbatch = fake_batch(cfg, args.batch, args.points, args.device, 5)
    with torch.no_grad():
        s_taps, t_taps = model.forward_bev(batch), teacher.eval().forward_bev(tbatch)
    layers, grid = cfg.distill.layers, cfg.student.bev_grid()
    dl = DistillLoss(
        cfg.distill,
        {n: s_taps[n].shape[1] for n in layers},
        {n: t_taps[n].shape[1] for n in layers},
        {n: tuple(s_taps[n].shape[-2:]) for n in layers},
        {n: tuple(t_taps[n].shape[-2:]) for n in layers},
        {n: grid.scaled(grid.shape[0] / t_taps[n].shape[-2]) for n in layers},
    ).to(args.device)
    opt2 = torch.optim.AdamW(list(model.parameters()) + list(dl.parameters()), 1e-4)
    del s_taps, t_taps
    gc.collect()

    def dstep(model=model, opt2=opt2, batch=batch, dl=dl, tbatch=tbatch):
        taps, preds = model(batch)
        losses = model.loss(batch, taps, preds)
        with torch.no_grad():
            tt = teacher.forward_bev(tbatch)
            score = teacher.head.score_map(teacher.forward_head(tt))
            gt = model.head.gt_score_map(model.head.build_targets(batch.gt_boxes, batch.gt_labels))
        losses |= dl(taps, tt, batch.gt_boxes, score, gt)
        sum(losses.values()).backward()
        opt2.step()
        opt2.zero_grad(set_to_none=True)

    dsec = time_steps(dstep, args.steps, args.device)
    rows.append((f"{name} + DistillBEV", dsec, peak_mb(args.device), dsec / sec))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="tiny", choices=("tiny", "full"))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--points", type=int, default=0, help="points per sample (default: by scale)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of the models")
    ap.add_argument("--malloc", default="tuned", choices=("tuned", "default", "both"))
    ap.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    ap.add_argument("--no-distill", action="store_true", help="students: skip the distilled step")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one model, JSON rows out
    args = ap.parse_args()
    args.points = args.points or DEFAULT_POINTS[args.scale]
    names = args.models.split(",")
    for n in names:
        if n not in MODELS:
            ap.error(f"unknown model {n!r}; choose from {', '.join(MODELS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        if args.malloc == "tuned":
            tune_malloc()
        print(json.dumps(measure(names[0], args)))
        return
    rows, malloc_rows = [], []
    settings = ("default", "tuned") if args.malloc == "both" else (args.malloc,)
    for n in names:
        by_setting = {}
        for setting in settings:
            cmd = [sys.executable, __file__, "--child", "--models", n, "--scale", args.scale]
            cmd += ["--batch", str(args.batch), "--steps", str(args.steps), "--points", str(args.points)]
            cmd += ["--device", args.device, "--threads", str(args.threads), "--malloc", setting]
            cmd += [f"--set={kv}" for kv in args.set] + (["--no-distill"] if args.no_distill else [])
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            by_setting[setting] = [tuple(r) for r in json.loads(out.strip().splitlines()[-1])]
        rows += by_setting[settings[-1]]
        if args.malloc == "both":
            for d, t in zip(by_setting["default"], by_setting["tuned"], strict=True):
                malloc_rows.append((t[0], d[1], t[1], d[2], t[2]))
    print(
        f"scale {args.scale}, batch {args.batch}, device {args.device}, "
        f"threads {args.threads or torch.get_num_threads()}, {args.points} points/sample, "
        f"malloc {settings[-1]}, "
        f"median of {args.steps} steps"
    )
    print(f"{'model':<26}{'ms/step':>10}{'ms/sample':>11}{'peak MB':>10}{'distill ratio':>15}")
    for name, sec, mb, ratio in rows:
        r = f"{ratio:.2f}x" if ratio else ""
        print(f"{name:<26}{sec * 1000:>10.0f}{sec * 1000 / args.batch:>11.0f}{mb:>10.0f}{r:>15}")
    if malloc_rows:
        print(f"\n{'malloc: model':<26}{'default ms':>11}{'tuned ms':>10}{'speed-up':>10}{'peak MB d/t':>14}")
        for name, d_sec, t_sec, d_mb, t_mb in malloc_rows:
            print(
                f"{name:<26}{d_sec * 1000:>11.0f}{t_sec * 1000:>10.0f}{d_sec / t_sec:>9.2f}x"
                f"{d_mb:>8.0f}/{t_mb:.0f}"
            )


if __name__ == "__main__":
    main()
