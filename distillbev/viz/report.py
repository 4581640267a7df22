"""``distillbev report``: one self-contained HTML page (every figure embedded as a base64 PNG) comparing a
baseline and a distilled student: metric tables, training curves, BEV views of ground truth vs
detections on the same val samples, the distillation masks per layer, per-class and per-distance AP.

The runs it compares are found by ``viz/report_inputs.py`` (``find_report_inputs``), the sections are
built by ``viz/report_sections.py``.
"""

from __future__ import annotations

import datetime
import html
from pathlib import Path

from distillbev.io import write_text
from distillbev.viz import report_sections as sec
from distillbev.viz.report_inputs import ReportInputs, find_report_inputs

__all__ = ["ReportInputs", "build_report", "find_report_inputs"]


def build_report(inputs: ReportInputs, out: Path, samples: int = 3, score_threshold: float = 0.3) -> Path:
    """Write the report page to ``out`` (atomically) and return its path."""
    samples, why = sec.choose_samples(inputs, samples)
    sections = [
        sec.header_section(inputs),
        sec.tables_section(inputs),
        sec.plan_section(inputs),
        sec.curves_section(inputs),
        sec.bev_section(inputs, samples, why, score_threshold),
        sec.masks_section(inputs, samples),
        sec.per_class_section(inputs),
        sec.distance_section(inputs),
    ]
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = PAGE.format(
        title=html.escape(f"DistillBEV report: {inputs.root.name}"),
        body="\n".join(f"<section>{s}</section>" for s in sections if s),
        footer=html.escape(f"distillbev report {inputs.root} · {stamp}"),
    )
    write_text(out, page)
    return Path(out)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1280px; padding: 0 24px 40px; color: #1d1d1f; background: #fafafa; line-height: 1.45; }}
h1 {{ margin-top: 28px; }} h2 {{ margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }}
p.note {{ color: #555; max-width: 960px; }}
table {{ border-collapse: collapse; margin: 10px 0 6px; font-size: 14px; background: white; }}
th, td {{ border: 1px solid #e3e3e3; padding: 4px 10px; text-align: right; }}
th:first-child, td:first-child, td.paths {{ text-align: left; }}
th {{ background: #f0f0f0; }} tr.gain td {{ font-weight: 600; background: #fcfcf4; }}
td.good {{ color: #18794e; }} td.bad {{ color: #c0392b; }}
img {{ max-width: 100%; border: 1px solid #e5e5e5; background: white; margin: 6px 0; }}
.paths {{ font-family: monospace; font-size: 12.5px; color: #444; }}
.missing {{ color: #a15c00; background: #fff6e5; padding: 6px 10px; border-radius: 4px;
            display: inline-block; }}
footer {{ margin-top: 40px; color: #888; font-size: 12px; }}
</style></head>
<body>
{body}
<footer>{footer}</footer>
</body></html>
"""
