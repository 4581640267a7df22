"""Time and size of ``distillbev make-data`` for a preset.

    python benchmarks/make_data.py --preset small [--seed 0]

Prints wall time, samples, seconds per sample and the size on disk.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from distillbev.config import load_config
from distillbev.data.synthetic.config import WorldConfig
from distillbev.data.synthetic.generate import generate_world

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small", choices=("smoke", "small", "medium"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--keep", type=Path, default=None, help="keep the world here instead of a temporary folder"
    )
    args = ap.parse_args()
    cfg = load_config(WorldConfig, [ROOT / "configs" / "data" / f"{args.preset}.yaml"])
    tmp = Path(tempfile.mkdtemp(prefix="bench_world_"))
    out = args.keep or tmp / "world"
    start = time.perf_counter()
    summary = generate_world(cfg, out, seed=args.seed)
    seconds = time.perf_counter() - start
    print(f"preset            {args.preset}")
    print(f"scenes x samples  {cfg.num_scenes} x {cfg.samples_per_scene} = {summary['samples']}")
    print(
        f"images            6 x {cfg.image_width}x{cfg.image_height}, LiDAR 32 x {cfg.lidar_azimuth_steps}, "
        f"{cfg.sweeps_per_keyframe} sweeps/key frame, workers {cfg.workers}"
    )
    print(f"wall time         {seconds:.1f} s ({seconds / 60:.2f} min)")
    print(f"per sample        {seconds / summary['samples'] * 1000:.0f} ms")
    print(
        f"size on disk      {summary['megabytes']:.1f} MB "
        f"({summary['megabytes'] / summary['samples']:.2f} MB/sample)"
    )
    print(f"annotations       {summary['annotations']}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
