"""Lift-splat camera students: BEVDet and BEVDet4D (docs/architectures.md, Camera students).

images -> ResNet (strides 16 and 32, or 8 and 16) -> FPNForBEVDet (image_stride) -> depth net
(depth + context) -> LSS lift-splat onto the BEV grid -> [4D: pre-process, previous frame warped,
detached, concat]
-> ResNetForBEVDet (taps B0, B1, B2) -> FPN_LSS (tap H, on the LSS grid) -> CenterHead.

BEVDepth (``distillbev.models.bevdepth``) only swaps the depth net and adds the depth loss. The head
predicts velocity in m/s for every student (no displacement mode). The modules are built by
``distillbev.models.students.build_student`` from a ``StudentConfig``.
"""

from __future__ import annotations

import torch
from torch import nn

from distillbev.data.batch import Batch
from distillbev.layers.fpn import FPN_LSS, FPNForBEVDet
from distillbev.layers.resnet import ResNet
from distillbev.models.base import BEVDetector
from distillbev.models.bev_encoder import ResNetForBEVDet
from distillbev.models.heads import CenterHead
from distillbev.models.image_aux import DenseHead, image_aux_loss
from distillbev.models.image_encoder import build_image_backbone, build_image_encoder
from distillbev.models.image_heading import (
    handedness,
    heading_loss,
    heading_targets,
    ray_azimuths,
    to_bev_heading,
)
from distillbev.models.lss import CameraGeometry, LSSViewTransformer
from distillbev.models.student_config import IMAGE_FEATURE_STRIDE, StudentConfig
from distillbev.models.temporal import prev_to_current, warp_bev

# Re-exported: the student config and the image encoder builders lived here.
__all__ = ["IMAGE_FEATURE_STRIDE", "BEVDet", "StudentConfig", "build_image_backbone", "build_image_encoder"]


class BEVDet(BEVDetector):
    """BEVDet, or BEVDet4D with ``cfg.temporal``; ``forward_bev`` -> taps B0, B1, B2, H."""

    #: BEVDepth sets this: expose ``depth_logits`` and add the depth loss.
    supervise_depth = False

    def __init__(
        self,
        cfg: StudentConfig,
        backbone: ResNet,
        neck: FPNForBEVDet,
        depth_net: nn.Module,
        view_transformer: LSSViewTransformer,
        bev_encoder: ResNetForBEVDet,
        fpn: FPN_LSS,
        head: CenterHead,
        pre_process: ResNetForBEVDet | None = None,
        image_aux: DenseHead | None = None,
        image_heading: DenseHead | None = None,
    ) -> None:
        super().__init__()
        if cfg.temporal and pre_process is None:
            raise ValueError("a temporal student needs a pre_process module")
        self.cfg, self.grid, self.bins = cfg, cfg.bev_grid(), cfg.bins()
        self.backbone = backbone
        self.neck = neck
        self.depth_net = depth_net
        self.view_transformer = view_transformer
        self.pre_process = pre_process
        self.bev_encoder = bev_encoder
        self.fpn = fpn
        self.head = head
        self.image_aux = image_aux  # centre heatmaps on the image features (student.image_aux_weight)
        self.image_heading = image_heading  # image-plane heading -> 2 context channels (image_heading.py)

    def lift_splat(
        self, images: torch.Tensor, cams: CameraGeometry
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``images`` (B, N, 3, H, W) -> BEV ``(B, C, G_y, G_x)``, depth logits ``(B*N, D, h, w)``, the
        image features ``(B*N, C_neck, h, w)`` and, with the heading head, its image-plane (sin, cos)
        ``(B*N, 2, h, w)`` (else None), whose BEV-frame turn fills the last 2 context channels."""
        b, n = images.shape[:2]
        if tuple(images.shape[-2:]) != self.cfg.image_size:
            raise ValueError(
                f"images are {tuple(images.shape[-2:])} but the student's image_size is {self.cfg.image_size}"
            )
        x = self.neck(self.backbone(images.flatten(0, 1)))  # (B*N, C_neck, h, w)
        depth_logits, context = self.depth_net(x, cams)  # (B*N, D, h, w), (B*N, C, h, w)
        alpha = None
        if self.image_heading is not None:
            alpha = self.image_heading(x)  # (B*N, 2, h, w) image-plane (sin, cos)
            rays = ray_azimuths(cams, self.cfg.image_size, tuple(x.shape[-2:]), self.cfg.frustum_cell_centers)
            bev_heading = to_bev_heading(alpha.float(), rays, handedness(cams).flatten())
            context = torch.cat([context, bev_heading.to(context.dtype)], 1)  # (B*N, C, h, w)
        depth = depth_logits.float().softmax(1)  # (B*N, D, h, w), fp32 under autocast
        bev = self.view_transformer(
            depth.unflatten(0, (b, n)), context.unflatten(0, (b, n)).float(), cams
        )  # (B, C, G_y, G_x)
        return bev, depth_logits, x, alpha

    def temporal_fusion(self, bev: torch.Tensor, batch: Batch, cams: CameraGeometry) -> torch.Tensor:
        """4D: pre-process both frames, warp the previous one into the current ego frame, concat.

        The previous frame is lifted with the current extrinsics (its BEV lives in the previous LiDAR
        frame), warped with ``prev_cam2lidar @ inv(cam2lidar)`` and computed without gradient (detach).
        """
        if batch.prev_images is None or batch.prev_cam2lidar is None:
            raise ValueError(
                "a temporal student needs batch.prev_images and batch.prev_cam2lidar (load_prev)"
            )
        cur = self.pre_process(bev)[-1]  # (B, C, G_y, G_x)
        with torch.no_grad():
            prev = self.lift_splat(batch.prev_images, cams)[0]
            prev = self.pre_process(prev)[-1]
            prev = warp_bev(prev, prev_to_current(batch.cam2lidar, batch.prev_cam2lidar), self.grid)
        return torch.cat([cur, prev.detach()], 1)  # (B, 2C, G_y, G_x)

    def forward_bev(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Taps ``B0, B1, B2`` (BEV encoder stages), ``H`` (FPN_LSS, on the LSS grid) and, for BEVDepth,
        ``depth_logits`` (B*N, D, h, w) of the current frame."""
        cams = CameraGeometry.from_batch(batch)
        bev, depth_logits, feats, alpha = self.lift_splat(batch.images, cams)
        if self.cfg.temporal:
            bev = self.temporal_fusion(bev, batch, cams)
        stages = self.bev_encoder(bev)
        taps = {f"B{i}": x for i, x in enumerate(stages)}
        taps["H"] = self.fpn(stages[0], stages[2])
        if self.supervise_depth:
            taps["depth_logits"] = depth_logits
        if self.image_aux is not None:
            taps["image_heatmap"] = self.image_aux(feats)
        if alpha is not None:
            taps["image_heading"] = alpha
        return taps

    def loss(
        self, batch: Batch, taps: dict[str, torch.Tensor], preds: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """The head's {"heatmap", "box"}, plus "image_heatmap" (image_aux_weight x focal loss of the
        projected GT centres) when the auxiliary image head is on."""
        losses = self.head.loss(preds, batch.gt_boxes, batch.gt_labels)
        c = self.cfg
        losses |= image_aux_loss(batch, taps, c.image_size, c.image_stride, c.image_aux_weight)
        if "image_heading" in taps:
            target, mask = heading_targets(batch, c.image_size, c.image_stride, c.image_heading_region)
            heading = heading_loss(taps["image_heading"], target, mask)
            losses["image_heading"] = c.image_heading_weight * heading
        return losses
