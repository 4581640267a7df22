"""MVP teacher: the CenterPoint network fed with 17-column points, painted by 2D instance masks and with
virtual points (Yin et al. 2021; docs/architectures.md, MVP teacher).

The points are data preparation: the reader appends them (``distillbev.data.virtual_points``, which
also holds ``MVPConfig`` and the point layout); this module holds the network.
"""

from __future__ import annotations

from dataclasses import replace

from distillbev.data.virtual_points import MVP_POINT_FEATURES, MVPConfig
from distillbev.models.centerpoint import CenterPoint, CenterPointConfig, build_centerpoint

__all__ = ["MVP_POINT_FEATURES", "MVPConfig", "build_mvp"]


def build_mvp(cfg: CenterPointConfig, mvp: MVPConfig | None = None) -> CenterPoint:
    """The MVP teacher: the CenterPoint network of ``cfg`` with 17 point features (``mvp`` configures
    only the point generation, done by the data reader)."""
    return build_centerpoint(replace(cfg, point_features=MVP_POINT_FEATURES))
