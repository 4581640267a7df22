"""Distillation pictures: FG/FP/BG regions, the adaptive scale and both attention maps per layer
(like the paper's figures), plus teacher/student BEV feature magnitudes; ``render_masks`` draws them
for one val sample from two checkpoints."""

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


def render_masks(teacher: Path, student: Path, out: Path, index: int, distill_cfg: Path | None) -> list[Path]:
    """``distillbev viz masks``: the distillation masks of one val sample, per distilled layer, from a
    teacher and a (distilled or plain) student checkpoint; ``distill_cfg`` is a YAML layered onto the
    student's stored config (e.g. a ``configs/distill/`` preset for a plain student)."""
    from distillbev.config import load_config
    from distillbev.data.collate import collate
    from distillbev.train.checkpoint import load_model, load_state_strict
    from distillbev.train.config import RunConfig
    from distillbev.train.data import make_dataset
    from distillbev.train.loop import teacher_outputs
    from distillbev.train.run import build_distillation, with_teacher_points

    t_model, t_cfg, _ = load_model(teacher)
    s_model, s_cfg, s_blob = load_model(student)
    if not t_cfg.is_teacher or s_cfg.is_teacher:
        raise ValueError(
            f"viz masks needs a teacher ({teacher}: {t_cfg.model}) and a student ({student}: {s_cfg.model})"
        )
    if distill_cfg is not None:
        s_cfg = load_config(RunConfig, [distill_cfg], base=s_cfg)
    s_cfg = with_teacher_points(s_cfg, t_cfg)
    ds = make_dataset(s_cfg, train=False)
    if not 0 <= index < len(ds):
        raise IndexError(f"sample index {index} outside the val split ({len(ds)} samples)")
    batch = collate([ds[index]])
    dl = build_distillation(s_cfg, s_model, t_model)
    if "distill" in s_blob["extra_modules"]:
        load_state_strict(dl, s_blob["extra_modules"]["distill"], f"distillation state of {student}")
    for m in (t_model, s_model, dl):
        m.eval()
    with torch.no_grad():
        s_taps = s_model.forward_bev(batch)
        s_model.forward_head(s_taps)  # adds "HS", the head's shared map
        t_taps, t_score, gt_score = teacher_outputs(t_model, s_model.head, batch)  # as in training
        maps = dl.masks_for_viz(s_taps, t_taps, batch.gt_boxes, t_score, gt_score)
        adapted = {n: dl.adapted_pair(n, s_taps, t_taps)[0] for n in maps}
    path = render_distill_maps(maps, t_taps, adapted, Path(out) / f"distill_masks_{index:04d}.png")
    return [path]
