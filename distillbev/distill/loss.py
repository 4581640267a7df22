"""``DistillLoss``: DistillBEV's feature-imitation loss over several BEV layers (docs/method.md, The loss).

Per distilled layer the student tap goes through its adapter to the teacher's channels and grid, and the
per-cell squared error against the (detached) teacher map is weighted by the region masks, the
adaptive scales and the spatial attention; the L1 attention-imitation term is added. The module
reads tensors only: it never imports model code, and the student never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from distillbev.distill.adapters import build_adapter
from distillbev.distill.attention import (
    attention_imitation_loss,
    build_attention_conv,
    channel_attention,
    combined_attention,
    spatial_attention,
)
from distillbev.distill.config import DistillConfig
from distillbev.distill.regions import background_mask, false_positive_mask, foreground_mask
from distillbev.distill.scaling import background_scale, false_positive_scale, foreground_scale
from distillbev.structures import BEVGrid


@dataclass
class LayerRegions:
    """The disjoint regions of one layer's map, each ``(B, H, W)``, and the per-cell scale."""

    fg: torch.Tensor  # foreground (1 or a Gaussian value inside GT boxes)
    box_index: torch.Tensor  # long, -1 outside every box
    fp: torch.Tensor  # false-positive region (zeros where FP is off)
    bg: torch.Tensor  # the rest
    scale: torch.Tensor  # 1/sqrt(n_k) in FG, 1/N_fp in FP, 1/N_bg in BG; ones when scaling is off


class DistillLoss(nn.Module):
    """DistillBEV's distillation terms; holds the per-layer adapters and attention convs.

    Args:
        cfg: the distillation settings.
        student_channels / teacher_channels: channels of each distilled tap.
        student_sizes / teacher_sizes: ``(H, W)`` of each tap; the teacher must be the same size or an
            integer factor finer (the adapter upsamples the student).
        grids: the ``BEVGrid`` of each teacher tap (all over the same metric range).
    """

    def __init__(
        self,
        cfg: DistillConfig,
        student_channels: dict[str, int],
        teacher_channels: dict[str, int],
        student_sizes: dict[str, tuple[int, int]],
        teacher_sizes: dict[str, tuple[int, int]],
        grids: dict[str, BEVGrid],
    ) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.grids: dict[str, BEVGrid] = {}
        adapters: dict[str, nn.Module] = {}
        convs: dict[str, nn.Module] = {}
        for layer in cfg.layers:
            for what, table in (
                ("student_channels", student_channels),
                ("teacher_channels", teacher_channels),
                ("student_sizes", student_sizes),
                ("teacher_sizes", teacher_sizes),
                ("grids", grids),
            ):
                if layer not in table:
                    raise ValueError(f"DistillLoss: distilled layer {layer!r} is missing from {what}")
            (sh, sw), (th, tw) = student_sizes[layer], teacher_sizes[layer]
            if th % sh or tw % sw or th // sh != tw // sw:
                raise ValueError(
                    f"DistillLoss: layer {layer}: teacher map {th}x{tw} is not the student map {sh}x{sw} "
                    "upsampled by one integer factor"
                )
            if tuple(grids[layer].shape) != (th, tw):
                raise ValueError(
                    f"DistillLoss: layer {layer}: grid shape {grids[layer].shape} != teacher map {th}x{tw}"
                )
            self.grids[layer] = grids[layer]
            if layer == "HS":
                # The head's shared map: the student's own map is imitated, so that the task branches
                # (inherited from the teacher) read what they were trained on.
                if student_channels[layer] != teacher_channels[layer] or (sh, sw) != (th, tw):
                    raise ValueError(
                        f"DistillLoss: layer HS (the head's shared map) is imitated without an adapter, so "
                        f"both heads need the same share_channels and grid: student "
                        f"{student_channels[layer]}x{sh}x{sw}, teacher {teacher_channels[layer]}x{th}x{tw}"
                    )
                adapters[layer] = nn.Identity()
            else:
                adapters[layer] = build_adapter(
                    student_channels[layer],
                    teacher_channels[layer],
                    th // sh,
                    align_corners=cfg.align_corners,
                )
            if cfg.use_attention:
                convs[layer] = build_attention_conv(cfg.attention_conv_init)
        self.adapters = nn.ModuleDict(adapters)
        self.attention_convs = nn.ModuleDict(convs)

    def _boxes_on_device(self, gt_boxes: list[torch.Tensor], teacher_taps: dict[str, torch.Tensor]):
        """GT boxes moved to the device of the feature maps (masks are built where the loss is)."""
        layer = next((n for n in self.cfg.layers if n in teacher_taps), None)
        device = teacher_taps[layer].device if layer is not None else torch.device("cpu")
        return [b.to(device) for b in gt_boxes]

    def adapted_pair(
        self, layer: str, student_taps: dict[str, torch.Tensor], teacher_taps: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Adapted student map ``G`` and detached teacher map ``F_T`` of ``layer``, fp32 (B, C_T, H, W)."""
        for side, taps in (("student", student_taps), ("teacher", teacher_taps)):
            if layer not in taps:
                raise KeyError(f"DistillLoss: the {side} taps have no layer {layer!r} (got {sorted(taps)})")
        g = self.adapters[layer](student_taps[layer]).float()
        t = teacher_taps[layer].detach().float()
        if g.shape != t.shape:
            raise ValueError(
                f"DistillLoss: layer {layer}: adapted student {tuple(g.shape)} != teacher {tuple(t.shape)}"
            )
        return g, t

    @torch.no_grad()
    def regions(
        self,
        layer: str,
        gt_boxes: list[torch.Tensor],
        teacher_score: torch.Tensor | None,
        gt_score: torch.Tensor | None,
        _fg_cache: dict | None = None,
    ) -> LayerRegions:
        """FG / FP / BG masks and the scale map of ``layer`` (detached)."""
        cfg, grid = self.cfg, self.grids[layer]
        key = (grid, cfg.foreground_mode, cfg.cell_point)
        if _fg_cache is not None and key in _fg_cache:
            fg, box_index = _fg_cache[key]
        else:
            fg, box_index = foreground_mask(gt_boxes, grid, cfg.foreground_mode, cfg.cell_point)
            if _fg_cache is not None:
                _fg_cache[key] = (fg, box_index)
        if cfg.fp_active(layer):
            if teacher_score is None or gt_score is None:
                raise ValueError(
                    f"DistillLoss: layer {layer} uses the false-positive region "
                    "(distill.use_false_positive_region) but teacher_score / gt_score were not given"
                )
            fp = false_positive_mask(
                teacher_score.to(fg.device), gt_score.to(fg.device), fg, cfg.fp_threshold, cfg.gt_threshold
            )
        else:
            fp = torch.zeros_like(fg)
        bg = background_mask(fg, fp)
        if cfg.use_scaling:
            scale = (
                foreground_scale(box_index, gt_boxes, grid) + background_scale(bg) + false_positive_scale(fp)
            )
        else:
            scale = torch.ones_like(fg)
        return LayerRegions(fg=fg, box_index=box_index, fp=fp, bg=bg, scale=scale)

    def layer_terms(
        self,
        layer: str,
        g: torch.Tensor,
        t: torch.Tensor,
        gt_boxes: list[torch.Tensor],
        teacher_score: torch.Tensor | None,
        gt_score: torch.Tensor | None,
        _fg_cache: dict | None = None,
    ) -> dict[str, torch.Tensor]:
        """Unweighted-by-ramp terms of one layer: ``fg, bg[, fp]`` or ``plain``, and ``att``."""
        cfg = self.cfg
        n_b = t.shape[0]
        sq = (g - t) ** 2  # (B, C, H, W)
        q = (
            channel_attention(t, cfg.attention_temperature)
            if cfg.use_channel_attention or (cfg.fp_active(layer) and cfg.fp_channel_attention)
            else None
        )  # (B, C, 1, 1)
        err = sq * q if cfg.use_channel_attention else sq  # (B, C, H, W)
        p = (
            combined_attention(t, g, cfg.attention_temperature, cfg.attention_student_ratio)[:, 0]
            if cfg.use_attention
            else None
        )  # (B, H, W)
        terms: dict[str, torch.Tensor] = {}
        if cfg.use_region_split:
            r = self.regions(layer, gt_boxes, teacher_score, gt_score, _fg_cache)
            e = err.sum(1)  # (B, H, W): squared error summed over channels
            weight = r.scale if p is None else r.scale * p
            terms["fg"] = cfg.w_fg * (e * r.fg * weight).sum() / n_b
            terms["bg"] = cfg.w_bg * (e * r.bg * weight).sum() / n_b
            if cfg.fp_active(layer):
                e_fp = (sq * q).sum(1) if q is not None else sq.sum(1)
                terms["fp"] = cfg.w_fp * (e_fp * r.fp * weight).sum() / n_b
        else:
            terms["plain"] = cfg.plain_weight * (err if p is None else err * p[:, None]).mean()
        if cfg.use_attention:
            terms["att"] = cfg.w_att * attention_imitation_loss(t, g, self.attention_convs[layer])
        return terms

    def forward(
        self,
        student_taps: dict[str, torch.Tensor],
        teacher_taps: dict[str, torch.Tensor],
        gt_boxes: list[torch.Tensor],
        teacher_score: torch.Tensor | None = None,
        gt_score: torch.Tensor | None = None,
        step: int = 0,
    ) -> dict[str, torch.Tensor]:
        """Named scalar terms ``kd_<term>_<layer>`` (term in fg, bg, fp, plain, att); their sum is the loss.

        ``teacher_score`` / ``gt_score`` ``(B, 1, h, w)`` are needed on layers with the FP region.
        ``step`` drives the warm-up ramp. Teacher taps are detached; masks carry no gradient.
        """
        factor = self.cfg.loss_weight * self.cfg.ramp(step)
        gt_boxes = self._boxes_on_device(gt_boxes, teacher_taps)
        fg_cache: dict = {}
        out: dict[str, torch.Tensor] = {}
        for layer in self.cfg.layers:
            g, t = self.adapted_pair(layer, student_taps, teacher_taps)
            for name, value in self.layer_terms(
                layer, g, t, gt_boxes, teacher_score, gt_score, fg_cache
            ).items():
                out[f"kd_{name}_{layer}"] = value * factor
        return out

    @torch.no_grad()
    def masks_for_viz(
        self,
        student_taps: dict[str, torch.Tensor],
        teacher_taps: dict[str, torch.Tensor],
        gt_boxes: list[torch.Tensor],
        teacher_score: torch.Tensor | None = None,
        gt_score: torch.Tensor | None = None,
    ) -> dict[str, dict[str, torch.Tensor]]:
        """Per layer: ``fg, fp, bg, scale`` ``(B, H, W)`` and ``teacher_attention, student_attention``
        ``(B, H, W)`` (spatial attention of the teacher and of the adapted student, computed whatever
        ``use_attention`` says). Call ``.eval()`` first so the adapters' BN uses running statistics."""
        out: dict[str, dict[str, torch.Tensor]] = {}
        gt_boxes = self._boxes_on_device(gt_boxes, teacher_taps)
        fg_cache: dict = {}
        for layer in self.cfg.layers:
            g, t = self.adapted_pair(layer, student_taps, teacher_taps)
            r = self.regions(layer, gt_boxes, teacher_score, gt_score, fg_cache)
            temp = self.cfg.attention_temperature
            out[layer] = {
                "fg": r.fg,
                "fp": r.fp,
                "bg": r.bg,
                "scale": r.scale,
                "teacher_attention": spatial_attention(t, temp)[:, 0],
                "student_attention": spatial_attention(g, temp)[:, 0],
            }
        return out
