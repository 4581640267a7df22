"""Inference latency of the exported students: PyTorch eager vs onnxruntime, CPU, batch 1.

    python benchmarks/export_latency.py [--scale tiny|full] [--students bevdet,bevdepth,...]
                                        [--threads 1] [--runs 20] [--set key=value ...]

Each student of the preset (random weights: latency does not depend on them) is exported with fixed
cameras (``distillbev.export``) and both runtimes are timed from the images to the head's raw maps
(decoding, the same Python code for both, is not timed): PyTorch runs ``model(batch)`` under
``no_grad`` (its lift-splat pooling index cached, as at evaluation), onnxruntime the exported graph
with the same number of threads; the two take turns run by run. Prints one table: median ms per
frame, the speed-up, and the largest difference of any output map between the two.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from train_step import fake_batch

from distillbev.config import load_config, to_dict
from distillbev.export import OnnxStudent, example_inputs, export_student
from distillbev.models import build_model
from distillbev.models.lss import CameraGeometry
from distillbev.models.temporal import prev_to_current
from distillbev.paths import ROOT
from distillbev.train.config import RunConfig

STUDENTS = ("bevdet", "bevdepth", "bevdet4d", "bevdepth4d")


def median_ms(fns: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, float]:
    """Median wall time in milliseconds of each function over ``runs`` calls after ``warmup`` calls.
    The functions take turns call by call, so a load that comes and goes (other jobs) hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + runs):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    return {name: 1000 * statistics.median(ts) for name, ts in times.items()}


def measure(name: str, args: argparse.Namespace, folder: Path) -> dict[str, object]:
    """One table row: sizes, eager and onnxruntime latency, and the largest output difference."""
    suffix = "" if args.scale == "tiny" else "_full"
    sets = ["student.image_pretrained=", "student.pretrained=", *args.set]
    cfg = load_config(RunConfig, [ROOT / f"configs/student/{name}{suffix}.yaml"], sets)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    batch = fake_batch(cfg, 1, 1, "cpu")
    cams = CameraGeometry.from_batch(batch)
    motion = prev_to_current(batch.cam2lidar, batch.prev_cam2lidar) if cfg.student.temporal else None
    inputs = example_inputs(model, batch.images, batch.prev_images, motion)
    path = folder / f"{name}.onnx"
    export_student(model, cams, inputs, path, {"config": to_dict(cfg)})
    runtime = OnnxStudent(path, threads=args.threads)

    with torch.no_grad():
        ms = median_ms(
            {"eager": lambda: model(batch), "onnx": lambda: runtime.raw(*inputs)}, args.runs, args.warmup
        )
        _, expected = model(batch)
    got = runtime.raw(*inputs)
    diff = max(float((g[k] - e[k]).abs().max()) for e, g in zip(expected, got, strict=True) for k in e)
    h, w = cfg.student.image_size
    return {
        "student": name,
        "input": f"{batch.images.shape[1]} x {h}x{w}",
        "bev": "x".join(map(str, cfg.student.bev_grid().shape)),
        "params": sum(p.numel() for p in model.parameters()) / 1e6,
        "mb": path.stat().st_size / 2**20,
        "eager": ms["eager"],
        "onnx": ms["onnx"],
        "diff": diff,
    }


def main() -> None:
    """Parse the arguments, measure every student, print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=("tiny", "full"), default="tiny")
    p.add_argument("--students", default=",".join(STUDENTS), help="comma-separated student presets")
    p.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--set", action="append", default=[], help="config override, e.g. student.bev_cell=0.8")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU, batch 1, {args.threads} thread(s), median of {args.runs} runs, scale {args.scale}")
    print(
        "| student | input | BEV | params (M) | ONNX MB | PyTorch eager ms | onnxruntime ms | speed-up "
        "| max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.students.split(","):
            r = measure(name.strip(), args, Path(folder))
            print(
                f"| {r['student']} | {r['input']} | {r['bev']} | {r['params']:.2f} | "
                f"{r['mb']:.1f} | {r['eager']:.1f} | {r['onnx']:.1f} | {r['eager'] / r['onnx']:.2f}x | "
                f"{r['diff']:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
