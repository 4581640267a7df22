"""The image encoder's pretraining network and its checkpoint (docs/pretraining.md).

``ImagePretrainNet`` is a student's image backbone + neck (the same modules, built from the same
``StudentConfig``) with three dense heads on the neck's feature map: LiDAR depth bins, class occupancy
from instance masks and projected box-centre heatmaps, and optionally a fourth: the image-plane
heading (``pretrain.heading_weight``, ``distillbev.models.image_heading``). Only the backbone and
neck are saved; a student loads them through ``student.image_pretrained`` (``load_image_encoder``),
checked against its own architecture, the way torchvision ImageNet weights load at full scale.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distillbev.layers.fpn import FPNForBEVDet
from distillbev.layers.resnet import ResNet
from distillbev.models.image_aux import HEATMAP_BIAS, NUM_CLASSES, DenseHead
from distillbev.models.image_heading import HEADING_CHANNELS
from distillbev.models.student_config import StudentConfig
from distillbev.paths import ROOT

FORMAT = "distillbev-image-encoder-v1"


def encoder_arch(cfg: StudentConfig) -> dict[str, Any]:
    """The ``StudentConfig`` fields that fix the backbone's and neck's parameter shapes."""
    keys = ("backbone", "tiny_stem_width", "tiny_widths", "tiny_blocks", "image_stride", "neck_channels")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items() if k in keys}


class ImagePretrainNet(nn.Module):
    """Backbone + neck + depth / occupancy / centre heads, all at the neck's stride."""

    def __init__(
        self,
        cfg: StudentConfig,
        backbone: ResNet,
        neck: FPNForBEVDet,
        mid_channels: int = 64,
        heading: bool = False,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        self.neck = neck
        c = cfg.neck_channels
        self.depth = DenseHead(c, mid_channels, cfg.bins().num_bins)
        self.occupancy = DenseHead(c, mid_channels, NUM_CLASSES)
        self.center = DenseHead(c, mid_channels, NUM_CLASSES, bias=HEATMAP_BIAS)
        self.heading = DenseHead(c, mid_channels, HEADING_CHANNELS) if heading else None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images`` (M, 3, H, W) -> logits ``depth`` (M, D, h, w), ``occupancy`` and ``center``
        (M, K, h, w), and with the heading head ``heading`` (M, 2, h, w) as (sin, cos)."""
        x = self.neck(self.backbone(images))
        out = {"depth": self.depth(x), "occupancy": self.occupancy(x), "center": self.center(x)}
        if self.heading is not None:
            out["heading"] = self.heading(x)
        return out


def save_image_encoder(path: Path, net: ImagePretrainNet, provenance: dict[str, Any]) -> None:
    """Atomically write the backbone + neck weights, the architecture and where they came from."""
    from distillbev.io import atomic_path

    blob = {
        "format": FORMAT,
        "arch": encoder_arch(net.cfg),
        "backbone": net.backbone.state_dict(),
        "neck": net.neck.state_dict(),
        "provenance": provenance,
    }
    with atomic_path(Path(path)) as tmp:
        torch.save(blob, tmp)


def read_image_encoder(path: str | Path) -> dict[str, Any]:
    """The checkpoint blob; clear errors for a missing file or another kind of checkpoint."""
    path = Path(path)
    if not path.is_file() and not path.is_absolute() and (ROOT / path).is_file():
        path = ROOT / path  # a preset's relative path (checkpoints/...) from outside the repository
    if not path.is_file():
        raise FileNotFoundError(f"image encoder checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a corrupt file
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(
            f"{path}: not an image encoder checkpoint of `distillbev pretrain` (format {found!r})"
        )
    return blob


def load_image_encoder(path: str | Path, backbone: ResNet, neck: FPNForBEVDet, cfg: StudentConfig) -> dict:
    """Load pretrained backbone + neck weights into a student's modules, strictly; returns the
    checkpoint's provenance. A checkpoint of another architecture is refused naming the differing keys."""
    blob = read_image_encoder(path)
    want = encoder_arch(cfg)
    diff = {k: (blob["arch"].get(k), v) for k, v in want.items() if blob["arch"].get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a} vs student {b}" for k, (a, b) in diff.items())
        raise ValueError(f"{path}: image encoder of another architecture ({detail})")
    for name, module in (("backbone", backbone), ("neck", neck)):
        try:
            module.load_state_dict(blob[name], strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: {name} weights do not fit the student ({e})") from None
    return blob["provenance"]
