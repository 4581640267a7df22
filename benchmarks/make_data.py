"""Time and size of ``distillbev make-data`` for a preset.

    nice python benchmarks/make_data.py --preset small [--seed 0] [--set workers=1 ...] [--keep DIR]

Prints the wall time, samples, seconds per sample and the size on disk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from distillbev.config import load_config
from distillbev.data.synthetic.config import WorldConfig
from distillbev.data.synthetic.generate import generate_world
from distillbev.paths import ROOT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small", choices=("smoke", "small", "medium"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], help="WorldConfig override key=value"
    )
    ap.add_argument(
        "--keep", type=Path, default=None, help="keep the world here instead of a temporary folder"
    )
    args = ap.parse_args()
    cfg = load_config(WorldConfig, [ROOT / "configs" / "data" / f"{args.preset}.yaml"], args.overrides)
    tmp = Path(tempfile.mkdtemp(prefix="bench_world_"))
    out = args.keep or tmp / "world"
    start = time.perf_counter()
    summary = generate_world(cfg, out, seed=args.seed, progress=True)
    seconds = time.perf_counter() - start
    samples = summary["samples"]
    print(f"preset            {args.preset} (seed {args.seed}, {os.cpu_count()} CPUs, workers {cfg.workers})")
    print(f"scenes x samples  {cfg.num_scenes} x {cfg.samples_per_scene} = {samples}")
    print(
        f"sensors           6 x {cfg.image_width}x{cfg.image_height} images, LiDAR {cfg.lidar_beams} x "
        f"{cfg.lidar_azimuth_steps}, {cfg.sweeps_per_keyframe} sweeps/key frame"
    )
    print(f"wall time         {seconds:.1f} s ({seconds / 60:.2f} min)")
    print(f"per sample        {seconds / samples:.3f} s")
    print(f"size on disk      {summary['megabytes']:.1f} MB ({summary['megabytes'] / samples:.2f} MB/sample)")
    print(f"annotations       {summary['annotations']} ({summary['annotations'] / samples:.1f}/sample)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
