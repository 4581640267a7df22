"""Which way a split's vehicles face, by lateral offset from the ego (moving and static): the traffic's
handedness, which mirrored BEV augmentation hides from a detector.

    python scripts/traffic_side.py --dataroot runs/demo/data-small --split synth_val --classes car truck

Prints one line per class and motion: ``[x_low]n:share`` per 2 m lateral bin (x to the ego's right),
share = the part heading ahead (+y).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from distillbev.data.index import load_index
from distillbev.data.traffic_side import side_table
from distillbev.eval.motion import MOVING_SPEED


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataroot", type=Path, required=True)
    ap.add_argument("--version", default="v1.0-synthetic")
    ap.add_argument("--split", default="synth_val")
    ap.add_argument("--classes", nargs="+", default=["car", "truck", "pedestrian"])
    ap.add_argument("--min-count", type=int, default=5, help="leave out bins with fewer boxes")
    args = ap.parse_args()
    index = load_index(args.dataroot, args.version, args.split, max_sweeps=0)
    for name in args.classes:
        for motion, lo, hi in (("moving", MOVING_SPEED, None), ("static", None, MOVING_SPEED)):
            rows = side_table(
                index.boxes, index.labels, name, min_speed=lo, max_speed=hi, min_count=args.min_count
            )
            n = sum(r.n for r in rows)
            cells = " ".join(f"[{r.x_low:+.0f}]{r.n}:{r.ahead:.2f}" for r in rows)
            print(f"{name} {motion} (n {n}): {cells}")


if __name__ == "__main__":
    main()
