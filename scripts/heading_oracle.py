"""Score a result file as is and with every reversed heading turned the right way round (an oracle):
the NDS a detector loses to telling objects' fronts from their backs.

    python scripts/heading_oracle.py RUN/eval_epoch8/results.json --dataroot runs/demo/data-small --out DIR

Writes DIR/turned.json and DIR/{as_is,turned}/metrics.json and prints both headline lines.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from distillbev.eval.heading_oracle import turn_headings_to_gt
from distillbev.eval.nuscenes_eval import evaluate, load_nuscenes
from distillbev.eval.results import load_results, write_results

KEYS = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="nuScenes result JSON")
    ap.add_argument("--dataroot", type=Path, required=True)
    ap.add_argument("--version", default="v1.0-synthetic")
    ap.add_argument("--split", default="synth_val")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    nusc = load_nuscenes(args.dataroot, args.version)
    results = load_results(args.results)
    turned, n_matched, n_turned = turn_headings_to_gt(nusc, results)
    write_results(turned, args.out / "turned.json")
    print(f"{n_turned} of {n_matched} matched predictions turned by pi")
    for name, path in (("as is", args.results), ("turned", args.out / "turned.json")):
        m = evaluate(
            args.dataroot, args.version, args.split, path, args.out / name.replace(" ", "_"), nusc=nusc
        )
        print(f"{name:7s} " + "  ".join(f"{k} {m[k]:.4f}" for k in KEYS))


if __name__ == "__main__":
    main()
