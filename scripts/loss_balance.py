"""Print how each run's training loss splits into task terms (heatmap, box, depth, ...) and imitation
terms (``kd_*``), averaged over equal phases of training, as a Markdown table.

    python scripts/loss_balance.py runs/repro8/bevdepth-none/seed0 runs/repro8/bevdepth-centerpoint/seed0
    python scripts/loss_balance.py base=RUN_A distilled=RUN_B --phases 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

from distillbev.experiments.loss_balance import loss_balance_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders (with log.jsonl), optionally NAME=FOLDER")
    ap.add_argument("--phases", type=int, default=4, help="equal parts of training to average over")
    args = ap.parse_args()
    runs = {}
    for item in args.runs:
        name, _, folder = item.rpartition("=")
        runs[name or folder] = Path(folder)
    print(loss_balance_table(runs, args.phases), end="")


if __name__ == "__main__":
    main()
