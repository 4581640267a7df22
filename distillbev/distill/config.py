"""``DistillConfig``: every knob of DistillBEV's distillation loss, one switch per paper component.

Defaults are the released BEVDepth4D recipe (docs/method.md, The loss and its weights: the launch-script
values, not the config-file values). The paper's two ablation tables are presets in ``configs/distill/``.

Normalisation (docs/method.md, The loss and its weights): per layer, with ``E = sum_c (G - F_T)^2`` the
channel-summed squared error of the adapted student map ``G`` against the teacher map ``F_T``,

- ``kd_fg = w_fg / B * sum_{b,i,j} E * M_fg * S * P``  (S = 1/sqrt(n_k) inside box k)
- ``kd_bg = w_bg / B * sum_{b,i,j} E * M_bg * S * P``  (S = 1/N_bg)
- ``kd_fp = w_fp / B * sum_{b,c,i,j} (G - F_T)^2 * M_fp * s_fp * P * Q``  (s_fp = 1/N_fp)
- ``kd_att = w_att / B * sum_{b,i,j} |mean_c F_T - conv3x3(mean_c G)|``

With ``use_region_split`` off the regions collapse into one uniform imitation,
``kd_plain = plain_weight * mean_{b,c,i,j} (G - F_T)^2 [* P]``: with every switch off this is exactly
``plain_weight * F.mse_loss(G, F_T)`` (FitNets-style hint loss; the released ``distill_type='all'``).
Every term is finally multiplied by ``loss_weight`` and by ``ramp(step)`` (the warm-up, and 0 from
``stop_step`` on: imitation as a warm start).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: The paper's taps and "HS", the head's shared map (the map the inherited task branches read; imitated
#: without an adapter, docs/method.md "The shared-map tap").
LAYER_NAMES: tuple[str, ...] = ("B0", "B1", "B2", "H", "HS")
#: Fields that must be >= 0.
NON_NEGATIVE_FIELDS = (
    "w_fg",
    "w_bg",
    "w_fp",
    "w_att",
    "loss_weight",
    "plain_weight",
    "attention_student_ratio",
)


@dataclass(frozen=True)
class DistillConfig:
    """Distillation loss settings (weights are dimensionless multipliers of the loss terms)."""

    # Distilled taps, paper names: "B0", "B1", "B2" = BEV-encoder stages, "H" = pre-head map; "HS" = the
    # head's shared map (not in the paper; no adapter: the student's own map is compared).
    layers: tuple[str, ...] = ("B1", "B2", "H")
    # Region weights (released scripts): foreground, background, false-positive, L1 attention term.
    w_fg: float = 6e-3
    w_bg: float = 4e-2
    w_fp: float = 6e-2
    w_att: float = 2.5e-3
    # FG/BG region decomposition with separate weights; off => one uniform imitation over all cells.
    use_region_split: bool = True
    # Spatial attention weighting P (teacher/student average, detached) + the L1 attention-imitation term.
    use_attention: bool = True
    # Adaptive scale: 1/sqrt(n_k) inside GT box k (n_k = box BEV area in cells), 1/N_bg, 1/N_fp.
    use_scaling: bool = True
    # Separate "false-positive" region: teacher score > fp_threshold where the GT score < gt_threshold.
    use_false_positive_region: bool = True
    # Layers on which the FP region is active (released: the pre-head map only).
    fp_layers: tuple[str, ...] = ("H",)
    fp_threshold: float = 0.1  # teacher max-class score (probability) above which a cell "fires"
    gt_threshold: float = 0.1  # GT Gaussian heatmap value below which a cell holds no object
    attention_temperature: float = 0.5  # tau of HW*softmax(mean_c|F|/tau) (also of channel attention)
    # r in P = (P_T + r*P_S)/(1 + r); 1.0 = released 'teacher_student', 0.0 = teacher only (BEVFormer).
    attention_student_ratio: float = 1.0
    # FGD-style teacher channel attention Q multiplied into the FG/BG terms (released: off).
    use_channel_attention: bool = False
    # As the released code (docs/method.md, Spatial attention): the FP term multiplies by Q even when
    # channel attention is off. True reproduces the released code; False gives a plain channel sum in
    # the FP term too.
    fp_channel_attention: bool = True
    # "hard": binary box mask (released). "gaussian": inside each box a 2D Gaussian of the box-normalised
    # coordinates (sigma = half the half-extent, 0.135 at an edge midpoint); support stays the hard box.
    foreground_mode: Literal["hard", "gaussian"] = "hard"
    # Point of a cell tested against the boxes: the lower-left "corner" (the released CNN-student code,
    # default) or the "center" (the released BEVFormer code; no half-cell shift against the boxes).
    cell_point: Literal["corner", "center"] = "corner"
    # Bilinear upsampling of coarse student stages in the adapters. True is the released code (default);
    # on cell-centred grids it stretches geometry by up to ~1.2 m at the border, False keeps cells aligned.
    align_corners: bool = True
    # Initial weights of the learnable 3x3 attention-imitation conv: "default" = PyTorch's Conv2d init
    # (the released code), "identity" = centre tap 1, bias 0 (the term starts as a plain L1 of means).
    attention_conv_init: Literal["default", "identity"] = "default"
    # Linear ramp of all distillation terms over the first warmup_steps optimiser steps (0 = none,
    # as released). Factor = min(1, step / warmup_steps).
    warmup_steps: int = 0
    # Imitation as a warm start: from optimiser step stop_step on every distillation term is 0 and the
    # teacher is not run (0 = imitate throughout, as released). The adapters keep their weights.
    stop_step: int = 0
    loss_weight: float = 1.0  # global multiplier of every distillation term
    # Weight of the uniform imitation (use_region_split off): plain_weight * mean squared error over
    # (B, C, H, W). 1.0 = the FitNets hint loss; per unit of per-channel error this is much weaker than
    # the split loss (whose FG term sums over objects), matching the "no component" row's small gain.
    plain_weight: float = 1.0
    # Head inheritance (released scripts: inherit_head=True): the student's CenterHead task branches
    # start as a copy of the teacher's (not the shared conv; train/inherit.py). Needs identical tasks,
    # share_channels and head_channels. Not applied when resuming (the checkpoint holds the student).
    inherit_head: bool = True

    def __post_init__(self) -> None:
        for field_name in ("layers", "fp_layers"):
            names = getattr(self, field_name)
            bad = [n for n in names if n not in LAYER_NAMES]
            if bad:
                raise ValueError(
                    f"distill.{field_name}: unknown tap(s) {bad}; expected some of {list(LAYER_NAMES)}"
                )
            if len(set(names)) != len(names):
                raise ValueError(f"distill.{field_name}: repeated tap in {list(names)}")
        if not self.layers:
            raise ValueError("distill.layers: at least one tap must be distilled")
        for name in NON_NEGATIVE_FIELDS:
            if getattr(self, name) < 0:
                raise ValueError(f"distill.{name}: must be >= 0, got {getattr(self, name)}")
        if self.attention_temperature <= 0:
            raise ValueError(f"distill.attention_temperature: must be > 0, got {self.attention_temperature}")
        if self.warmup_steps < 0:
            raise ValueError(f"distill.warmup_steps: must be >= 0, got {self.warmup_steps}")
        if self.stop_step < 0:
            raise ValueError(f"distill.stop_step: must be >= 0 (0 = never stop), got {self.stop_step}")
        if self.stop_step and self.warmup_steps >= self.stop_step:
            raise ValueError(
                f"distill.stop_step ({self.stop_step}) must come after distill.warmup_steps "
                f"({self.warmup_steps}): the imitation would stop before it is fully on"
            )

    def validate(self) -> None:
        """Cross-field checks, run when the loss is built (``--set`` overrides are applied one at a time,
        so a combination may be invalid between two of them)."""
        if not self.use_region_split and (self.use_scaling or self.use_false_positive_region):
            raise ValueError(
                "distill.use_scaling / distill.use_false_positive_region need distill.use_region_split: "
                "the scales and the FP region are defined per region"
            )
        if self.use_false_positive_region and not set(self.fp_layers) & set(self.layers):
            raise ValueError(
                f"distill.fp_layers: {list(self.fp_layers)} share no tap with distill.layers "
                f"{list(self.layers)} although distill.use_false_positive_region is on"
            )

    def fp_active(self, layer: str) -> bool:
        """Whether the false-positive region is used on ``layer``."""
        return self.use_false_positive_region and layer in self.fp_layers

    def active(self, step: int) -> bool:
        """Whether the distillation terms count at optimiser step ``step`` (False from ``stop_step`` on)."""
        return self.stop_step == 0 or step < self.stop_step

    def ramp(self, step: int) -> float:
        """Factor of the distillation terms at optimiser step ``step``: linear warm-up, then 1, then 0
        from ``stop_step`` on."""
        if not self.active(step):
            return 0.0
        if self.warmup_steps == 0:
            return 1.0
        return min(1.0, max(step, 0) / self.warmup_steps)
