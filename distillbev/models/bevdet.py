"""Lift-splat camera students: BEVDet and BEVDet4D (architectures.md §5, §6, §7), and the student builder.

images -> ResNet (strides 16 and 32, or 8 and 16) -> FPNForBEVDet (image_stride) -> depth net
(depth + context) -> LSS lift-splat onto the BEV grid -> [4D: pre-process, previous frame warped,
detached, concat]
-> ResNetForBEVDet (taps B0, B1, B2) -> FPN_LSS (tap H, on the LSS grid) -> CenterHead.

BEVDepth (``distillbev.models.bevdepth``) only swaps the depth net and adds the depth loss. The head
predicts velocity in m/s for every student (no displacement mode). Defaults of ``StudentConfig`` are
the tiny CPU student "S-A" (cpu-budget.md §5); each field's comment gives the full-scale R50 value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from distillbev.data.batch import Batch
from distillbev.layers.fpn import FPN_LSS, FPNForBEVDet
from distillbev.layers.resnet import ResNet, load_torchvision_weights, resnet, tiny_resnet
from distillbev.models.base import BEVDetector
from distillbev.models.bev_encoder import ResNetForBEVDet
from distillbev.models.heads import CenterHead, HeadConfig
from distillbev.models.lss import (
    CameraGeometry,
    DepthBins,
    DepthNet,
    LSSViewTransformer,
    prev_to_current,
    warp_bev,
)
from distillbev.structures import BEVGrid

#: Stride of the image feature map the depth net and the frustum live on.
IMAGE_FEATURE_STRIDE = 16


def _tiny_head() -> HeadConfig:
    return HeadConfig(share_channels=32, head_channels=32)


@dataclass(frozen=True)
class StudentConfig:
    """A lift-splat camera student. Lengths in metres, image sizes in pixels, BEV sizes in cells."""

    kind: Literal["bevdet", "bevdepth"] = "bevdet"  # plain 1x1 depth net / camera-aware one + depth loss
    temporal: bool = False  # two frames (4D): previous key frame warped, detached, concatenated
    image_size: tuple[int, int] = (64, 176)  # network input (H, W), multiples of 16; full (256, 704)
    # stride of the lifted image features: 16 (BEVDet: ResNet stages 3+4 -> neck) or 8 (stages 2+3);
    # 8 quadruples the frustum rays, which small (CPU) input images need to localise objects at all
    image_stride: Literal[8, 16] = IMAGE_FEATURE_STRIDE
    backbone: Literal["tiny", "resnet18", "resnet34", "resnet50", "resnet101"] = "tiny"  # full resnet50
    tiny_stem_width: int = 16  # tiny backbone: stem 7x7/2 conv width
    tiny_widths: tuple[int, int, int, int] = (16, 32, 64, 128)  # tiny backbone: stage widths
    tiny_blocks: tuple[int, int, int, int] = (1, 1, 1, 1)  # tiny backbone: BasicBlocks per stage
    pretrained: str = ""  # local torchvision ResNet state_dict file ("" = random init); not for "tiny"
    grad_checkpoint: bool = False  # recompute image-backbone stages in backward; full true
    neck_channels: int = 64  # FPNForBEVDet output (at image_stride); full 512
    depth_bins: tuple[float, float, float] = (1.0, 61.0, 1.875)  # (min, max, step) m: D = 32; full (1, 60, 1)
    context_channels: int = 32  # LSS context channels C; full 64
    frustum_cell_centers: bool = False  # quirk §15.4: False = linspace over the whole image (reference)
    bev_range: tuple[float, float, float, float] = (-51.2, -51.2, 51.2, 51.2)  # x_min, y_min, x_max, y_max
    bev_cell: float = 1.6  # LSS grid = tap H = head grid cell; full 0.8
    bev_z_range: tuple[float, float] = (-10.0, 10.0)  # the single LSS height bin
    pool_method: Literal["index_add", "segment"] = "index_add"  # BEV pooling (ops/bev_pool.py)
    preprocess_blocks: int = 2  # 4D: BasicBlocks at C channels before alignment
    bev_channels: tuple[int, int, int] = (32, 64, 128)  # encoder stages = taps B0-B2; full (128, 256, 512)
    bev_strides: tuple[int, int, int] = (1, 2, 2)  # per stage; full (2, 2, 2)
    bev_blocks: tuple[int, int, int] = (2, 2, 2)  # BasicBlocks per stage
    fpn_channels: int = 64  # FPN_LSS output = tap H; full 256
    fpn_mid_channels: int = 128  # FPN_LSS inner width; full 512
    extra_norm_act: bool = True  # BN + ReLU after FPN_LSS (DistillBEV's setting)
    depthnet_mid_channels: int = 32  # BEVDepth depth-net width; full 256
    depthnet_blocks: int = 3  # BEVDepth: BasicBlocks in the depth branch
    depth_dcn: bool = False  # BEVDepth: grid_sample DCNv2 (reference) instead of a plain 3x3 conv
    depth_loss_weight: float = 100.0  # BEVDepth
    depth_loss_norm: Literal["all", "valid"] = "all"  # §15.5: mean over all elements / cells with a return
    depth_loss_prob: Literal["sigmoid", "softmax"] = "sigmoid"  # §15.5: per-bin sigmoid / the lift's softmax
    head: HeadConfig = field(default_factory=_tiny_head)  # share/head channels 32; full 64

    def __post_init__(self) -> None:
        h, w = self.image_size
        if self.image_stride not in (8, 16):
            raise ValueError(f"image_stride must be 8 or 16, got {self.image_stride}")
        if h <= 0 or w <= 0 or h % IMAGE_FEATURE_STRIDE or w % IMAGE_FEATURE_STRIDE:
            raise ValueError(
                f"image_size {self.image_size} must be positive multiples of {IMAGE_FEATURE_STRIDE}"
            )
        self.bins()  # validates depth_bins
        x_min, y_min, x_max, y_max = self.bev_range
        if x_max <= x_min or y_max <= y_min or self.bev_cell <= 0:
            raise ValueError(
                f"bev_range {self.bev_range} must be (x_min, y_min, x_max, y_max) with min < max"
            )
        grid = self.bev_grid()
        for name, size in (("x", (x_max - x_min) / self.bev_cell), ("y", (y_max - y_min) / self.bev_cell)):
            if abs(size - round(size)) > 1e-6:
                raise ValueError(
                    f"bev_range along {name} is not a whole number of bev_cell {self.bev_cell} cells"
                )
        total = self.bev_strides[0] * self.bev_strides[1] * self.bev_strides[2]
        if min(self.bev_strides) < 1 or grid.height % total or grid.width % total:
            raise ValueError(f"the {grid.shape} BEV grid is not divisible by bev_strides {self.bev_strides}")
        if self.bev_z_range[1] <= self.bev_z_range[0]:
            raise ValueError(f"bev_z_range {self.bev_z_range} must be (z_min, z_max) with z_min < z_max")
        if self.backbone == "tiny" and self.pretrained:
            raise ValueError(
                "pretrained weights need a torchvision backbone (resnet18/34/50/101), not 'tiny'"
            )
        positive = {
            "tiny_stem_width": self.tiny_stem_width,
            "neck_channels": self.neck_channels,
            "context_channels": self.context_channels,
            "preprocess_blocks": self.preprocess_blocks,
            "fpn_channels": self.fpn_channels,
            "fpn_mid_channels": self.fpn_mid_channels,
            "depthnet_mid_channels": self.depthnet_mid_channels,
            "depthnet_blocks": self.depthnet_blocks,
        }
        for name, v in positive.items():
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        for name, vs in (
            ("tiny_widths", self.tiny_widths),
            ("tiny_blocks", self.tiny_blocks),
            ("bev_channels", self.bev_channels),
            ("bev_blocks", self.bev_blocks),
        ):
            if min(vs) < 1:
                raise ValueError(f"{name} must all be >= 1, got {vs}")

    def bins(self) -> DepthBins:
        """The depth candidates."""
        return DepthBins(*self.depth_bins)

    def bev_grid(self) -> BEVGrid:
        """The LSS grid, which is also the grid of tap H and of the head."""
        x_min, y_min, x_max, y_max = self.bev_range
        return BEVGrid(x_min, x_max, y_min, y_max, self.bev_cell)

    def feature_size(self) -> tuple[int, int]:
        """(h, w) of the lifted image feature map (stride ``image_stride``)."""
        return self.image_size[0] // self.image_stride, self.image_size[1] // self.image_stride

    def backbone_stages(self) -> tuple[int, int]:
        """The two ResNet stages the image neck fuses (stride 8 and 16, or 16 and 32)."""
        return (1, 2) if self.image_stride == 8 else (2, 3)


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

    def lift_splat(self, images: torch.Tensor, cams: CameraGeometry) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` (B, N, 3, H, W) -> BEV ``(B, C, G_y, G_x)`` and depth logits ``(B*N, D, h, w)``."""
        b, n = images.shape[:2]
        if tuple(images.shape[-2:]) != self.cfg.image_size:
            raise ValueError(
                f"images are {tuple(images.shape[-2:])} but the student's image_size is {self.cfg.image_size}"
            )
        x = self.neck(self.backbone(images.flatten(0, 1)))  # (B*N, C_neck, h, w)
        depth_logits, context = self.depth_net(x, cams)  # (B*N, D, h, w), (B*N, C, h, w)
        depth = depth_logits.float().softmax(1)  # (B*N, D, h, w), fp32 under autocast
        bev = self.view_transformer(
            depth.unflatten(0, (b, n)), context.unflatten(0, (b, n)).float(), cams
        )  # (B, C, G_y, G_x)
        return bev, depth_logits

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
            prev, _ = self.lift_splat(batch.prev_images, cams)
            prev = self.pre_process(prev)[-1]
            prev = warp_bev(prev, prev_to_current(batch.cam2lidar, batch.prev_cam2lidar), self.grid)
        return torch.cat([cur, prev.detach()], 1)  # (B, 2C, G_y, G_x)

    def forward_bev(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Taps ``B0, B1, B2`` (BEV encoder stages), ``H`` (FPN_LSS, on the LSS grid) and, for BEVDepth,
        ``depth_logits`` (B*N, D, h, w) of the current frame."""
        cams = CameraGeometry.from_batch(batch)
        bev, depth_logits = self.lift_splat(batch.images, cams)
        if self.cfg.temporal:
            bev = self.temporal_fusion(bev, batch, cams)
        stages = self.bev_encoder(bev)
        taps = {f"B{i}": x for i, x in enumerate(stages)}
        taps["H"] = self.fpn(stages[0], stages[2])
        if self.supervise_depth:
            taps["depth_logits"] = depth_logits
        return taps


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


def build_student(cfg: StudentConfig) -> BEVDet:
    """BEVDet / BEVDet4D / BEVDepth / BEVDepth4D as ``cfg.kind`` and ``cfg.temporal`` say."""
    backbone = build_image_backbone(cfg)
    fine, coarse = cfg.backbone_stages()
    neck = FPNForBEVDet((backbone.out_channels[fine], backbone.out_channels[coarse]), cfg.neck_channels)
    bins, c = cfg.bins(), cfg.context_channels
    model_cls: type[BEVDet]
    match cfg.kind:
        case "bevdet":
            depth_net: nn.Module = DepthNet(cfg.neck_channels, bins.num_bins, c)
            model_cls = BEVDet
        case "bevdepth":
            from distillbev.models.bevdepth import BEVDepth, CameraAwareDepthNet

            depth_net = CameraAwareDepthNet(
                cfg.neck_channels,
                cfg.depthnet_mid_channels,
                bins.num_bins,
                c,
                cfg.depthnet_blocks,
                cfg.depth_dcn,
            )
            model_cls = BEVDepth
        case _:
            raise ValueError(f"StudentConfig.kind: unknown student {cfg.kind!r}")
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
    bev_encoder = ResNetForBEVDet(
        2 * c if cfg.temporal else c, cfg.bev_channels, cfg.bev_strides, cfg.bev_blocks
    )
    fpn = FPN_LSS(
        (cfg.bev_channels[0], cfg.bev_channels[2]),
        cfg.fpn_channels,
        cfg.fpn_mid_channels,
        final_scale=cfg.bev_strides[0],
        extra_norm_act=cfg.extra_norm_act,
    )
    head = CenterHead(cfg.fpn_channels, cfg.bev_grid(), cfg.head)
    return model_cls(cfg, backbone, neck, depth_net, view_transformer, bev_encoder, fpn, head, pre_process)
