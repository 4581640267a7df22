"""The official nuScenes detection metrics (nuscenes-devkit ``DetectionEval``), as a flat dict.

One code path for the synthetic world, v1.0-mini and v1.0-trainval: only ``(dataroot, version, split)``
change. The devkit filters ground truth and predictions to each class's
evaluation range (50 m vehicles, 40 m pedestrian/cycles, 30 m cone/barrier) and drops ground truth
with no LiDAR/radar point, so nothing outside the evaluated range is ever counted as a miss.

Per-distance AP re-runs the devkit's matching on the already filtered boxes of each distance bin
(ground truth and predictions both by their own ego distance); the bin's mAP averages only over the
classes that have ground truth in that bin.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from nuscenes import NuScenes
from nuscenes.eval.common.config import config_factory
from nuscenes.eval.common.data_classes import EvalBoxes
from nuscenes.eval.detection.evaluate import DetectionEval
from nuscenes.utils.splits import get_scenes_of_split, is_predefined_split

from distillbev.data.index import open_devkit
from distillbev.eval.localisation import localisation_breakdown
from distillbev.eval.motion import motion_breakdown
from distillbev.eval.results import ResultsError, load_results
from distillbev.io import write_json
from distillbev.structures import CLASS_NAMES

#: Headline metrics: our name -> key in the devkit's ``tp_errors``.
TP_ERROR_NAMES: dict[str, str] = {
    "ATE": "trans_err",
    "ASE": "scale_err",
    "AOE": "orient_err",
    "AVE": "vel_err",
    "AAE": "attr_err",
}
HEADLINE_METRICS: tuple[str, ...] = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")
#: Default ego-distance bins (m) of the per-distance AP table.
DISTANCE_BINS: tuple[tuple[float, float], ...] = ((0.0, 20.0), (20.0, 30.0), (30.0, 50.0))


def load_nuscenes(dataroot: str | Path, version: str, verbose: bool = False) -> NuScenes:
    """Load a nuScenes-format dataset with the devkit (quietly unless ``verbose``)."""
    dataroot = Path(dataroot)
    if not (dataroot / version).is_dir():
        raise FileNotFoundError(
            f"no nuScenes tables at {dataroot / version} (dataroot={dataroot}, version={version})"
        )
    with _quiet(not verbose):
        return open_devkit(dataroot, version, verbose)


def split_sample_tokens(nusc: NuScenes, split: str) -> list[str]:
    """Sample tokens of a predefined or custom (``splits.json``) split, scene by scene in time order."""
    try:
        scene_names = set(get_scenes_of_split(split, nusc))
    except (ValueError, KeyError) as e:
        raise ValueError(f"split {split!r} of {nusc.dataroot}/{nusc.version}: {e}") from None
    tokens = []
    for scene in nusc.scene:
        if scene["name"] not in scene_names:
            continue
        token = scene["first_sample_token"]
        while token:
            tokens.append(token)
            token = nusc.get("sample", token)["next"]
    return tokens


def lidar_to_global(nusc: NuScenes, sample_token: str) -> np.ndarray:
    """The 4x4 transform from a sample's key-frame LIDAR_TOP frame to the global frame."""
    from nuscenes.utils.geometry_utils import transform_matrix
    from pyquaternion import Quaternion

    sd = nusc.get("sample_data", nusc.get("sample", sample_token)["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    ego2global = transform_matrix(pose["translation"], Quaternion(pose["rotation"]))
    lidar2ego = transform_matrix(cs["translation"], Quaternion(cs["rotation"]))
    return ego2global @ lidar2ego


@contextlib.contextmanager
def _quiet(enabled: bool = True):
    """Swallow the devkit's prints and tqdm bars (both go through sys.stdout / sys.stderr)."""
    if not enabled:
        yield
        return
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def _none_if_nan(x: float) -> float | None:
    """JSON-safe metric: undefined (NaN) becomes None."""
    x = float(x)
    return None if math.isnan(x) else x


def _with_placeholder(nusc: NuScenes, results: dict[str, Any], tokens: Sequence[str]) -> dict[str, Any]:
    """A copy of an empty result set plus one box 10 km from the ego, which the range filter removes.

    The devkit cannot filter a result set with no box at all (it infers the box type from the first
    box), while an empty prediction set has a well-defined score (AP 0, TP errors 1).
    """
    token = tokens[0]
    sd = nusc.get("sample_data", nusc.get("sample", token)["data"]["LIDAR_TOP"])
    ego = nusc.get("ego_pose", sd["ego_pose_token"])["translation"]
    box = {
        "sample_token": token,
        "translation": [ego[0] + 1e4, ego[1], ego[2]],
        "size": [1.0, 1.0, 1.0],
        "rotation": [1.0, 0.0, 0.0, 0.0],
        "velocity": [0.0, 0.0],
        "detection_name": CLASS_NAMES[0],
        "detection_score": 1e-6,
        "attribute_name": "",
    }
    out = {"meta": results["meta"], "results": dict(results["results"])}
    out["results"][token] = [box]
    return out


def _restrict(boxes: EvalBoxes, lo: float, hi: float) -> EvalBoxes:
    """The boxes whose ego distance lies in ``[lo, hi)`` (every sample token kept)."""
    out = EvalBoxes()
    for token in boxes.sample_tokens:
        out.add_boxes(token, [b for b in boxes[token] if lo <= b.ego_dist < hi])
    return out


def _distance_metrics(ev: DetectionEval, bins: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Per-distance-bin AP (per class and averaged over the classes present in each bin)."""
    gt_all, pred_all = ev.gt_boxes, ev.pred_boxes
    flat: dict[str, Any] = {}
    try:
        for lo, hi in bins:
            tag = f"{lo:g}-{hi:g}m"
            ev.gt_boxes, ev.pred_boxes = _restrict(gt_all, lo, hi), _restrict(pred_all, lo, hi)
            metrics, _ = ev.evaluate()
            aps = metrics.mean_dist_aps
            present = []
            for name in CLASS_NAMES:
                n_gt = sum(b.detection_name == name for b in ev.gt_boxes.all)
                flat[f"AP_{tag}/{name}"] = float(aps[name]) if n_gt else None
                if n_gt:
                    present.append(float(aps[name]))
            flat[f"mAP_{tag}"] = float(np.mean(present)) if present else None
            flat[f"num_gt_{tag}"] = len(ev.gt_boxes.all)
    finally:
        ev.gt_boxes, ev.pred_boxes = gt_all, pred_all
    return flat


def flatten_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The devkit's ``metrics_summary`` as a flat dict: headline, per-class AP and per-class TP errors."""
    flat: dict[str, Any] = {"mAP": float(summary["mean_ap"]), "NDS": float(summary["nd_score"])}
    for short, key in TP_ERROR_NAMES.items():
        flat[f"m{short}"] = _none_if_nan(summary["tp_errors"][key])
    for name in CLASS_NAMES:
        flat[f"AP/{name}"] = float(summary["mean_dist_aps"][name])
        for short, key in TP_ERROR_NAMES.items():
            flat[f"{short}/{name}"] = _none_if_nan(summary["label_tp_errors"][name][key])
    for name in CLASS_NAMES:
        for th, ap in summary["label_aps"][name].items():
            flat[f"AP@{float(th):g}m/{name}"] = float(ap)
    flat["eval_time_s"] = float(summary["eval_time"])
    return flat


def evaluate(
    dataroot: str | Path,
    version: str,
    split: str,
    results_path: str | Path,
    out_dir: str | Path,
    verbose: bool = False,
    nusc: NuScenes | None = None,
    distance_bins: Sequence[tuple[float, float]] = DISTANCE_BINS,
) -> dict[str, Any]:
    """Score a result JSON with the official nuScenes detection evaluation (``detection_cvpr_2019``).

    Returns a flat dict: ``mAP``, ``NDS``, ``mATE`` .. ``mAAE``, ``AP/<class>``, ``ATE/<class>`` ..
    ``AAE/<class>`` (None where the devkit leaves them undefined), ``AP@<th>m/<class>``,
    ``mAP_<lo>-<hi>m`` and ``AP_<lo>-<hi>m/<class>`` per distance bin (empty ``distance_bins`` skips
    them), the heading / velocity breakdown ``motion/<key>/<class>`` of
    :func:`distillbev.eval.motion.motion_breakdown`, the radial / lateral centre error
    ``loc/<key>/<class>`` of :func:`distillbev.eval.localisation.localisation_breakdown`, counts and
    ``eval_time_s``. The dict is also written atomically to ``out_dir/metrics.json``; the devkit's own
    ``metrics_summary.json`` / ``metrics_details.json`` land beside it. Pass an already loaded ``nusc``
    to skip reloading the tables.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if nusc is None:
        nusc = load_nuscenes(dataroot, version, verbose=verbose)
    tokens = split_sample_tokens(nusc, split)
    if not tokens:
        raise ValueError(f"split {split!r} of {nusc.dataroot}/{nusc.version} has no samples")
    results = load_results(results_path, tokens=tokens)
    if is_predefined_split(split):
        extra = sorted(set(results["results"]) - set(tokens))
        if extra:
            raise ResultsError(
                f"{results_path}: {len(extra)} sample token(s) outside split {split!r} (the devkit requires "
                f"exactly the split's tokens for predefined splits), e.g. {extra[0]}"
            )
    n_pred = sum(len(results["results"][t]) for t in tokens)
    eval_path = Path(results_path)
    if n_pred == 0:
        eval_path = out_dir / "results_placeholder.json"
        write_json(eval_path, _with_placeholder(nusc, results, tokens), indent=None)

    cfg = config_factory("detection_cvpr_2019")
    with _quiet(not verbose):
        ev = DetectionEval(
            nusc, cfg, str(eval_path), eval_set=split, output_dir=str(out_dir), verbose=verbose
        )
        if not ev.gt_boxes.all:
            raise ValueError(f"split {split!r}: no ground-truth box survives the devkit's range/point filter")
        summary = ev.main(plot_examples=0, render_curves=False)
        flat = flatten_summary(summary)
        flat.update(motion_breakdown(ev.gt_boxes, ev.pred_boxes, dist_th=cfg.dist_th_tp))
        flat.update(localisation_breakdown(ev.gt_boxes, ev.pred_boxes, dist_th=cfg.dist_th_tp))
        if distance_bins:
            flat.update(_distance_metrics(ev, distance_bins))
    flat.update(
        {
            "num_samples": len(tokens),
            "num_gt": len(ev.gt_boxes.all),
            "num_pred": len(ev.pred_boxes.all),
            "split": split,
            "version": nusc.version,
            "total_time_s": time.perf_counter() - start,
        }
    )
    write_json(out_dir / "metrics.json", flat)
    return flat


def load_metrics(path: str | Path) -> dict[str, Any]:
    """Read a ``metrics.json`` written by :func:`evaluate`."""
    path = Path(path)
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"metrics file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    missing = [k for k in HEADLINE_METRICS if k not in metrics]
    if missing:
        raise ValueError(f"{path}: missing metric(s) {', '.join(missing)}")
    return metrics
