"""Time the BEV pooling methods (``distillbev.ops.bev_pool``) forward and forward+backward.

Two scales on a nuScenes-like 6-camera rig: the tiny CPU student "S-A" (batch 8, 64x176 images,
feature 4x11, D = 32, C = 32, 64^2 grid at 1.6 m) and the full BEVDet-R50 setting (batch 1, 256x704,
feature 16x44, D = 59, C = 64, 128^2 grid at 0.8 m). Prints the median of ``--repeats`` runs per method,
the slower/faster ratio, and the cost of building the pooling triples (once per camera geometry).

    python benchmarks/bev_pool.py [--threads 1] [--repeats 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from distillbev.models.lss import CameraGeometry, DepthBins, create_frustum, frustum_to_lidar
from distillbev.ops.bev_pool import bev_pool, pool_index
from distillbev.structures import BEVGrid

SCALES = {
    # name: batch, image (H, W), feature (h, w), depth bins, context C, BEV cell (m)
    "tiny S-A": (8, (64, 176), (4, 11), DepthBins(1.0, 61.0, 1.875), 32, 1.6),
    "full R50": (1, (256, 704), (16, 44), DepthBins(1.0, 60.0, 1.0), 64, 0.8),
}
METHODS = ("index_add", "segment")


def rig(b: int, image_size: tuple[int, int]) -> CameraGeometry:
    """Six outward cameras (nuScenes yaws), f = 1266 px at 1600 px width, resized and bottom-cropped."""
    h, w = image_size
    r = w / 1600.0
    cam2lidar = []
    for yaw in (55.0, 0.0, -55.0, 110.0, 180.0, -110.0):
        c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
        m = torch.eye(4)
        m[:3, :3] = torch.tensor([[s, 0.0, c], [-c, 0.0, s], [0.0, -1.0, 0.0]])
        m[:3, 3] = torch.tensor([c, s, -0.3])
        cam2lidar.append(m)
    k = torch.tensor([[1266.0, 0.0, 800.0], [0.0, 1266.0, 450.0], [0.0, 0.0, 1.0]])
    return CameraGeometry(
        k.expand(b, 6, 3, 3).clone(),
        torch.stack(cam2lidar).expand(b, 6, 4, 4).clone(),
        torch.diag(torch.tensor([r, r, 1.0])).expand(b, 6, 3, 3).clone(),
        torch.tensor([0.0, -(900 * r - h), 0.0]).expand(b, 6, 3).clone(),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(fn, repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_scale(name: str, repeats: int, device: torch.device) -> None:
    """Print one table block for a scale."""
    b, image_size, feat_size, bins, c, cell = SCALES[name]
    grid = BEVGrid(-51.2, 51.2, -51.2, 51.2, cell)
    cams = CameraGeometry(*(t.to(device) for t in rig(b, image_size).tensors()))
    frustum = create_frustum(image_size, feat_size, bins).to(device)
    g = torch.Generator(device=device).manual_seed(0)
    h, w = feat_size
    depth = torch.randn(b, 6, bins.num_bins, h, w, generator=g, device=device).softmax(2)
    context = torch.randn(b, 6, h, w, c, generator=g, device=device)

    def build():
        return pool_index(frustum_to_lidar(frustum, cams), grid, (-10.0, 10.0))

    index = build()
    total = b * 6 * bins.num_bins * h * w
    print(
        f"\n{name}: B={b}, 6 cams, D={bins.num_bins}, {h}x{w} features, C={c}, grid {grid.shape[0]}^2; "
        f"{len(index.cell_index)}/{total} frustum points kept ({100 * len(index.cell_index) / total:.0f} %)"
    )
    print(f"  build triples (once per camera geometry): {median_ms(build, repeats, device):8.2f} ms")
    results = {}
    for method in METHODS:
        d, x = depth.clone().requires_grad_(True), context.clone().requires_grad_(True)
        upstream = torch.randn(b, c, *grid.shape, generator=g, device=device)

        def fwd(method=method, d=d, x=x):
            with torch.no_grad():
                bev_pool(d, x, index, method)

        def fwd_bwd(method=method, d=d, x=x, upstream=upstream):
            d.grad = x.grad = None
            (bev_pool(d, x, index, method) * upstream).sum().backward()

        results[method] = (median_ms(fwd, repeats, device), median_ms(fwd_bwd, repeats, device))
        print(f"  {method:10s} fwd {results[method][0]:8.2f} ms   fwd+bwd {results[method][1]:8.2f} ms")
    (f_a, fb_a), (f_b, fb_b) = results[METHODS[0]], results[METHODS[1]]
    print(f"  ratio {METHODS[1]}/{METHODS[0]}: fwd {f_b / f_a:.2f}x   fwd+bwd {fb_b / fb_a:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"BEV pooling, torch {torch.__version__}, device {device}, {args.threads} thread(s), "
        f"median of {args.repeats}"
    )
    for name in SCALES:
        bench_scale(name, args.repeats, device)


if __name__ == "__main__":
    main()
