"""The heading oracle (``eval/heading_oracle.py``): reversed headings of perfect boxes are turned back
and score as perfect again; headings off by less than 90 degrees, barriers and unmatched boxes are kept."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pyquaternion import Quaternion

from distillbev.eval.fake_predictions import gt_predictions
from distillbev.eval.heading_oracle import turn_headings_to_gt
from distillbev.eval.nuscenes_eval import evaluate
from distillbev.eval.results import write_results


def _turn(box: dict, angle: float) -> None:
    q = Quaternion(axis=[0.0, 0.0, 1.0], angle=angle) * Quaternion(box["rotation"])
    box["rotation"] = [float(v) for v in q.elements]


def test_reversed_headings_are_turned_back_and_score_perfect(eval_world, tmp_path):
    perfect = gt_predictions(eval_world.nusc, eval_world.split)
    spoilt = copy.deepcopy(perfect)
    reversed_, kept, barriers = 0, 0, 0
    for k, box in enumerate(b for boxes in spoilt["results"].values() for b in boxes):
        if box["detection_name"] in ("barrier", "traffic_cone"):
            barriers += box["detection_name"] == "barrier"
            continue
        if k % 3 == 0:
            _turn(box, np.pi)  # reversed: the oracle turns it back
            reversed_ += 1
        elif k % 3 == 1:
            _turn(box, np.radians(60.0))  # wrong but not reversed: kept
            kept += 1
    assert reversed_ >= 10 and kept >= 10
    far = copy.deepcopy(next(b for boxes in spoilt["results"].values() for b in boxes))
    far["translation"][0] += 50.0  # no GT within 2 m: left alone
    _turn(far, np.pi)
    spoilt["results"][far["sample_token"]].append(far)

    turned, matched, n_turned = turn_headings_to_gt(eval_world.nusc, spoilt)
    assert n_turned == reversed_
    assert matched == sum(len(v) for v in perfect["results"].values()) - sum(
        b["detection_name"] in ("barrier", "traffic_cone") for v in perfect["results"].values() for b in v
    )
    assert spoilt["results"][far["sample_token"]][-1]["rotation"] == far["rotation"]  # input untouched
    assert turned["results"][far["sample_token"]][-1]["rotation"] == far["rotation"]  # unmatched: kept

    path = write_results(turned, tmp_path / "turned.json")
    m = evaluate(eval_world.dataroot, eval_world.version, eval_world.split, path, tmp_path / "m")
    base = write_results(spoilt, tmp_path / "spoilt.json")
    m0 = evaluate(eval_world.dataroot, eval_world.version, eval_world.split, base, tmp_path / "m0")
    # Turned back, only the 60-degree errors remain (every class's mean orientation error is at most 60
    # degrees); before, a third of the boxes were 180 degrees off.
    assert 0.1 < m["mAOE"] <= np.radians(60.0) + 1e-3
    assert m0["mAOE"] > m["mAOE"] + 0.3
    assert m["NDS"] > m0["NDS"] and m["mAP"] == pytest.approx(m0["mAP"])
