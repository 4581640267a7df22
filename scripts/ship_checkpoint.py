"""Copy a finished training checkpoint into ``checkpoints/`` as shipped weights, with its provenance.

    .venv/bin/python scripts/ship_checkpoint.py RUN/checkpoint.pt --name centerpoint_small \
        --command "distillbev train configs/teacher/centerpoint_pillar.yaml --set threads=1" \
        --world runs/demo/data-small --world-seed 0 --minutes 77

The shipped file keeps the weights, the resolved config, its hash, the commit and the final metrics,
and drops the optimizer, scheduler and RNG state (only needed to resume). ``<name>.json`` beside it
records the command, the world's config and seed, the commit, the metrics and the file's sha256
(``tests/test_shipped.py`` checks that the file loads strictly and matches its record).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

from distillbev.paths import ROOT
from distillbev.train.checkpoint import read_checkpoint

HEADLINE = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--name", required=True, help="file stem under checkpoints/")
    ap.add_argument("--command", required=True, help="the command that trained it")
    ap.add_argument("--world", type=Path, required=True, help="the dataroot it was trained and scored on")
    ap.add_argument("--world-seed", type=int, required=True)
    ap.add_argument("--minutes", type=float, default=None, help="wall-clock training time")
    args = ap.parse_args()
    blob = read_checkpoint(args.checkpoint)
    if blob["epoch"] < blob["config"]["optim"]["epochs"]:
        raise SystemExit(f"{args.checkpoint} is not finished (epoch {blob['epoch']})")
    for key in ("optimizer", "scheduler", "scaler", "rng"):
        blob[key] = None
    out = ROOT / "checkpoints" / f"{args.name}.pt"
    out.parent.mkdir(exist_ok=True)
    torch.save(blob, out)
    import yaml

    world_cfg = args.world / "world_config.yaml"
    text = world_cfg.read_text()
    record = {
        "file": out.name,
        "kind": blob["kind"],
        "command": args.command,
        "git_sha": blob["git_sha"],
        "config_hash": blob["config_hash"],
        "epochs": blob["epoch"],
        "steps": blob["step"],
        "train_minutes": args.minutes,
        "world": {
            "seed": args.world_seed,
            "config": yaml.safe_load(text),
            "config_sha256": hashlib.sha256(text.encode()).hexdigest(),
        },
        "metrics": {k: round(float(blob["metrics"][k]), 4) for k in HEADLINE},
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }
    (out.with_suffix(".json")).write_text(json.dumps(record, indent=1) + "\n")
    print(f"{out} ({out.stat().st_size / 2**20:.1f} MB), {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
