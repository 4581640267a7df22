"""End to end: the reader's augmented cameras, its LiDAR depth targets and the LSS geometry agree.

Lifting every pixel that has a LiDAR return at its target depth (a one-hot depth distribution) and
splatting it onto the BEV grid must land on the cells where the (identically augmented) key-frame
LiDAR points are. This ties image augmentation (post_rot/post_tran), BEV augmentation (folded into
cam2lidar), depth-target projection and the LSS lift together on real synthetic-world samples.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillbev.data.collate import collate
from distillbev.data.config import ImageAugConfig, ReaderConfig
from distillbev.data.nuscenes import NuScenesDataset
from distillbev.models.lss import CameraGeometry, DepthBins, LSSViewTransformer
from distillbev.structures import BEVGrid

GRID = BEVGrid(-51.2, 51.2, -51.2, 51.2, 0.8)
BINS = DepthBins(1.0, 61.0, 0.25)


def _occupancy(points: np.ndarray) -> torch.Tensor:
    ix = np.floor((points[:, 0] - GRID.x_min) / GRID.cell).astype(int)
    iy = np.floor((points[:, 1] - GRID.y_min) / GRID.cell).astype(int)
    ny, nx = GRID.shape
    keep = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    occ = torch.zeros(ny, nx, dtype=torch.bool)
    occ[iy[keep], ix[keep]] = True
    return occ


@pytest.mark.parametrize("train", [False, True])
def test_lifted_lidar_depth_lands_on_the_lidar_points(smoke_world, train):
    cfg = ReaderConfig(
        num_sweeps=1, load_prev=False, image=ImageAugConfig(final_size=(64, 176), rotate_deg=5.4)
    )
    ds = NuScenesDataset(
        smoke_world.dataroot, smoke_world.version, smoke_world.train_split, cfg, train=train, seed=3
    )
    samples = [ds[i] for i in range(2)]
    batch = collate(samples)
    b, n, h, w = batch.depth.shape
    vt = LSSViewTransformer((h, w), (h, w), BINS, GRID, z_range=(-1.0, 10.0), cell_centers=True)
    d = batch.depth
    valid = (d > BINS.d_min) & (d < BINS.d_max - BINS.d_step)
    bin_idx = BINS.bin_of(d.clamp(min=BINS.d_min)).clamp(0, BINS.num_bins - 1)
    onehot = torch.zeros(b, n, BINS.num_bins, h, w)
    onehot.scatter_(2, bin_idx[:, :, None], valid[:, :, None].float())
    context = valid[:, :, None].float()
    bev = vt(onehot, context, CameraGeometry.from_batch(batch))[
        :, 0
    ]  # (B, G_y, G_x): lifted returns per cell
    assert float(bev.sum()) > 500, "too few LiDAR returns in the images to test anything"
    for k, s in enumerate(samples):
        # above-ground structure only (the LiDAR is ~1.8 m up): lifted at z > -1.0, points at z > -1.3
        pts = s.points[(s.points[:, 4] == 0) & (s.points[:, 2] > -1.3)]
        occ = _occupancy(pts)
        # a one-cell tolerance: depth bins are 0.25 m and the pixel centre is not the LiDAR point
        near = torch.nn.functional.max_pool2d(occ[None, None].float(), 3, 1, 1)[0, 0] > 0
        mass = bev[k]
        on = float(mass[near].sum()) / float(mass.sum())
        assert on > 0.97, f"sample {k}: only {on:.3f} of the lifted depth lands near LiDAR points"
        # not trivially true: mirrored (y -> -y), the same mass mostly misses the structure
        mirrored = float(mass.flip(0)[near].sum()) / float(mass.sum())
        assert mirrored < 0.5 * on
