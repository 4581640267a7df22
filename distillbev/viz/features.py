"""Distillation pictures: FG/FP/BG regions, the adaptive scale and both attention maps per layer
(like the paper's figures), plus teacher/student BEV feature magnitudes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from distillbev.io import atomic_path  # noqa: E402


def region_image(fg: np.ndarray, fp: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """An RGB picture of the region split: foreground green, false positives red, background grey."""
    img = np.zeros(fg.shape + (3,), dtype=np.float32)
    img[bg > 0] = (0.25, 0.25, 0.25)
    img[fp > 0] = (0.9, 0.15, 0.1)
    img[fg > 0] = (0.2, 0.85, 0.3)
    return img


def render_distill_maps(
    maps: dict[str, dict[str, torch.Tensor]],
    teacher_taps: dict[str, torch.Tensor],
    student_taps: dict[str, torch.Tensor],
    out_path: str | Path,
    sample: int = 0,
) -> Path:
    """One row per distilled layer: regions, scale (log), teacher attention, student attention,
    teacher and student feature magnitude (mean |F| over channels). Rows are BEV maps, y up."""
    layers = list(maps)
    cols = (
        "regions (FG/FP/BG)",
        "adaptive scale (log10)",
        "teacher attention",
        "student attention",
        "teacher |F|",
        "student |F|",
    )
    fig, axes = plt.subplots(
        len(layers), len(cols), figsize=(3.0 * len(cols), 3.0 * len(layers)), squeeze=False
    )
    for r, layer in enumerate(layers):
        m = {k: v[sample].detach().float().cpu().numpy() for k, v in maps[layer].items()}
        t = teacher_taps[layer][sample].detach().float().abs().mean(0).cpu().numpy()
        s = student_taps[layer][sample].detach().float().abs().mean(0).cpu().numpy()
        panels = (
            region_image(m["fg"], m["fp"], m["bg"]),
            np.log10(np.maximum(m["scale"], 1e-8)),
            m["teacher_attention"],
            m["student_attention"],
            t,
            s,
        )
        for c, (title, panel) in enumerate(zip(cols, panels, strict=True)):
            ax = axes[r, c]
            ax.imshow(panel, origin="lower", cmap=None if panel.ndim == 3 else "viridis")
            ax.set_title(f"{layer}: {title}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return out_path
