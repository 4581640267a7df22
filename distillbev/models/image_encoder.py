"""The camera students' image encoder: a ResNet backbone and the ``FPNForBEVDet`` neck.

Shared by every camera student (the lift-splat ones and BEVFormer) and by image pretraining, which
trains exactly these two modules (docs/pretraining.md).
"""

from __future__ import annotations

from distillbev.layers.fpn import FPNForBEVDet
from distillbev.layers.resnet import ResNet, load_torchvision_weights, resnet, tiny_resnet
from distillbev.models.image_pretrain import load_image_encoder
from distillbev.models.student_config import StudentConfig


def build_image_encoder(cfg: StudentConfig) -> tuple[ResNet, FPNForBEVDet]:
    """The image backbone and neck; with ``cfg.image_pretrained``, loaded from a pretraining checkpoint."""
    backbone = build_image_backbone(cfg)
    fine, coarse = cfg.backbone_stages()
    neck = FPNForBEVDet((backbone.out_channels[fine], backbone.out_channels[coarse]), cfg.neck_channels)
    if cfg.image_pretrained:
        load_image_encoder(cfg.image_pretrained, backbone, neck, cfg)
    return backbone, neck


def build_image_backbone(cfg: StudentConfig) -> ResNet:
    """The image ResNet (outputs of ``cfg.backbone_stages()``), with local pretrained weights if given."""
    stages = cfg.backbone_stages()
    if cfg.backbone == "tiny":
        return tiny_resnet(
            cfg.tiny_stem_width, cfg.tiny_widths, cfg.tiny_blocks, stages, grad_checkpoint=cfg.grad_checkpoint
        )
    net = resnet(cfg.backbone, out_indices=stages, grad_checkpoint=cfg.grad_checkpoint)
    if cfg.pretrained:
        load_torchvision_weights(net, cfg.pretrained)
    return net
