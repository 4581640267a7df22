"""Points -> pillars in pure PyTorch (the teachers' input, docs/architectures.md): dynamic and hard (capped).

A pillar grid covers ``point_range = (x_min, y_min, z_min, x_max, y_max, z_max)`` with square pillars
of ``pillar_size`` metres and one pillar along z. A point belongs to pillar ``(iy, ix)`` with
``ix = floor((x - x_min) / pillar_size)`` and ``iy`` likewise; points outside the range (including
z outside ``[z_min, z_max)``) are dropped. Pillar ``(b, iy, ix)`` has the flat cell id
``b * H * W + iy * W + ix`` (``[..., y, x]`` layout, as every BEV tensor in distillbev).

- ``dynamic_voxelize``: every in-range point with its flat cell id (the dense-canvas strategy: the
  reductions over a pillar are ``index_add_`` / ``scatter_reduce_`` over cell ids).
- ``hard_voxelize``: the capped variant of PointPillars: pillars in order of their first point, at most
  ``max_pillars`` of them, at most ``max_points`` points each (later points dropped, in input order).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distillbev.structures import BEVGrid


@dataclass(frozen=True)
class PillarGrid:
    """Geometry of a single-layer pillar grid."""

    point_range: tuple[float, ...]  # x_min, y_min, z_min, x_max, y_max, z_max (m)
    pillar_size: float  # pillar edge (m)

    def __post_init__(self) -> None:
        if len(self.point_range) != 6:
            raise ValueError(
                f"point_range needs 6 values (x_min, y_min, z_min, x_max, y_max, z_max), "
                f"got {self.point_range}"
            )
        x0, y0, z0, x1, y1, z1 = self.point_range
        if not (x1 > x0 and y1 > y0 and z1 > z0):
            raise ValueError(f"point_range {self.point_range} must have min < max on every axis")
        if self.pillar_size <= 0:
            raise ValueError(f"pillar_size must be > 0, got {self.pillar_size}")
        for lo, hi, axis in ((x0, x1, "x"), (y0, y1, "y")):
            n = (hi - lo) / self.pillar_size
            if abs(n - round(n)) > 1e-6:
                raise ValueError(
                    f"the {axis} extent {hi - lo} m is not a multiple of pillar_size {self.pillar_size}"
                )

    @property
    def width(self) -> int:
        """Number of pillars along x (canvas columns)."""
        return int(round((self.point_range[3] - self.point_range[0]) / self.pillar_size))

    @property
    def height(self) -> int:
        """Number of pillars along y (canvas rows)."""
        return int(round((self.point_range[4] - self.point_range[1]) / self.pillar_size))

    @property
    def bev(self) -> BEVGrid:
        """The canvas as a BEVGrid."""
        x0, y0, _, x1, y1, _ = self.point_range
        return BEVGrid(x0, x1, y0, y1, self.pillar_size)

    def pillar_coords(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(iy, ix, inside)`` of points ``(N, >=3)``: integer pillar indices and the in-range mask."""
        x0, y0, z0, x1, y1, z1 = self.point_range
        ix = torch.floor((xyz[:, 0] - x0) / self.pillar_size).long()
        iy = torch.floor((xyz[:, 1] - y0) / self.pillar_size).long()
        inside = (
            (ix >= 0)
            & (ix < self.width)
            & (iy >= 0)
            & (iy < self.height)
            & (xyz[:, 2] >= z0)
            & (xyz[:, 2] < z1)
        )
        return iy, ix, inside

    def pillar_centers(self, iy: torch.Tensor, ix: torch.Tensor) -> torch.Tensor:
        """Metric ``(x, y)`` centres ``(N, 2)`` of pillars ``(iy, ix)``."""
        cx = self.point_range[0] + (ix.to(torch.float32) + 0.5) * self.pillar_size
        cy = self.point_range[1] + (iy.to(torch.float32) + 0.5) * self.pillar_size
        return torch.stack([cx, cy], -1)


@dataclass
class DynamicPillars:
    """In-range points of a batch with their pillar (no caps)."""

    points: torch.Tensor  # (N, C) in-range points of all samples, sample by sample, input order kept
    coords: torch.Tensor  # (N, 3) long: batch index, iy, ix
    cell: torch.Tensor  # (N,) long flat cell id b*H*W + iy*W + ix
    batch_size: int


@dataclass
class HardPillars:
    """Capped pillars of a batch, PointPillars layout."""

    voxels: torch.Tensor  # (P, M, C) the pillar's points in input order, zero padding after num_points
    num_points: torch.Tensor  # (P,) long, 1..M
    coords: torch.Tensor  # (P, 3) long: batch index, iy, ix
    batch_size: int


def dynamic_voxelize(points: list[torch.Tensor], grid: PillarGrid) -> DynamicPillars:
    """Assign every in-range point of every sample ``(P_b, C)`` to its pillar."""
    if not points:
        raise ValueError("dynamic_voxelize needs at least one sample")
    pts, coords = [], []
    for b, p in enumerate(points):
        iy, ix, inside = grid.pillar_coords(p)
        pts.append(p[inside])
        coords.append(torch.stack([torch.full_like(iy[inside], b), iy[inside], ix[inside]], -1))
    all_pts = torch.cat(pts)  # (N, C)
    all_coords = torch.cat(coords)  # (N, 3)
    cell = (all_coords[:, 0] * grid.height + all_coords[:, 1]) * grid.width + all_coords[:, 2]
    return DynamicPillars(all_pts, all_coords, cell, len(points))


def _hard_voxelize_one(
    points: torch.Tensor, grid: PillarGrid, max_points: int, max_pillars: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sample: ``(voxels (P, M, C), num_points (P,), coords (P, 2) iy, ix)``."""
    iy, ix, inside = grid.pillar_coords(points)
    points, iy, ix = points[inside], iy[inside], ix[inside]
    n, c = points.shape
    dev = points.device
    if n == 0:
        return (
            points.new_zeros((0, max_points, c)),
            torch.zeros(0, dtype=torch.long, device=dev),
            iy.new_zeros((0, 2)),
        )
    cell = iy * grid.width + ix  # (N,)
    uniq, inverse = torch.unique(cell, return_inverse=True)  # (U,), (N,)
    pos = torch.arange(n, device=dev)
    first = torch.full((len(uniq),), n, dtype=torch.long, device=dev).scatter_reduce_(0, inverse, pos, "amin")
    order = torch.argsort(first)  # pillars in order of their first point
    rank_of_pillar = torch.empty_like(order)
    rank_of_pillar[order] = torch.arange(len(order), device=dev)
    pillar = rank_of_pillar[inverse]  # (N,) pillar index in first-occurrence order
    # Rank of each point inside its pillar: position after a stable sort minus the start of its run.
    sorted_pillar, perm = torch.sort(pillar, stable=True)
    counts = torch.bincount(sorted_pillar, minlength=len(uniq))
    starts = torch.cumsum(counts, 0) - counts
    rank_sorted = torch.arange(n, device=dev) - starts[sorted_pillar]
    rank = torch.empty_like(rank_sorted)
    rank[perm] = rank_sorted
    keep = (rank < max_points) & (pillar < max_pillars)
    num_pillars = min(len(uniq), max_pillars)
    voxels = points.new_zeros((num_pillars, max_points, c))
    voxels[pillar[keep], rank[keep]] = points[keep]
    num_points = counts[:num_pillars].clamp(max=max_points)  # counts are in first-occurrence order
    pillar_cells = uniq[order][:num_pillars]
    coords = torch.stack([pillar_cells // grid.width, pillar_cells % grid.width], -1)
    return voxels, num_points, coords


def hard_voxelize(
    points: list[torch.Tensor], grid: PillarGrid, max_points: int, max_pillars: int
) -> HardPillars:
    """Capped pillars of every sample ``(P_b, C)``: at most ``max_pillars`` per sample (the first ones
    to receive a point), each with at most ``max_points`` points (the first ones, in input order)."""
    if max_points < 1 or max_pillars < 1:
        raise ValueError(f"max_points ({max_points}) and max_pillars ({max_pillars}) must be >= 1")
    if not points:
        raise ValueError("hard_voxelize needs at least one sample")
    voxels, num, coords = [], [], []
    for b, p in enumerate(points):
        v, n, c = _hard_voxelize_one(p, grid, max_points, max_pillars)
        voxels.append(v)
        num.append(n)
        coords.append(torch.cat([torch.full_like(c[:, :1], b), c], -1))
    return HardPillars(torch.cat(voxels), torch.cat(num), torch.cat(coords), len(points))


def scatter_mean(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of ``values (N, D)`` per group ``index (N,)`` in ``[0, size)`` -> ``(size, D)`` (0 for empty)."""
    sums = values.new_zeros((size, values.shape[1])).index_add_(0, index, values)
    counts = values.new_zeros(size).index_add_(0, index, values.new_ones(len(index)))
    return sums / counts.clamp(min=1).unsqueeze(1)
