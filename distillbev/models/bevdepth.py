"""BEVDepth / BEVDepth4D: BEVDet + a camera-aware depth net supervised by LiDAR depth (docs/method.md,
Depth supervision).

Depth net: context = 1x1 conv; depth branch = 1x1 conv to ``mid`` gated channel-wise by
``sigmoid(Linear(BN1d(camera vector)))``, ``ResNetForBEVDet`` blocks, a 3x3 conv (a grid_sample
modulated deformable conv with ``deform=True``, else a plain conv, a deviation from the reference's
DCNv2) + BN, 1x1 conv to ``D`` logits. Depth targets and loss are below; the loss normalisation is the
reference's mean over all ``B*N*D*h*w`` elements by default.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from distillbev.data.batch import Batch
from distillbev.models.bev_encoder import ResNetForBEVDet
from distillbev.models.bevdet import BEVDet
from distillbev.models.lss import CameraGeometry, DepthBins

#: Length of the camera vector: K (9), post_rot (9), post_tran (3), R (9), t (3).
CAMERA_VECTOR_DIM = 33


def camera_vector(cams: CameraGeometry) -> torch.Tensor:
    """``(B*N, 33)``: K, post_rot, post_tran, R, t per camera (R, t include the BEV augmentation)."""
    b, n = cams.intrinsics.shape[:2]
    parts = [
        cams.intrinsics.reshape(b, n, 9),
        cams.post_rot.reshape(b, n, 9),
        cams.post_tran.reshape(b, n, 3),
        cams.cam2lidar[..., :3, :3].reshape(b, n, 9),
        cams.cam2lidar[..., :3, 3],
    ]
    return torch.cat(parts, -1).flatten(0, 1).float()


class ModulatedDeformConv3x3(nn.Module):
    """DCNv2 (3x3, one deform group) by ``grid_sample``: offsets and masks from a zero-initialised 3x3
    conv; the input is sampled bilinearly (zeros outside) at the 9 shifted taps, weighted by
    ``sigmoid(mask)`` and contracted with the kernel. Offset channels ``2k, 2k+1`` = (dy, dx) of tap ``k``
    (row-major over the 3x3 window), as in mmcv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.offset_mask = nn.Conv2d(in_channels, 27, 3, padding=1)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C_in, H, W) -> (B, C_out, H, W)."""
        b, c, h, w = x.shape
        om = self.offset_mask(x)  # (B, 27, H, W)
        dy, dx, mask = om[:, 0:18:2], om[:, 1:18:2], torch.sigmoid(om[:, 18:])  # (B, 9, H, W) each
        k = torch.arange(-1, 2, device=x.device, dtype=x.dtype)
        ky, kx = torch.meshgrid(k, k, indexing="ij")  # (3, 3)
        rows = torch.arange(h, device=x.device, dtype=x.dtype)[None, None, :, None]
        cols = torch.arange(w, device=x.device, dtype=x.dtype)[None, None, None, :]
        py = rows + ky.reshape(1, 9, 1, 1) + dy  # (B, 9, H, W) sampling row
        px = cols + kx.reshape(1, 9, 1, 1) + dx
        pos = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], -1)  # align_corners=False
        sampled = F.grid_sample(
            x, pos.reshape(b, 9 * h, w, 2), mode="bilinear", padding_mode="zeros", align_corners=False
        ).view(b, c, 9, h, w)
        sampled = sampled * mask[:, None]
        out = torch.einsum("bckhw,ock->bohw", sampled, self.weight.reshape(self.weight.shape[0], c, 9))
        return out + self.bias[None, :, None, None]


class CameraAwareDepthNet(nn.Module):
    """BEVDepth's depth net (``ViewTransformerLSSBEVDepth``), same interface as ``lss.DepthNet``."""

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        num_bins: int,
        context_channels: int,
        num_blocks: int = 3,
        deform: bool = False,
    ) -> None:
        super().__init__()
        self.context = nn.Conv2d(in_channels, context_channels, 1)
        self.camera_bn = nn.BatchNorm1d(CAMERA_VECTOR_DIM)
        self.camera_gate = nn.Linear(CAMERA_VECTOR_DIM, mid_channels)
        self.reduce = nn.Conv2d(in_channels, mid_channels, 1)
        self.blocks = ResNetForBEVDet(mid_channels, (mid_channels,), (1,), (num_blocks,))
        conv = (
            ModulatedDeformConv3x3(mid_channels, mid_channels)
            if deform
            else nn.Conv2d(mid_channels, mid_channels, 3, padding=1)
        )
        self.dcn = nn.Sequential(conv, nn.BatchNorm2d(mid_channels))
        self.depth = nn.Conv2d(mid_channels, num_bins, 1)

    def forward(self, x: torch.Tensor, cams: CameraGeometry) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B*N, C_in, h, w) -> depth logits ``(B*N, D, h, w)``, context ``(B*N, C, h, w)``."""
        gate = torch.sigmoid(self.camera_gate(self.camera_bn(camera_vector(cams))))  # (B*N, mid)
        d = self.reduce(x) * gate[:, :, None, None].to(x.dtype)
        d = self.dcn(self.blocks(d)[-1])
        return self.depth(d), self.context(x)


def depth_targets(depth: torch.Tensor, stride: int, bins: DepthBins) -> torch.Tensor:
    """Per feature cell the minimum LiDAR depth in ``[d_min, d_max)``; 0 = no return.

    ``depth`` (B, N, H, W) per augmented pixel (0 = none) -> ``(B*N, H/stride, W/stride)``.
    """
    b, n, h, w = depth.shape
    if h % stride or w % stride:
        raise ValueError(f"depth map {(h, w)} is not divisible by the feature stride {stride}")
    d = depth.reshape(b * n, h // stride, stride, w // stride, stride).float()
    valid = (d >= bins.d_min) & (d < bins.d_max)
    d = torch.where(valid, d, torch.full_like(d, float("inf"))).amin(dim=(2, 4))  # (B*N, h, w)
    return torch.where(torch.isinf(d), torch.zeros_like(d), d)


def depth_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    bins: DepthBins,
    norm: Literal["all", "valid"] = "all",
    prob: Literal["sigmoid", "softmax"] = "sigmoid",
) -> torch.Tensor:
    """Binary cross-entropy of per-bin probabilities (B*N, D, h, w) against one-hot target bins.

    ``prob="sigmoid"``: each bin's ``sigmoid(logit)``, independent of the others (BEVDet's reference);
    ``"softmax"``: the softmax over bins, i.e. the distribution the lift uses (Megvii's BEVDepth). Target
    bin = ``floor((d - d_min) / d_step)``; only cells with a return (d > 0) contribute. ``norm="all"``:
    divided by all ``B*N*D*h*w`` elements, masked ones included (the reference); ``"valid"``: divided by
    ``D x`` the number of cells with a return.
    """
    num_bins = logits.shape[1]
    valid = targets > 0  # (B*N, h, w)
    onehot = F.one_hot(bins.bin_of(targets), num_bins).permute(0, 3, 1, 2).float()  # (B*N, D, h, w)
    match prob:
        case "sigmoid":
            bce = F.binary_cross_entropy_with_logits(logits.float(), onehot, reduction="none")
        case "softmax":
            log_p = F.log_softmax(logits.float(), dim=1)
            log_not_p = torch.log1p(-log_p.exp().clamp(max=1 - 1e-6))
            bce = -(onehot * log_p + (1 - onehot) * log_not_p)
        case _:
            raise ValueError(f"depth_loss_prob: unknown probability {prob!r} (sigmoid or softmax)")
    bce = bce * valid[:, None]
    match norm:
        case "all":
            return bce.sum() / bce.numel()
        case "valid":
            return bce.sum() / (valid.sum().clamp(min=1) * num_bins)
    raise ValueError(f"depth_loss_norm: unknown normalisation {norm!r}")


class BEVDepth(BEVDet):
    """BEVDepth, or BEVDepth4D with ``cfg.temporal``: BEVDet + camera-aware depth net + depth loss."""

    supervise_depth = True

    def loss(
        self, batch: Batch, taps: dict[str, torch.Tensor], preds: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """BEVDet's losses and "depth" = depth_loss_weight x depth BCE (current frame)."""
        losses = super().loss(batch, taps, preds)
        targets = depth_targets(batch.depth, self.cfg.image_stride, self.bins)
        losses["depth"] = self.cfg.depth_loss_weight * depth_loss(
            taps["depth_logits"], targets, self.bins, self.cfg.depth_loss_norm, self.cfg.depth_loss_prob
        )
        return losses
