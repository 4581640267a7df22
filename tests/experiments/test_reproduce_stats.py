"""Statistics of a reproduction plan against hand-computed values; results.md; merging split plans."""

from __future__ import annotations

import hashlib
import math

import pytest
from plan_helpers import metrics

from distillbev.experiments.plan import build_grid
from distillbev.experiments.stats import (
    build_results,
    check_claims,
    gain,
    merge_results,
    results_markdown,
    summarize,
)


def test_mean_std_and_gain_by_hand():
    cell = summarize([0.3, 0.4, 0.5])  # mean 0.4, deviations -0.1, 0, 0.1: s^2 = 0.02 / 2 = 0.01
    base = summarize([0.2, 0.3, None])  # None (an undefined metric) is left out: mean 0.25, s^2 = 0.005
    assert cell["mean"] == pytest.approx(0.4) and cell["std"] == pytest.approx(0.1) and cell["n"] == 3
    assert (
        base["mean"] == pytest.approx(0.25)
        and base["std"] == pytest.approx(math.sqrt(0.005))
        and base["n"] == 2
    )
    g = gain(cell, base)  # spread sqrt(0.01 / 3 + 0.005 / 2) = sqrt(0.0058333) = 0.0763763
    assert g["mean"] == pytest.approx(0.15) and g["spread"] == pytest.approx(0.0763763, abs=1e-7)
    assert g["twice_std"] == pytest.approx(0.2)  # 2 x max(0.1, 0.0707)
    one = summarize([0.5])
    assert one == {"mean": 0.5, "std": None, "n": 1}
    # undefined below 2 seeds
    assert gain(one, base) == {"mean": pytest.approx(0.25), "spread": None, "twice_std": None}
    assert summarize([]) == {"mean": None, "std": None, "n": 0}


def _plan(students=("bevdet",)) -> dict:
    cells, tables = build_grid(students)
    return {
        "scale": "tiny",
        "overrides": [],
        "cells": [vars(c) | {"groups": list(c.groups)} for c in cells],
        "tables": [
            {"key": t.key, "title": t.title, "rows": [list(r) for r in t.rows], "order": list(t.order)}
            for t in tables
        ],
    }


def _doc(seeds: dict) -> dict:
    return build_results(_plan(), seeds, {"centerpoint": {"checkpoint": "cp.pt", "mAP": 0.6, "NDS": 0.55}})


def test_results_document_and_markdown():
    doc = _doc(
        {
            "bevdet-none": {0: metrics(0.2, 0.30), 1: metrics(0.3, 0.40)},
            "bevdet-centerpoint": {0: metrics(0.3, 0.40), 1: metrics(0.4, 0.50), 2: metrics(0.5, 0.60)},
            "bevdet-mvp": {0: metrics(0.1, 0.2)},
        }
    )
    cp = doc["cells"]["bevdet-centerpoint"]
    assert cp["stats"]["mAP"] == {"mean": pytest.approx(0.4), "std": pytest.approx(0.1), "n": 3}
    assert cp["gain"]["mAP"]["mean"] == pytest.approx(0.15)
    assert cp["gain"]["mAP"]["spread"] == pytest.approx(0.0763763, abs=1e-7)
    assert doc["cells"]["bevdet-none"]["gain"] is None
    assert doc["cells"]["bevdet-mvp"]["gain"]["mAP"]["spread"] is None
    assert doc["cells"]["bevdet4d-centerpoint-layers_H"]["seeds"] == {}
    md = results_markdown(doc)
    assert "| bevdet | CenterPoint | 3 | 0.400 ± 0.100 | 0.500 ± 0.100 |" in md
    assert "| +0.150 ± 0.076 | +0.150 ± 0.076 |" in md
    assert "| bevdet | MVP | 1 | 0.100 | 0.200 |" in md  # one seed: no ± yet
    assert "| CenterPoint | `cp.pt` | 0.600 | 0.550 |" in md
    layers = "## Ablation: which layers are distilled (bevdet4d, CenterPoint teacher)"
    assert layers + "\n\nNo finished run of this table yet." in md  # no table of empty rows
    assert "| no teacher | 0 |" not in md
    claims = "\n".join(check_claims(doc))
    # above the spread (0.076), not above twice the larger std (2 x 0.1)
    verdict = "mAP +0.150 ± 0.076 above the spread (NOT above twice the larger std, 0.200)"
    assert f"bevdet-centerpoint: {verdict}" in claims
    assert "bevdet: MVP 0.100 < CenterPoint 0.400 mAP" in claims
    assert "not every row finished" in claims


def test_ablation_order_claim():
    names = [
        "bevdet4d-none",
        "bevdet4d-centerpoint-layers_B0_B1_B2_H",
        "bevdet4d-centerpoint-layers_H",
        "bevdet4d-centerpoint-layers_B2_H",
        "bevdet4d-centerpoint-components_fgbg_att_scale",
    ]
    plan = _plan(("bevdet4d",))
    seeds = {n: {0: metrics(0.1 * (i + 1), 0.3)} for i, n in enumerate(names)}
    holds = [
        c for c in check_claims(build_results(plan, seeds, {})) if c.startswith("Ablation: which layers")
    ]
    assert holds and "holds" in holds[0] and "NOT" not in holds[0]
    seeds[names[1]] = {0: metrics(0.9, 0.3)}  # B0 + B1 + B2 + H best: not the paper's order
    broken = [
        c for c in check_claims(build_results(plan, seeds, {})) if c.startswith("Ablation: which layers")
    ]
    assert "does NOT hold" in broken[0] and broken[0].endswith("B0 + B1 + B2 + H 0.900")


def test_merge_of_plans_split_by_cell():
    a = _doc({"bevdet-none": {0: metrics(0.2, 0.3), 1: metrics(0.3, 0.4)}})
    b = _doc({"bevdet-centerpoint": {0: metrics(0.3, 0.4), 1: metrics(0.4, 0.5), 2: metrics(0.5, 0.6)}})
    merged = merge_results([a, b], ["a", "b"])
    g = merged["cells"]["bevdet-centerpoint"]["gain"]["mAP"]
    assert g["mean"] == pytest.approx(0.15) and g["spread"] == pytest.approx(0.0763763, abs=1e-7)
    assert merge_results([a, a], ["a", "a2"])["cells"]["bevdet-none"]["stats"]["mAP"]["n"] == 2  # same seeds
    clash = _doc({"bevdet-none": {1: metrics(0.9, 0.9)}})
    with pytest.raises(ValueError, match="bevdet-none seed 1 is in both a and c"):
        merge_results([a, clash], ["a", "c"])
    other = dict(b, scale="full")
    with pytest.raises(ValueError, match="not one plan"):
        merge_results([a, other], ["a", "b"])


def test_baselines_borrowed_from_a_plan_that_differs_only_in_distill_overrides():
    from distillbev.experiments.stats import borrow_baselines

    other = build_results(
        _plan() | {"overrides": ["optim.epochs=8"]},
        {
            "bevdet-none": {0: metrics(0.2, 0.3), 1: metrics(0.3, 0.4)},
            "bevdet-centerpoint": {0: metrics(0.9, 0.9)},
        },
        {},
    )
    plan = _plan() | {"overrides": ["optim.epochs=8", "distill.loss_weight=0.1"]}
    own = {"bevdet-centerpoint": {0: metrics(0.3, 0.4), 1: metrics(0.4, 0.5)}}
    seeds, cells = borrow_baselines(plan, own, other, "plans/a")
    assert cells == ["bevdet-none"]  # distilled cells are never borrowed, only baselines
    assert seeds["bevdet-centerpoint"] == own["bevdet-centerpoint"]
    doc = build_results(plan, seeds, {}, {"source": "plans/a", "cells": cells})
    g = doc["cells"]["bevdet-centerpoint"]["gain"]["mAP"]
    # means 0.35 - 0.25; both std sqrt(0.005): spread sqrt(0.005 / 2 + 0.005 / 2) = 0.0707107
    assert g["mean"] == pytest.approx(0.1) and g["spread"] == pytest.approx(0.0707107, abs=1e-7)
    assert doc["baselines_from"] == {"source": "plans/a", "cells": ["bevdet-none"]}
    assert "Baselines `bevdet-none` from `plans/a`" in results_markdown(doc)
    # the plan's own baseline seeds win: nothing is borrowed for that cell
    mine = own | {"bevdet-none": {0: metrics(0.1, 0.2)}}
    seeds, cells = borrow_baselines(plan, mine, other, "plans/a")
    assert cells == [] and seeds["bevdet-none"] == {0: metrics(0.1, 0.2)}
    # baselines trained with another schedule are other trainings
    longer = other | {"overrides": ["optim.epochs=12"]}
    with pytest.raises(ValueError, match=r"plans/b: its baselines ran with .*'optim.epochs=12'"):
        borrow_baselines(plan, own, longer, "plans/b")
    with pytest.raises(ValueError, match="not a distillbev reproduce results.json"):
        borrow_baselines(plan, own, {"cells": {}}, "plans/c")


def test_baselines_are_borrowed_only_from_the_same_preset_files():
    from distillbev.experiments.stats import borrow_baselines

    def doc_with(presets: dict) -> dict:
        return build_results(_plan() | {"presets": presets}, {"bevdet-none": {0: metrics(0.2, 0.3)}}, {})

    plan = _plan() | {"presets": {"bevdet-none": "aa"}}
    other = doc_with({"bevdet-none": "aa"})
    assert other["cells"]["bevdet-none"]["preset_sha256"] == "aa"
    seeds, cells = borrow_baselines(plan, {}, other, "plans/a")
    assert cells == ["bevdet-none"] and seeds["bevdet-none"] == {0: metrics(0.2, 0.3)}
    with pytest.raises(ValueError, match="plans/b: its bevdet-none ran from other contents of its preset"):
        borrow_baselines(plan, {}, doc_with({"bevdet-none": "bb"}), "plans/b")
    with pytest.raises(ValueError, match="plans/c: its bevdet-none records no sha256 of its presets"):
        borrow_baselines(plan, {}, doc_with({}), "plans/c")
    # split plans of one grid merge only when each cell ran from the same presets
    a = doc_with({"bevdet-none": "aa"})
    b = doc_with({"bevdet-none": "bb"})
    assert merge_results([a, a], ["a", "a2"])["cells"]["bevdet-none"]["preset_sha256"] == "aa"
    with pytest.raises(ValueError, match="bevdet-none ran from other preset files in a than in b"):
        merge_results([a, b], ["a", "b"])


def test_fingerprint_covers_the_weights_a_preset_names(tmp_path):
    """The image encoder a preset starts from is part of its fingerprint: new weights under the same
    preset text are another preset; a named file that is gone gives no fingerprint."""
    from distillbev.experiments.plan import named_weights, preset_sha256

    encoder = tmp_path / "encoder.pt"
    encoder.write_bytes(b"weights v1")
    student = tmp_path / "s.yaml"
    student.write_text(f"model: bevdepth\nstudent:\n  image_pretrained: {encoder}\n")
    assert named_weights(student) == [encoder]
    expected = hashlib.sha256(student.read_bytes() + b"\0" + b"weights v1" + b"\0").hexdigest()
    assert preset_sha256([student]) == expected
    encoder.write_bytes(b"weights v2")
    assert preset_sha256([student]) not in (None, expected)
    encoder.unlink()
    assert named_weights(student) == [None] and preset_sha256([student]) is None


def test_plan_document_fingerprints_each_cells_preset_files(tmp_path):
    from distillbev.experiments.plan import PlanSpec, cell_files, plan_document, preset_sha256

    student, distill = tmp_path / "s.yaml", tmp_path / "d.yaml"
    student.write_text("model: student\n")
    distill.write_text("distill: {}\n")
    expected = hashlib.sha256(b"model: student\n\0distill: {}\n\0").hexdigest()
    assert preset_sha256([student, distill]) == expected
    assert preset_sha256([student, tmp_path / "gone.yaml"]) is None
    spec = PlanSpec(out=tmp_path / "plan")
    cells, tables = build_grid(("bevdet",))
    doc = plan_document(spec, cells, tables)
    base = next(c for c in cells if c.name == "bevdet-none")
    assert doc["presets"]["bevdet-none"] == preset_sha256(cell_files(spec, base))
    distilled = next(c for c in cells if c.distill)
    assert len(cell_files(spec, distilled)) == 2
    assert doc["presets"][distilled.name] != doc["presets"]["bevdet-none"]
