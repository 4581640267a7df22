"""Compare the task-loss and imitation-loss gradients of a distilled student, per parameter group
(norms, ratio, cosine), on training batches of the run's own data (distillbev/experiments/grad_conflict.py).

    python scripts/grad_conflict.py RUN/checkpoint.pt checkpoints/centerpoint_small.pt --batches 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from distillbev.experiments.grad_conflict import figures_table, gradient_conflict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("student", type=Path, help="a distilled run's checkpoint.pt (student + adapters)")
    ap.add_argument("teacher", type=Path, help="the teacher checkpoint it was distilled from")
    ap.add_argument("--batches", type=int, default=8, help="training batches to average over")
    ap.add_argument("--seed", type=int, default=0, help="seed of the batch order and augmentation")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(figures_table(gradient_conflict(args.student, args.teacher, args.batches, args.seed)), end="")


if __name__ == "__main__":
    main()
