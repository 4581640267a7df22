"""BEVFormer with a CenterHead: the attention student (docs/bevformer.md).

images -> ResNet + FPNForBEVDet (the other students' image encoder) -> image tokens (+ camera and level
embeddings) -> encoder of L layers over learned BEV queries on the query grid:
    TSA (aligned previous BEV | current queries) -> norm -> SCA (cameras the query's pillar hits) -> norm
    -> FFN -> norm
-> dense BEV (B, C, G_q, G_q) -> bilinear upsampling to the head grid -> ResNetForBEVDet (taps B0, B1,
B2) -> FPN_LSS (tap H) -> CenterHead.

The previous BEV (``student.temporal``) is the encoder run on the previous key frame without gradient
(with the current cameras: it lives in the previous LiDAR frame), warped into the current frame by the
ego motion like BEVDet4D's; where a sample has no previous frame the current queries are used twice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distillbev.data.batch import Batch
from distillbev.layers.fpn import FPN_LSS, FPNForBEVDet
from distillbev.layers.resnet import ResNet
from distillbev.models.base import BEVDetector
from distillbev.models.bev_encoder import ResNetForBEVDet
from distillbev.models.bevformer_attention import (
    SpatialCrossAttention,
    TemporalSelfAttention,
    pillar_heights,
    pillar_points,
    project_to_cameras,
)
from distillbev.models.heads import CenterHead
from distillbev.models.image_aux import DenseHead, image_aux_loss
from distillbev.models.lss import CameraGeometry
from distillbev.models.student_config import StudentConfig
from distillbev.models.temporal import align_previous
from distillbev.structures import CAMERA_NAMES, BEVGrid


class EncoderLayer(nn.Module):
    """TSA -> LayerNorm -> SCA -> LayerNorm -> FFN (residual) -> LayerNorm (BEVFormer's post-norm order)."""

    def __init__(self, cfg: StudentConfig, levels: int) -> None:
        super().__init__()
        c, p = cfg.embed_dims, cfg.attn_dropout
        self.tsa = TemporalSelfAttention(c, cfg.attn_heads, cfg.tsa_points, p)
        self.sca = SpatialCrossAttention(c, cfg.attn_heads, levels, cfg.sca_points, cfg.pillar_points, p)
        self.ffn = nn.Sequential(
            nn.Linear(c, 2 * c), nn.ReLU(inplace=True), nn.Dropout(p), nn.Linear(2 * c, c), nn.Dropout(p)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(c) for _ in range(3))

    def forward(
        self,
        query: torch.Tensor,
        pos: torch.Tensor,
        prev_bev: torch.Tensor | None,
        has_prev: torch.Tensor | None,
        reference_2d: torch.Tensor,
        shape: tuple[int, int],
        tokens: torch.Tensor,
        token_shapes: list[tuple[int, int]],
        reference_cam: torch.Tensor,
        hit: torch.Tensor,
    ) -> torch.Tensor:
        """``query`` (B, Q, C) -> (B, Q, C); the other inputs as in ``BEVFormerEncoder.forward``."""
        prev = query if prev_bev is None else prev_bev
        if prev_bev is not None and has_prev is not None:  # a scene start: this layer's queries twice
            prev = torch.where(has_prev[:, None, None], prev_bev.to(query.dtype), query)
        x = self.norms[0](self.tsa(query, pos, prev, reference_2d, shape))
        x = self.norms[1](self.sca(x, pos, tokens, token_shapes, reference_cam, hit))
        return self.norms[2](x + self.ffn(x))


class BEVFormerEncoder(nn.Module):
    """Learned BEV queries and positions on ``grid``, refined by ``cfg.encoder_layers`` layers."""

    def __init__(self, cfg: StudentConfig, grid: BEVGrid, levels: int = 1) -> None:
        super().__init__()
        c = cfg.embed_dims
        self.grid, self.image_size = grid, cfg.image_size
        h, w = grid.shape
        self.bev_queries = nn.Parameter(torch.randn(h * w, c))
        self.row_embed = nn.Parameter(torch.rand(h, c // 2))  # learned positions: (column | row) halves
        self.col_embed = nn.Parameter(torch.rand(w, c // 2))
        self.cams_embeds = nn.Parameter(torch.randn(len(CAMERA_NAMES), c))
        self.level_embeds = nn.Parameter(torch.randn(levels, c))
        self.layers = nn.ModuleList(EncoderLayer(cfg, levels) for _ in range(cfg.encoder_layers))
        ys, xs = torch.meshgrid(
            (torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij"
        )  # cell centres, normalised
        self.register_buffer("reference_2d", torch.stack([xs, ys], -1).reshape(h * w, 2), persistent=False)
        heights = pillar_heights(cfg.bev_z_range, cfg.pillar_points)
        self.register_buffer("pillars", pillar_points(grid, heights), persistent=False)  # (Q, D, 3)

    def positions(self) -> torch.Tensor:
        """``(Q, C)``: query ``i * W + j`` gets ``[col_embed[j] | row_embed[i]]``."""
        h, w = self.grid.shape
        col = self.col_embed[None].expand(h, w, -1)
        row = self.row_embed[:, None].expand(h, w, -1)
        return torch.cat([col, row], -1).reshape(h * w, -1)

    def forward(
        self,
        feats: list[torch.Tensor],
        cams: CameraGeometry,
        prev_bev: torch.Tensor | None = None,
        has_prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``feats``: image levels, each (B, N, C, h_l, w_l); ``prev_bev`` (B, Q, C) aligned previous BEV
        or None (the queries are used twice); ``has_prev`` (B,) bool -> BEV ``(B, C, G_y, G_x)``."""
        b, n = feats[0].shape[:2]
        if n > len(self.cams_embeds):
            raise ValueError(f"BEVFormer: {n} cameras, but camera embeddings for {len(self.cams_embeds)}")
        token_shapes = [tuple(f.shape[-2:]) for f in feats]
        tokens = torch.cat(
            [f.flatten(3).transpose(2, 3) + self.level_embeds[i] for i, f in enumerate(feats)], 2
        )  # (B, N, S, C)
        tokens = tokens + self.cams_embeds[:n, None]
        reference_cam, mask = project_to_cameras(self.pillars, cams, self.image_size)  # (B, N, Q, D, .)
        hit = mask.any(-1)  # (B, N, Q): the cameras a query's pillar projects into
        query = self.bev_queries[None].expand(b, -1, -1)
        pos = self.positions()
        for layer in self.layers:
            query = layer(
                query, pos, prev_bev, has_prev, self.reference_2d, self.grid.shape,
                tokens, token_shapes, reference_cam, hit,
            )  # fmt: skip
        h, w = self.grid.shape
        return query.transpose(1, 2).reshape(b, -1, h, w)


class BEVFormer(BEVDetector):
    """BEVFormer encoder + conv BEV neck + CenterHead; ``forward_bev`` -> taps B0, B1, B2, H."""

    def __init__(
        self,
        cfg: StudentConfig,
        backbone: ResNet,
        neck: FPNForBEVDet,
        encoder: BEVFormerEncoder,
        bev_encoder: ResNetForBEVDet,
        fpn: FPN_LSS,
        head: CenterHead,
        image_aux: DenseHead | None = None,
    ) -> None:
        super().__init__()
        self.cfg, self.grid, self.query_grid = cfg, cfg.bev_grid(), cfg.query_grid()
        self.backbone = backbone
        self.neck = neck
        c = cfg.embed_dims
        # image tokens at the attention width (BEVFormer's FPN already outputs it)
        self.input_proj = nn.Identity() if cfg.neck_channels == c else nn.Conv2d(cfg.neck_channels, c, 1)
        self.encoder = encoder
        self.bev_encoder = bev_encoder
        self.fpn = fpn
        self.head = head
        self.image_aux = image_aux  # centre heatmaps on the image features (student.image_aux_weight)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (B, N, 3, H, W) -> neck features ``(B*N, C_neck, h, w)``."""
        if tuple(images.shape[-2:]) != self.cfg.image_size:
            raise ValueError(
                f"images are {tuple(images.shape[-2:])} but the student's image_size is {self.cfg.image_size}"
            )
        return self.neck(self.backbone(images.flatten(0, 1)))

    def encode(
        self,
        images: torch.Tensor,
        cams: CameraGeometry,
        prev_bev: torch.Tensor | None = None,
        has_prev: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """BEV on the query grid ``(B, C, G_q, G_q)`` and the image features ``(B*N, C_neck, h, w)``."""
        b, n = images.shape[:2]
        feats = self.image_features(images)
        tokens = self.input_proj(feats)
        bev = self.encoder([tokens.unflatten(0, (b, n))], cams, prev_bev, has_prev)
        return bev, feats

    def previous_bev(self, batch: Batch, cams: CameraGeometry) -> torch.Tensor:
        """The previous key frame's BEV in the current frame, ``(B, Q, C)``, without gradient.

        Encoded with the current cameras (so it lives in the previous LiDAR frame) and without a frame
        before it, in eval mode (no dropout), as BEVFormer's history frames; then warped by the ego
        motion ``prev_cam2lidar @ inv(cam2lidar)`` (``align_previous``).
        """
        if batch.prev_images is None or batch.prev_cam2lidar is None:
            raise ValueError(
                "a temporal student needs batch.prev_images and batch.prev_cam2lidar (load_prev)"
            )
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            with torch.no_grad():
                prev, _ = self.encode(batch.prev_images, cams)
                prev = align_previous(prev, batch.cam2lidar, batch.prev_cam2lidar, self.query_grid)
        finally:
            self.encoder.train(was_training)
        return prev.flatten(2).transpose(1, 2)

    def forward_bev(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Taps ``B0, B1, B2`` (BEV encoder stages) and ``H`` (FPN_LSS, on the head grid)."""
        cams = CameraGeometry.from_batch(batch)
        prev = self.previous_bev(batch, cams) if self.cfg.temporal else None
        bev, feats = self.encode(batch.images, cams, prev, batch.has_prev if prev is not None else None)
        if self.cfg.query_stride > 1:  # query grid -> head grid, cell centres kept in place
            bev = F.interpolate(bev, size=self.grid.shape, mode="bilinear", align_corners=False)
        stages = self.bev_encoder(bev)
        taps = {f"B{i}": x for i, x in enumerate(stages)}
        taps["H"] = self.fpn(stages[0], stages[2])
        if self.image_aux is not None:
            taps["image_heatmap"] = self.image_aux(feats)
        return taps

    def loss(
        self, batch: Batch, taps: dict[str, torch.Tensor], preds: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """The head's {"heatmap", "box"}, plus "image_heatmap" when the auxiliary image head is on."""
        losses = self.head.loss(preds, batch.gt_boxes, batch.gt_labels)
        c = self.cfg
        losses |= image_aux_loss(batch, taps, c.image_size, c.image_stride, c.image_aux_weight)
        return losses
