"""``StudentConfig``: the camera students' architecture (BEVDet, BEVDet4D, BEVDepth, BEVDepth4D, BEVFormer).

Defaults are the tiny CPU student; each field's comment gives the full-scale R50 value
(docs/architectures.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from distillbev.models.heads import HeadConfig
from distillbev.models.lss import DepthBins
from distillbev.structures import POINT_RANGE, BEVGrid

#: Stride of the image feature map the depth net and the frustum live on.
IMAGE_FEATURE_STRIDE = 16
#: The x-y part of the detection range (``structures.POINT_RANGE``).
_XY_RANGE = (POINT_RANGE[0], POINT_RANGE[1], POINT_RANGE[3], POINT_RANGE[4])


def _tiny_head() -> HeadConfig:
    return HeadConfig(share_channels=32, head_channels=32)


@dataclass(frozen=True)
class StudentConfig:
    """A camera student. Lengths in metres, image sizes in pixels, BEV sizes in cells."""

    # plain 1x1 depth net / camera-aware one + depth loss / BEVFormer's attention encoder (docs/bevformer.md)
    kind: Literal["bevdet", "bevdepth", "bevformer"] = "bevdet"
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
    image_pretrained: str = ""  # `distillbev pretrain` checkpoint: backbone + neck (docs/pretraining.md)
    image_aux_weight: float = 0.0  # > 0: auxiliary per-camera heatmap of projected GT centres (camera-legal)
    # > 0: image-plane heading head (lift-splat students): (sin, cos) of the angle to the viewing ray at
    # projected GT centres, turned into BEV headings that take 2 of the context_channels (image_heading.py)
    image_heading_weight: float = 0.0
    image_heading_region: Literal["centre", "box"] = "centre"  # heading targets: centre cell or 2D extent
    grad_checkpoint: bool = False  # recompute image-backbone stages in backward; full true
    neck_channels: int = 64  # FPNForBEVDet output (at image_stride); full 512
    depth_bins: tuple[float, float, float] = (1.0, 61.0, 1.875)  # (min, max, step) m: D = 32; full (1, 60, 1)
    context_channels: int = 32  # LSS context channels C; full 64
    depth_bin_centers: bool = False  # depth candidates at bin centres (False: lower edges, the reference)
    frustum_cell_centers: bool = False  # False: pixels by linspace over the image (reference)
    bev_range: tuple[float, float, float, float] = _XY_RANGE  # x_min, y_min, x_max, y_max
    bev_cell: float = 1.6  # LSS grid = tap H = head grid cell; full 0.8
    bev_z_range: tuple[float, float] = (-10.0, 10.0)  # the single LSS height bin; BEVFormer: pillar span
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
    depth_loss_norm: Literal["all", "valid"] = "all"  # mean over all elements (reference) / valid cells
    depth_loss_prob: Literal["sigmoid", "softmax"] = "sigmoid"  # per-bin sigmoid (reference) / lift's softmax
    head: HeadConfig = field(default_factory=_tiny_head)  # share/head channels 32; full 64
    # BEVFormer only: queries on a grid query_stride x coarser than the head grid (bev_cell), their BEV
    # upsampled to it and read by the BEV encoder + FPN_LSS above (taps B0, B1, B2, H).
    query_stride: int = 2  # query cell / bev_cell; full 1 (128 x 128 queries at 0.8 m)
    embed_dims: int = 64  # width of the queries, image tokens and attentions; full 256
    encoder_layers: int = 2  # layers of TSA -> norm -> SCA -> norm -> FFN (2 x embed_dims) -> norm; full 6
    attn_heads: int = 4  # heads of both attentions; full 8
    tsa_points: int = 4  # temporal self-attention: sampling points per head and frame; full 4
    sca_points: int = 8  # spatial cross-attention: points per head, split over the heights; full 8
    pillar_points: int = 4  # reference heights per query, spread over bev_z_range; full 4
    attn_dropout: float = 0.0  # dropout after both attentions and in the FFN; full 0.1

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
        if self.pretrained and self.image_pretrained:
            raise ValueError("set one of student.pretrained (torchvision) and student.image_pretrained")
        if self.image_aux_weight < 0:
            raise ValueError(f"image_aux_weight must be >= 0, got {self.image_aux_weight}")
        if self.image_heading_weight < 0:
            raise ValueError(f"image_heading_weight must be >= 0, got {self.image_heading_weight}")
        if self.image_heading_weight > 0 and self.kind == "bevformer":
            raise ValueError("image_heading_weight applies to the lift-splat students (bevdet, bevdepth)")
        if self.image_heading_weight > 0 and self.context_channels <= 2:
            raise ValueError(
                f"image_heading_weight takes 2 of the context_channels, which must then be > 2, "
                f"got {self.context_channels}"
            )
        if self.backbone == "tiny" and self.pretrained:
            raise ValueError(
                "pretrained weights need a torchvision backbone (resnet18/34/50/101), not 'tiny'"
            )
        if self.kind == "bevformer":
            self._check_bevformer()
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

    def _check_bevformer(self) -> None:
        counts = ("query_stride", "embed_dims", "encoder_layers", "attn_heads", "tsa_points", "sca_points")
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pillar_points < 1 or self.sca_points % self.pillar_points:
            raise ValueError(
                f"sca_points {self.sca_points} must split evenly over pillar_points {self.pillar_points}"
            )
        if self.embed_dims % (2 * self.attn_heads):
            raise ValueError(
                f"embed_dims {self.embed_dims} must be a multiple of 2 x attn_heads {self.attn_heads}"
            )
        grid = self.bev_grid()
        if grid.height % self.query_stride or grid.width % self.query_stride:
            raise ValueError(
                f"the {grid.shape} BEV grid is not divisible by query_stride {self.query_stride}"
            )
        if not 0 <= self.attn_dropout < 1:
            raise ValueError(f"attn_dropout must be in [0, 1), got {self.attn_dropout}")

    def query_grid(self) -> BEVGrid:
        """BEVFormer: the grid of the BEV queries (``query_stride`` x the head grid's cell)."""
        return self.bev_grid().scaled(self.query_stride)

    def bins(self) -> DepthBins:
        """The depth candidates."""
        return DepthBins(*self.depth_bins, centers=self.depth_bin_centers)

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
