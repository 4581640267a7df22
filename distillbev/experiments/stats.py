"""Results of a plan: mean +- std per cell over seeds, the gain over the same student's baseline with
its spread, the paper's claims checked; ``results.json`` (every seed's metrics, so plans split by cell
merge exactly) and ``results.md``.

The spread of a gain is the standard error of a difference of two means,
``sqrt(s1^2 / n1 + s2^2 / n2)`` with the sample standard deviations (ddof = 1) of both cells; it is
undefined (None) while either cell has fewer than two seeds. A claimed gain is also held to the
stricter test of README's distillation results: the mean gain exceeds twice the larger of the two
standard deviations (``twice_std``).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from distillbev.experiments.plan import head_cell_name, is_head_cell
from distillbev.io import write_json, write_text

FORMAT = "distillbev-reproduce-v1"
METRICS = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")
HIGHER_IS_BETTER = ("mAP", "NDS")


def summarize(values: Iterable[float | None]) -> dict[str, Any]:
    """``mean``, sample ``std`` (None below two values) and ``n`` of the defined values."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else None,
        "n": len(vals),
    }


def gain(cell: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Difference of two ``summarize`` results, its spread ``sqrt(s1^2/n1 + s2^2/n2)`` and
    ``twice_std`` = 2 max(s1, s2) (both None below two seeds on either side)."""
    if cell["mean"] is None or base["mean"] is None:
        return {"mean": None, "spread": None, "twice_std": None}
    spread = twice = None
    if cell["std"] is not None and base["std"] is not None:
        spread = math.sqrt(cell["std"] ** 2 / cell["n"] + base["std"] ** 2 / base["n"])
        twice = 2 * max(cell["std"], base["std"])
    return {"mean": cell["mean"] - base["mean"], "spread": spread, "twice_std": twice}


def baseline_overrides(overrides: Iterable[str]) -> list[str]:
    """The overrides a baseline run reads: all but ``distill.*`` (a student trained without a teacher
    builds no distillation loss and inherits no head, so those keys do not change it)."""
    return [o for o in overrides if not o.strip().startswith("distill.")]


def borrow_baselines(
    plan: dict[str, Any],
    seeds: dict[str, dict[int, dict[str, Any]]],
    other: dict[str, Any],
    source: str,
) -> tuple[dict[str, dict[int, dict[str, Any]]], list[str]]:
    """Baseline seeds taken from another plan's ``results.json`` (``reproduce --baselines-from``): every
    baseline cell (``<student>-none``) of ``plan`` without a finished seed of its own gets ``other``'s
    seeds of the same cell. ``other`` must have the same scale and the same overrides but for
    ``distill.*``, else its baselines are other trainings and the error says which overrides differ.
    Returns the seeds with the borrowed ones added and the names of the cells borrowed."""
    if other.get("format") != FORMAT:
        raise ValueError(f"{source}: not a distillbev reproduce results.json")
    mine, theirs = (
        baseline_overrides(plan.get("overrides", [])),
        baseline_overrides(other.get("overrides", [])),
    )
    if other.get("scale") != plan.get("scale") or sorted(mine) != sorted(theirs):
        raise ValueError(
            f"--baselines-from {source}: its baselines ran with scale {other.get('scale')!r} and overrides "
            f"{theirs}, this plan's with scale {plan.get('scale')!r} and {mine} (distill.* aside, which a "
            "baseline does not read): they are not this plan's baselines"
        )
    out = {k: dict(v) for k, v in seeds.items()}
    borrowed = []
    for c in plan["cells"]:
        name = c["name"]
        theirs_cell = other.get("cells", {}).get(name)
        if c["teacher"] is not None or out.get(name) or not theirs_cell or not theirs_cell.get("seeds"):
            continue
        mine_sha, theirs_sha = plan.get("presets", {}).get(name), theirs_cell.get("preset_sha256")
        if mine_sha is not None and theirs_sha != mine_sha:
            why = (
                "records no sha256 of its presets (written before plans recorded them)"
                if theirs_sha is None
                else "ran from other contents of its preset files"
            )
            raise ValueError(
                f"--baselines-from {source}: its {name} {why}, so its seeds may be other trainings than "
                "this plan's baselines; train the baselines here instead"
            )
        out[name] = {int(k): dict(v) for k, v in theirs_cell["seeds"].items()}
        borrowed.append(name)
    return out, borrowed


def build_results(
    plan: dict[str, Any],
    seeds: dict[str, dict[int, dict[str, Any]]],
    teachers: dict[str, dict[str, Any]],
    baselines_from: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``results.json`` document. ``plan``: ``plan.json``'s cells and tables; ``seeds``: cell name
    -> seed -> final metrics (finished runs only); ``teachers``: name -> checkpoint and metrics;
    ``baselines_from``: ``{"source", "cells"}`` when baseline seeds were borrowed (``borrow_baselines``)."""
    cells: dict[str, Any] = {}
    for c in plan["cells"]:
        per_seed = {int(k): {m: v.get(m) for m in METRICS} for k, v in seeds.get(c["name"], {}).items()}
        cells[c["name"]] = {
            "student": c["student"],
            "teacher": c["teacher"],
            "distill": c["distill"],
            "groups": list(c["groups"]),
            "seeds": {str(k): per_seed[k] for k in sorted(per_seed)},
            "stats": {m: summarize(v[m] for v in per_seed.values()) for m in METRICS},
        }
        if sha := plan.get("presets", {}).get(c["name"]):
            cells[c["name"]]["preset_sha256"] = sha
    for entry in cells.values():
        base = cells.get(f"{entry['student']}-none")
        entry["gain"] = (
            {m: gain(entry["stats"][m], base["stats"][m]) for m in METRICS}
            if entry["teacher"] is not None and base is not None
            else None
        )
        # a distilled student starts from its teacher's head: the plain student started from the same
        # head is the baseline that isolates the imitation loss
        head = cells.get(head_cell_name(entry["student"], entry["teacher"])) if entry["teacher"] else None
        entry["gain_vs_head"] = (
            {m: gain(entry["stats"][m], head["stats"][m]) for m in METRICS}
            if entry["distill"] is not None
            and head is not None
            and is_head_cell(head["teacher"], head["distill"])
            else None
        )
    doc = {
        "format": FORMAT,
        "scale": plan.get("scale"),
        "overrides": plan.get("overrides", []),
        "teachers": teachers,
        "tables": plan["tables"],
        "cells": cells,
    }
    if baselines_from and baselines_from.get("cells"):
        doc["baselines_from"] = {
            "source": str(baselines_from["source"]),
            "cells": list(baselines_from["cells"]),
        }
    return doc


def merge_results(docs: list[dict[str, Any]], sources: list[str]) -> dict[str, Any]:
    """One document from the ``results.json`` of plans split by cell: the union of every cell's seeds
    (a seed found twice with other values is an error: the plans overlapped), statistics recomputed."""
    if not docs:
        raise ValueError("--merge needs at least one plan folder")
    first = docs[0]
    for doc, src in zip(docs, sources, strict=True):
        if doc.get("format") != FORMAT:
            raise ValueError(f"{src}: not a distillbev reproduce results.json")
        if doc.get("scale") != first.get("scale") or doc.get("overrides") != first.get("overrides"):
            raise ValueError(
                f"{src}: scale {doc.get('scale')!r} / overrides {doc.get('overrides')} differ from "
                f"{sources[0]}'s ({first.get('scale')!r} / {first.get('overrides')}): not one plan"
            )
    meta: dict[str, dict[str, Any]] = {}
    seeds: dict[str, dict[int, dict[str, Any]]] = {}
    origin: dict[tuple[str, int], str] = {}
    tables = list(first["tables"])
    teachers: dict[str, Any] = {}
    presets: dict[str, tuple[str, str]] = {}  # cell -> (sha256 of its presets, the plan it came from)
    for doc, src in zip(docs, sources, strict=True):
        for t in doc["tables"]:
            if all(t["key"] != u["key"] for u in tables):
                tables.append(t)
        for k, v in doc.get("teachers", {}).items():
            teachers.setdefault(k, v)
        for name, cell in doc["cells"].items():
            meta.setdefault(
                name,
                {"name": name, **{k: cell[k] for k in ("student", "teacher", "distill", "groups")}},
            )
            sha = cell.get("preset_sha256")
            if sha is not None and cell["seeds"]:
                if presets.setdefault(name, (sha, src))[0] != sha:
                    raise ValueError(
                        f"{name} ran from other preset files in {presets[name][1]} than in {src}: "
                        "not one plan"
                    )
            for s, m in cell["seeds"].items():
                have = seeds.setdefault(name, {}).get(int(s))
                if have is not None and have != m:
                    raise ValueError(
                        f"{name} seed {s} is in both {origin[(name, int(s))]} and {src} with different "
                        "metrics: the plans overlapped (split plans by --cells)"
                    )
                seeds[name][int(s)] = m
                origin.setdefault((name, int(s)), src)
    plan = {
        "scale": first.get("scale"),
        "overrides": first.get("overrides", []),
        "cells": list(meta.values()),
        "presets": {name: sha for name, (sha, _) in presets.items()},
    }
    borrowed = [d["baselines_from"] for d in docs if d.get("baselines_from")]
    baselines_from = (
        {
            "source": ", ".join(dict.fromkeys(b["source"] for b in borrowed)),
            "cells": list(dict.fromkeys(c for b in borrowed for c in b["cells"])),
        }
        if borrowed
        else None
    )
    return build_results(plan | {"tables": tables}, seeds, teachers, baselines_from)


def _fmt(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def mean_std_text(s: dict[str, Any]) -> str:
    """``0.400 ± 0.100`` (no ± below two seeds, – without a value)."""
    if s["mean"] is None:
        return "–"
    return _fmt(s["mean"]) + (f" ± {s['std']:.3f}" if s["std"] is not None else "")


def gain_text(g: dict[str, Any] | None) -> str:
    """``+0.150 ± 0.076`` (no ± while the spread is undefined, – without a gain)."""
    if g is None or g["mean"] is None:
        return "–"
    return _fmt(g["mean"], True) + (f" ± {g['spread']:.3f}" if g["spread"] is not None else "")


def _teacher_label(name: str | None) -> str:
    return {None: "none", "centerpoint": "CenterPoint", "mvp": "MVP"}.get(name, str(name))


def table_rows(doc: dict[str, Any], table: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one table: label, cell name, cell entry (None when the cell is not in ``doc``)."""
    return [{"label": label, "cell": name, "entry": doc["cells"].get(name)} for label, name in table["rows"]]


def _verdict(g: dict[str, Any] | None) -> str:
    """``mAP +0.021 ± 0.003 above the spread; NDS ...`` for the higher-is-better metrics of a gain."""
    verdict = []
    for m in HIGHER_IS_BETTER:
        gm = (g or {}).get(m) or {"mean": None, "spread": None}
        if gm["mean"] is None or gm["spread"] is None:
            verdict.append(f"{m} {gain_text(gm)} (needs >= 2 seeds of it and its baseline)")
        else:
            ok = gm["mean"] > gm["spread"]
            twice = gm["twice_std"]  # defined whenever the spread is
            above = "above" if gm["mean"] > twice else "NOT above"
            verdict.append(
                f"{m} {gain_text(gm)} {'above' if ok else 'NOT above'} the spread "
                f"({above} twice the larger std, {twice:.3f})"
            )
    return "; ".join(verdict)


def check_claims(doc: dict[str, Any]) -> list[str]:
    """The paper's claims, one markdown line each, with the numbers that decide them."""
    lines = []
    cells = doc["cells"]
    grid = [(n, c) for n, c in cells.items() if "grid" in c["groups"] and c["distill"] is not None]
    for name, c in grid:
        lines.append(f"- {name}: " + _verdict(c["gain"]))
    out = ["Distilled students above their baselines (gain > spread):", *lines, ""]
    heads = [(n, c) for n, c in grid if c.get("gain_vs_head") is not None]
    if heads:
        out += [
            "Distilled students above the plain student started from the same teacher's head (the "
            "imitation loss's own share; gain > spread):",
            *(f"- {n}: " + _verdict(c["gain_vs_head"]) for n, c in heads),
            "",
        ]
    students = sorted({c["student"] for _, c in grid})
    mvp_lines = []
    for s in students:
        cp, mvp = cells.get(f"{s}-centerpoint"), cells.get(f"{s}-mvp")
        a = cp["stats"]["mAP"]["mean"] if cp else None
        b = mvp["stats"]["mAP"]["mean"] if mvp else None
        if a is None or b is None:
            mvp_lines.append(f"- {s}: not both teachers finished")
        else:
            mvp_lines.append(f"- {s}: MVP {b:.3f} {'>=' if b >= a else '<'} CenterPoint {a:.3f} mAP")
    out += ["MVP >= CenterPoint as teacher:", *mvp_lines, ""]
    for table in doc["tables"]:
        order = table.get("order") or []
        if not order:
            continue
        rows = {r["label"]: r["entry"] for r in table_rows(doc, table)}
        means = {k: (rows[k]["stats"]["mAP"]["mean"] if rows.get(k) else None) for k in order}
        if any(v is None for v in means.values()):
            out.append(f"{table['title']}: not every row finished")
            continue
        ours = sorted(order, key=lambda k: means[k])
        same = list(ours) == list(order)
        out.append(
            f"{table['title']}: the paper's order (mAP, low to high) {' < '.join(order)} "
            f"{'holds' if same else 'does NOT hold'}; here: "
            + " < ".join(f"{k} {means[k]:.3f}" for k in ours)
        )
    return out


def results_markdown(doc: dict[str, Any]) -> str:
    """``results.md``: one table per paper table, the teachers, and the claims."""
    head = ["n", *METRICS, "ΔmAP", "ΔNDS"]
    parts = [
        f"# DistillBEV reproduction ({doc.get('scale')} scale)",
        "",
        "Official nuScenes metrics (fractions), mean ± sample std over the finished seeds (n). Δ: gain over "
        "the same student's baseline ± its spread sqrt(s1²/n1 + s2²/n2). Δ (head): a distilled student's "
        "gain over the plain student started from the same teacher's head task branches (the distilled "
        "students start from them too), i.e. the imitation loss's own share.",
    ]
    if doc.get("overrides"):
        parts.append("Overrides of every run: " + ", ".join(f"`{o}`" for o in doc["overrides"]) + ".")
    borrowed = doc.get("baselines_from")
    if borrowed:
        parts.append(
            "Baselines " + ", ".join(f"`{c}`" for c in borrowed["cells"]) + f" from `{borrowed['source']}` "
            "(same scale and overrides but for `distill.*`, which a baseline does not read)."
        )
    if doc.get("teachers"):
        parts += ["", "| teacher | checkpoint | mAP | NDS |", "|---|---|---:|---:|"]
        for k, v in doc["teachers"].items():
            ckpt = v.get("checkpoint", "")
            parts.append(f"| {_teacher_label(k)} | `{ckpt}` | {_fmt(v.get('mAP'))} | {_fmt(v.get('NDS'))} |")
    for table in doc["tables"]:
        grid = table["key"] == "grid"
        cols = ["student", "teacher"] if grid else ["row"]
        rows = table_rows(doc, table)
        if not any(r["entry"] and r["entry"]["seeds"] for r in rows):
            parts += ["", f"## {table['title']}", "", "No finished run of this table yet."]
            continue
        heads = any(r["entry"] and is_head_cell(r["entry"]["teacher"], r["entry"]["distill"]) for r in rows)
        names = head + (["ΔmAP (head)", "ΔNDS (head)"] if heads else [])
        parts += ["", f"## {table['title']}", "", "| " + " | ".join(cols + names) + " |"]
        parts.append("|" + "|".join(["---"] * len(cols) + ["---:"] * len(names)) + "|")
        for r in rows:
            e = r["entry"]
            first = [e["student"] if e else "?", r["label"]] if grid else [r["label"]]
            if e is None:
                parts.append("| " + " | ".join(first + ["0"] + ["–"] * (len(names) - 1)) + " |")
                continue
            n = max(s["n"] for s in e["stats"].values())
            vals = [mean_std_text(e["stats"][m]) for m in METRICS]
            gains = [e["gain"]] + ([e.get("gain_vs_head")] if heads else [])
            deltas = [gain_text((g or {}).get(m)) for g in gains for m in HIGHER_IS_BETTER]
            parts.append("| " + " | ".join(first + [str(n), *vals, *deltas]) + " |")
    parts += ["", "## The paper's claims", "", *check_claims(doc)]
    return "\n".join(parts) + "\n"


def write_results(doc: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Atomically write ``results.json`` and ``results.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    write_json(out_dir / "results.json", doc)
    write_text(out_dir / "results.md", results_markdown(doc))
    return out_dir / "results.json", out_dir / "results.md"


def read_results(folder: Path) -> dict[str, Any]:
    """A plan folder's ``results.json``."""
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (run the plan in {folder} first)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
