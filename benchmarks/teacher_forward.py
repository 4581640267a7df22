"""The frozen teacher's forward during distillation: scatter-max's no-gradient path vs recording winners.

    python benchmarks/teacher_forward.py [--teacher centerpoint|mvp] [--batch 8] [--points 110000]
                                         [--reps 6] [--threads 1]

Under ``torch.no_grad`` ``ops.scatter_max`` runs only the reduction; with gradients it also records,
per pillar and channel, the point holding the maximum (for its cheap backward). This times the tiny
teacher's ``forward_bev`` + head score map on random points (``train_step.fake_batch``) both ways,
interleaved rep by rep in one process (so a busy machine slows both alike), and prints min / median
seconds and the ratio. The outputs are checked to be equal.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_step import fake_batch  # noqa: E402

from distillbev.config import load_config  # noqa: E402
from distillbev.models import (
    build_model,  # noqa: E402
    pillar_encoder,  # noqa: E402
)
from distillbev.ops import scatter_max as sm  # noqa: E402
from distillbev.paths import ROOT  # noqa: E402
from distillbev.train.config import RunConfig  # noqa: E402
from distillbev.train.malloc import tune_malloc  # noqa: E402

PRESETS = {"centerpoint": "configs/teacher/centerpoint_pillar.yaml", "mvp": "configs/teacher/mvp.yaml"}


def recording_winners(x: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """scatter_max as it runs when gradients are wanted (winners recorded), even under no_grad."""
    return sm._ScatterMax.apply(x, index, size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="centerpoint", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--points", type=int, default=110000)
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tune_malloc()
    cfg = load_config(RunConfig, [ROOT / PRESETS[args.teacher]])
    teacher = build_model(cfg).eval().requires_grad_(False)
    batch = fake_batch(cfg, args.batch, args.points, "cpu", 17 if args.teacher == "mvp" else 5)
    ways = {"no-grad path": sm.scatter_max, "recording winners": recording_winners}
    times: dict[str, list[float]] = {k: [] for k in ways}
    outs: dict[str, torch.Tensor] = {}
    try:
        for _ in range(args.reps + 1):  # the first rep warms up and is dropped
            for name, fn in ways.items():
                pillar_encoder.scatter_max = fn
                with torch.no_grad():
                    t = time.perf_counter()
                    taps = teacher.forward_bev(batch)
                    outs[name] = teacher.head.score_map(teacher.forward_head(taps))
                    times[name].append(time.perf_counter() - t)
    finally:
        pillar_encoder.scatter_max = sm.scatter_max
    if not torch.equal(*outs.values()):
        raise SystemExit("the two paths gave different score maps")
    print(f"{args.teacher}, batch {args.batch}, {args.points} points/sample, {args.threads} thread(s)")
    print(f"{'scatter_max':20s} {'min s':>7s} {'median s':>9s}")
    for name, t in times.items():
        print(f"{name:20s} {min(t[1:]):7.3f} {statistics.median(t[1:]):9.3f}")
    a, b = (statistics.median(t[1:]) for t in times.values())
    print(f"recording / no-grad (median): {b / a:.2f}x")


if __name__ == "__main__":
    main()
