"""The interface every teacher and student implements, and the detections they return.

``forward_bev(batch)`` returns the BEV taps by the paper's names (``"B0"``, ``"B1"``, ``"B2"``: the
three stages of the BEV encoder; ``"H"``: the pre-head map) and may add auxiliary entries (e.g.
``"depth_logits"`` for BEVDepth). ``forward_head(taps)`` runs the CenterHead (and adds ``"HS"``, the
head's shared map, to the taps); ``loss`` returns the
named training losses; ``predict`` decodes detections in the batch's (augmented) LiDAR frame.
Distillation never reaches into a model: it only reads the taps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from distillbev.data.batch import Batch

TAP_NAMES: tuple[str, ...] = ("B0", "B1", "B2", "H")


@dataclass
class Detections:
    """Decoded boxes of one sample, in its (augmented) key LiDAR frame."""

    boxes: torch.Tensor  # (K, 9) x, y, z, l, w, h, yaw, vx, vy
    scores: torch.Tensor  # (K,)
    labels: torch.Tensor  # (K,) long, index into CLASS_NAMES


class BEVDetector(nn.Module):
    """Base class of teachers and students (a plain nn.Module with a fixed set of methods)."""

    def forward_bev(self, batch: Batch) -> dict[str, torch.Tensor]:
        """BEV taps ``B0, B1, B2, H`` (each ``(B, C, H, W)``) plus auxiliary outputs."""
        raise NotImplementedError

    def forward_head(self, taps: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """CenterHead outputs per task group. Adds the head's shared map to ``taps`` as ``"HS"`` (the map
        every task branch reads; a distillation tap beside the paper's four, docs/method.md)."""
        if "HS" not in taps:
            taps["HS"] = self.head.shared_map(taps["H"])
        return self.head.forward_shared(taps["HS"])

    def loss(
        self, batch: Batch, taps: dict[str, torch.Tensor], preds: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Named training losses (detection, and depth for BEVDepth); their sum is the objective."""
        return self.head.loss(preds, batch.gt_boxes, batch.gt_labels)

    @torch.no_grad()
    def predict(self, batch: Batch) -> list[Detections]:
        """Decoded detections per sample."""
        taps = self.forward_bev(batch)
        return self.head.decode(self.forward_head(taps))

    def forward(self, batch: Batch) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
        """Taps and head outputs (used for ONNX export and DDP wrapping)."""
        taps = self.forward_bev(batch)
        return taps, self.forward_head(taps)
