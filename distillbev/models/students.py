"""``build_student``: every camera student from a ``StudentConfig`` (docs/architectures.md, Camera students).

``student.kind`` picks the family: ``bevdet`` (plain 1x1 depth net) and ``bevdepth`` (camera-aware depth
net + depth loss) are lift-splat students (``models/bevdet.py``, ``models/bevdepth.py``), ``bevformer``
the attention student (``models/bevformer.py``); ``student.temporal`` adds the previous frame. All of
them share the image encoder (``models/image_encoder.py``) and the BEV neck and heads built here.
"""

from __future__ import annotations

from torch import nn

from distillbev.layers.fpn import FPN_LSS
from distillbev.models.base import BEVDetector
from distillbev.models.bev_encoder import ResNetForBEVDet
from distillbev.models.bevdepth import BEVDepth, CameraAwareDepthNet
from distillbev.models.bevdet import BEVDet
from distillbev.models.bevformer import BEVFormer, BEVFormerEncoder
from distillbev.models.heads import CenterHead
from distillbev.models.image_aux import HEATMAP_BIAS, NUM_CLASSES, DenseHead
from distillbev.models.image_encoder import build_image_encoder
from distillbev.models.image_heading import HEADING_CHANNELS
from distillbev.models.lss import DepthNet, LSSViewTransformer
from distillbev.models.student_config import StudentConfig


def build_student(cfg: StudentConfig) -> BEVDetector:
    """BEVDet / BEVDet4D / BEVDepth / BEVDepth4D / BEVFormer as ``cfg.kind`` and ``cfg.temporal`` say."""
    match cfg.kind:
        case "bevdet" | "bevdepth":
            return build_lift_splat(cfg)
        case "bevformer":
            return build_bevformer(cfg)
    raise ValueError(f"StudentConfig.kind: unknown student {cfg.kind!r}")


def bev_neck_and_heads(cfg: StudentConfig) -> tuple[FPN_LSS, CenterHead, DenseHead | None]:
    """What follows the BEV encoder in every student: ``FPN_LSS`` (tap H), the ``CenterHead`` on the head
    grid, and the auxiliary image heatmap head when ``cfg.image_aux_weight > 0`` (else None)."""
    fpn = FPN_LSS(
        (cfg.bev_channels[0], cfg.bev_channels[2]),
        cfg.fpn_channels,
        cfg.fpn_mid_channels,
        final_scale=cfg.bev_strides[0],
        extra_norm_act=cfg.extra_norm_act,
    )
    head = CenterHead(cfg.fpn_channels, cfg.bev_grid(), cfg.head)
    aux = None
    if cfg.image_aux_weight > 0:
        aux = DenseHead(cfg.neck_channels, cfg.head.head_channels, NUM_CLASSES, bias=HEATMAP_BIAS)
    return fpn, head, aux


def build_lift_splat(cfg: StudentConfig) -> BEVDet:
    """BEVDet(4D) (``kind: bevdet``) or BEVDepth(4D) (``kind: bevdepth``)."""
    backbone, neck = build_image_encoder(cfg)
    bins, c = cfg.bins(), cfg.context_channels
    heading = None
    c_net = c  # context channels the depth net makes; the heading map takes the last 2 when on
    if cfg.image_heading_weight > 0:
        heading = DenseHead(cfg.neck_channels, cfg.head.head_channels, HEADING_CHANNELS)
        c_net = c - HEADING_CHANNELS
    model_cls: type[BEVDet]
    if cfg.kind == "bevdepth":
        depth_net: nn.Module = CameraAwareDepthNet(
            cfg.neck_channels,
            cfg.depthnet_mid_channels,
            bins.num_bins,
            c_net,
            cfg.depthnet_blocks,
            cfg.depth_dcn,
        )
        model_cls = BEVDepth
    else:
        depth_net = DepthNet(cfg.neck_channels, bins.num_bins, c_net)
        model_cls = BEVDet
    view_transformer = LSSViewTransformer(
        cfg.image_size,
        cfg.feature_size(),
        bins,
        cfg.bev_grid(),
        cfg.bev_z_range,
        cfg.frustum_cell_centers,
        cfg.pool_method,
    )
    pre_process = ResNetForBEVDet(c, (c,), (1,), (cfg.preprocess_blocks,)) if cfg.temporal else None
    bev_in = 2 * c if cfg.temporal else c  # 4D: current and warped previous BEV, concatenated
    bev_encoder = ResNetForBEVDet(bev_in, cfg.bev_channels, cfg.bev_strides, cfg.bev_blocks)
    fpn, head, aux = bev_neck_and_heads(cfg)
    return model_cls(
        cfg, backbone, neck, depth_net, view_transformer, bev_encoder, fpn, head, pre_process, aux, heading
    )


def build_bevformer(cfg: StudentConfig) -> BEVFormer:
    """BEVFormer (``cfg.temporal``: with the previous frame)."""
    backbone, neck = build_image_encoder(cfg)
    encoder = BEVFormerEncoder(cfg, cfg.query_grid())
    bev_encoder = ResNetForBEVDet(cfg.embed_dims, cfg.bev_channels, cfg.bev_strides, cfg.bev_blocks)
    fpn, head, aux = bev_neck_and_heads(cfg)
    return BEVFormer(cfg, backbone, neck, encoder, bev_encoder, fpn, head, aux)
