"""The sections of ``distillbev report``'s page, each an HTML fragment ('' when there is nothing to show)."""

from __future__ import annotations

import html
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillbev.eval.nuscenes_eval import HEADLINE_METRICS
from distillbev.structures import CLASS_NAMES
from distillbev.viz import report_figures as figs
from distillbev.viz.report_inputs import LOWER_IS_BETTER, ReportInputs, RunInfo, img_tag, resolve_dataroot


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{float(x):.{digits}f}"


def _missing(text: str) -> str:
    return f'<p class="missing">{_esc(text)}</p>'


def _delta_cell(a: Any, b: Any, lower_is_better: bool = False) -> str:
    """A ``<td>`` with b - a, green when it is an improvement, red when it is worse."""
    if a is None or b is None:
        return "<td>–</td>"
    d = float(b) - float(a)
    cls = "" if d == 0 else ("good" if (d < 0) == lower_is_better else "bad")
    return f'<td class="{cls}">{d:+.3f}</td>'


def teacher_metrics(inputs: ReportInputs) -> dict[str, Any]:
    """The teacher's metrics: its run folder's last evaluation, the demo's record of it, else those
    stored in its checkpoint."""
    if inputs.teacher is not None and inputs.teacher.eval_dir is not None:
        return inputs.teacher.metrics
    if inputs.teacher_record.get("metrics"):
        return dict(inputs.teacher_record["metrics"])
    if inputs.teacher_ckpt is not None:
        import torch

        blob = torch.load(inputs.teacher_ckpt, map_location="cpu", weights_only=False, mmap=True)
        return dict(blob.get("metrics") or {})
    return {}


def teacher_label(inputs: ReportInputs) -> str:
    """E.g. ``centerpoint (teacher)``."""
    d = inputs.distilled
    kind = inputs.teacher.model if inputs.teacher else (d.teacher_kind if d else None)
    return f"{kind or 'LiDAR'} (teacher)"


def header_section(inputs: ReportInputs) -> str:
    """Title and the run folders the page is made of."""
    b, d = inputs.baseline, inputs.distilled
    title = f"{d.label} vs {b.label}" if b and d else (d or b).label if (d or b) else "no evaluated student"
    rows = [("baseline", b.path if b else "-"), ("distilled", d.path if d else "-")]
    if inputs.teacher is not None:
        rows.insert(0, ("teacher run", inputs.teacher.path))
    rows.append(("teacher checkpoint", inputs.teacher_ckpt or "-"))
    items = "".join(f"<tr><td>{_esc(k)}</td><td class='paths'>{_esc(v)}</td></tr>" for k, v in rows)
    return (
        f"<h1>DistillBEV: {_esc(title)}</h1>"
        f"<p class='note'>{len(inputs.runs)} run folder(s) under "
        f"<span class='paths'>{_esc(inputs.root)}</span>. All metrics are the official nuScenes "
        "detection metrics of the last evaluation of each run "
        "(fractions; mAP and NDS higher is better, the five errors lower is better).</p>"
        f"<table>{items}</table>"
    )


def _headline_rows(runs: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(
        f"<tr><td>{_esc(label)}</td>"
        + "".join(f"<td>{_num(m.get(k))}</td>" for k in HEADLINE_METRICS)
        + "</tr>"
        for label, m in runs
    )


def tables_section(inputs: ReportInputs) -> str:
    """Headline metrics (teacher, baseline, distilled, gain) and AP per class."""
    b, d = inputs.baseline, inputs.distilled
    runs = []
    t = teacher_metrics(inputs)
    if t:
        runs.append((teacher_label(inputs), t))
    for r in (b, d):
        if r is not None:
            runs.append((r.label, r.metrics))
    head = "<tr><th>run</th>" + "".join(f"<th>{k}</th>" for k in HEADLINE_METRICS) + "</tr>"
    body = _headline_rows(runs)
    if b is not None and d is not None and b.metrics and d.metrics:
        bm, dm = b.metrics, d.metrics
        body += (
            "<tr class='gain'><td>gain (distilled − baseline)</td>"
            + "".join(_delta_cell(bm.get(k), dm.get(k), k in LOWER_IS_BETTER) for k in HEADLINE_METRICS)
            + "</tr>"
        )
    out = ["<h2>Metrics</h2>", f"<table>{head}{body}</table>"]
    if b is not None and d is not None:
        bm, dm = b.metrics, d.metrics
        head = "<tr><th>class</th>" + (f"<th>AP {_esc('teacher')}</th>" if t else "")
        head += (
            "<th>AP baseline</th><th>AP distilled</th><th>ΔAP</th><th>ATE baseline</th><th>ATE distilled</th>"
        )
        head += "<th>ΔATE</th></tr>"
        rows = ""
        for n in CLASS_NAMES:
            rows += f"<tr><td>{n}</td>" + (f"<td>{_num(t.get(f'AP/{n}'))}</td>" if t else "")
            rows += f"<td>{_num(bm.get(f'AP/{n}'))}</td><td>{_num(dm.get(f'AP/{n}'))}</td>"
            rows += _delta_cell(bm.get(f"AP/{n}"), dm.get(f"AP/{n}"))
            rows += f"<td>{_num(bm.get(f'ATE/{n}'))}</td><td>{_num(dm.get(f'ATE/{n}'))}</td>"
            rows += _delta_cell(bm.get(f"ATE/{n}"), dm.get(f"ATE/{n}"), True) + "</tr>"
        out += ["<h3>Per class</h3>", f"<table>{head}{rows}</table>"]
    return "\n".join(out)


def _claims_html(lines: list[str]) -> str:
    """``check_claims``' lines: a heading line (ending in ':'), its '- ' items, or a line of its own."""
    out, items = [], []
    for line in [*lines, ""]:
        if line.startswith("- "):
            items.append(f"<li>{_esc(line[2:])}</li>")
            continue
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
            items = []
        if line:
            out.append(f"<p>{_esc(line)}</p>")
    return "".join(out)


def plan_section(inputs: ReportInputs) -> str:
    """A ``reproduce`` plan's tables: mean ± std over seeds and the gains, with the paper's claims."""
    doc = inputs.plan_results
    if not doc:
        return ""
    from distillbev.experiments.stats import METRICS, check_claims, gain_text, mean_std_text, table_rows

    out = [
        "<h2>Reproduction plan: mean ± std over seeds</h2>",
        "<p class='note'>n: finished seeds. Δ: gain over the same student's baseline ± its spread "
        "sqrt(s1²/n1 + s2²/n2).</p>",
    ]
    for table in doc["tables"]:
        rows = [r for r in table_rows(doc, table) if r["entry"] is not None]
        n_of = {r["cell"]: max(s["n"] for s in r["entry"]["stats"].values()) for r in rows}
        if not any(n_of.values()):
            out.append(f"<h3>{_esc(table['title'])}</h3>" + _missing("no finished run yet"))
            continue
        first = "teacher" if table["key"] == "grid" else "row"
        head = f"<tr><th>{first}</th><th>student</th><th>n</th>" + "".join(f"<th>{m}</th>" for m in METRICS)
        body = ""
        for r in rows:
            e = r["entry"]
            body += f"<tr><td>{_esc(r['label'])}</td><td>{_esc(e['student'])}</td><td>{n_of[r['cell']]}</td>"
            body += "".join(f"<td>{mean_std_text(e['stats'][m])}</td>" for m in METRICS)
            for m in ("mAP", "NDS"):
                g = (e.get("gain") or {}).get(m)
                cls = "" if not g or g["mean"] is None else ("good" if g["mean"] > 0 else "bad")
                body += f"<td class='{cls}'>{gain_text(g)}</td>"
            body += "</tr>"
        head += "<th>ΔmAP</th><th>ΔNDS</th></tr>"
        out += [f"<h3>{_esc(table['title'])}</h3>", f"<table>{head}{body}</table>"]
    out.append("<h3>The paper's claims</h3>" + _claims_html(check_claims(doc)))
    return "\n".join(out)


def curves_section(inputs: ReportInputs) -> str:
    """Training curves of the baseline vs the distilled student."""
    logs = {r.role: (r.label, r.log) for r in (inputs.baseline, inputs.distilled) if r is not None and r.log}
    if not logs:
        return "<h2>Training curves</h2>" + _missing("no log.jsonl in the compared runs")
    return (
        "<h2>Training curves</h2><p class='note'>Left: the student's own detection loss (heatmap, box "
        "and, for BEVDepth, depth terms; thin lines as logged, bold lines smoothed) — the distilled run "
        "should not learn its task more slowly than the baseline. Middle: the imitation loss of the "
        "distilled run per layer. Right: validation metrics at each evaluated epoch (one point per run "
        "unless eval_every_epochs was set).</p>" + img_tag(figs.training_curves(logs), "training curves")
    )


@dataclass
class Samples:
    """The val samples shown: their index in the evaluated val split, tokens, and the devkit."""

    nusc: Any
    indices: list[int]
    tokens: list[str]


def choose_samples(inputs: ReportInputs, n: int) -> tuple[Samples | None, str]:
    """The ``n`` evaluated val samples with the most annotated objects (one per scene while possible)."""
    from distillbev.eval.nuscenes_eval import load_nuscenes, split_sample_tokens

    runs = [r for r in (inputs.baseline, inputs.distilled) if r is not None and r.eval_dir]
    if not runs or n <= 0:
        return None, "no evaluated student run"
    root = resolve_dataroot(runs[-1])
    if root is None:
        return (
            None,
            f"the val dataroot {runs[-1].config.get('data', {}).get('dataroot')} is not on this machine",
        )
    data = runs[-1].config["data"]
    nusc = load_nuscenes(root, data["version"])
    tokens = split_sample_tokens(nusc, data["val_split"])
    limit = min([int(r.config["data"].get("max_val_samples") or len(tokens)) for r in runs] + [len(tokens)])
    counts = sorted(range(limit), key=lambda i: (-len(nusc.get("sample", tokens[i])["anns"]), i))
    chosen, scenes = [], set()
    for i in counts:  # one per scene first, then the rest
        scene = nusc.get("sample", tokens[i])["scene_token"]
        if scene not in scenes:
            chosen.append(i)
            scenes.add(scene)
    chosen += [i for i in counts if i not in chosen]
    chosen = sorted(chosen[:n])
    return Samples(nusc, chosen, [tokens[i] for i in chosen]), ""


def _detections(run: RunInfo, token: str, lidar2global: Any) -> tuple[Any, Any, Any]:
    from distillbev.eval.results import results_to_detections

    return results_to_detections(run.predictions.get(token, []), lidar2global)


def bev_section(inputs: ReportInputs, samples: Samples | None, why: str, score_threshold: float) -> str:
    """The qualitative figure: the same val samples from above, baseline vs distilled."""
    from distillbev.viz.cameras import load_sample_for_viz

    out = [
        "<h2>Bird's-eye view: ground truth vs detections</h2>",
        "<p class='note'>The same val samples for both students (the samples with the most objects). "
        f"Cyan: ground truth; yellow dashed: detections with score ≥ {score_threshold:g}; grey: LiDAR "
        "points (for orientation only, the students see cameras). The paper's claim: distilled students "
        "miss fewer objects and place them at a more accurate depth (along the rays from the ego).</p>",
    ]
    runs = [r for r in (inputs.baseline, inputs.distilled) if r is not None and r.eval_dir]
    if samples is None:
        return "\n".join(out + [_missing(f"no BEV views: {why}")])
    for idx, token in zip(samples.indices, samples.tokens, strict=True):
        s = load_sample_for_viz(samples.nusc, token)
        panels = [(r.label, _detections(r, token, s["lidar2global"])) for r in runs]
        png = figs.bev_comparison(
            s["points"], s["gt_boxes"], panels, score_threshold, title=f"val sample #{idx} ({token[:8]})"
        )
        out.append(img_tag(png, f"BEV of val sample {idx}"))
    return "\n".join(out)


def masks_section(inputs: ReportInputs, samples: Samples | None) -> str:
    """``distillbev viz masks`` of the distilled run on the first shown sample."""
    out = [
        "<h2>Distillation masks, scale and attention per layer</h2>",
        "<p class='note'>One row per distilled layer of the distilled student on the first sample above. "
        "Regions: foreground (green, inside GT boxes), false positives (red, where the teacher is confident "
        "but no object is), background (grey). Adaptive scale: small objects weigh more per cell (log10). "
        "Attention: the teacher's and the (adapted) student's spatial attention — distillation should make "
        "the student's sharper and more like the teacher's. Last columns: mean |feature| of both.</p>",
    ]
    d = inputs.distilled
    if d is None or not (d.path / "checkpoint.pt").is_file():
        return "\n".join(out + [_missing("no distilled run with a checkpoint")])
    if inputs.teacher_ckpt is None:
        return "\n".join(out + [_missing("no teacher checkpoint found: pass --teacher")])
    if samples is None:
        return "\n".join(out + [_missing("no val samples (see the BEV section)")])
    from distillbev.viz.features import render_masks

    with tempfile.TemporaryDirectory() as tmp:
        overlay = None
        root = resolve_dataroot(d)
        if root is not None and str(root) != d.config["data"]["dataroot"]:
            # render_masks layers a YAML onto the student's stored config: point it at the dataroot found.
            overlay = Path(tmp) / "dataroot.yaml"
            overlay.write_text(f"data:\n  dataroot: {root}\n")
        try:
            paths = render_masks(
                inputs.teacher_ckpt, d.path / "checkpoint.pt", Path(tmp), samples.indices[0], overlay
            )
        except (OSError, ValueError, KeyError, RuntimeError) as e:  # the rest of the page still helps
            return "\n".join(out + [_missing(f"could not draw the masks: {type(e).__name__}: {e}")])
        out.append(img_tag(paths[0].read_bytes(), "distillation masks"))
    return "\n".join(out)


def _metric_runs(inputs: ReportInputs) -> dict[str, tuple[str, dict[str, Any]]]:
    runs: dict[str, tuple[str, dict[str, Any]]] = {}
    t = teacher_metrics(inputs)
    if t:
        runs["teacher"] = (teacher_label(inputs), t)
    for r in (inputs.baseline, inputs.distilled):
        if r is not None and r.metrics:
            runs[r.role] = (r.label, r.metrics)
    return runs


def per_class_section(inputs: ReportInputs) -> str:
    """AP per class bars."""
    runs = _metric_runs(inputs)
    if not runs:
        return ""
    return "<h2>AP per class</h2>" + img_tag(figs.per_class_ap(runs), "AP per class")


def distance_section(inputs: ReportInputs) -> str:
    """mAP per distance bin and the distilled student's AP per class and bin."""
    runs = _metric_runs(inputs)
    if not runs or not any(figs.distance_bins(m) for _, m in runs.values()):
        return "<h2>AP by distance</h2>" + _missing("the evaluations hold no per-distance AP")
    return (
        "<h2>AP by distance</h2><p class='note'>Ground truth and detections are binned by their distance "
        "from the ego; each bin is matched on its own (the devkit's matching), and a bin's mAP averages "
        "the classes with ground truth there. Camera students lose most with distance: depth errors grow "
        "with range.</p>" + img_tag(figs.per_distance_ap(runs), "AP by distance")
    )
