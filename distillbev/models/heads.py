"""CenterHead: the CenterPoint detection head shared by the LiDAR teachers and the CNN camera students.

Layers, targets, losses and decoding follow CenterPoint (docs/architectures.md, The shared head): a
shared 3x3 conv, then per task group a ``SeparateHead`` with one two-conv branch per output (heatmap,
reg, height, dim, rot, vel). Teacher and student heads have identical task branches so the student's
can be copied from the teacher.
Boxes are ``(x, y, z_centre, l, w, h, yaw, vx, vy)`` in the key-frame LiDAR frame; velocity in m/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from distillbev.layers.conv import ConvBNReLU
from distillbev.models.base import Detections
from distillbev.models.head_targets import (
    CODE_SIZE,
    MAX_OBJECTS,
    HeadTargets,
    build_head_targets,
    clip_sigmoid,
    draw_gaussian,
    gaussian_focal_loss,
    gaussian_radius,
)
from distillbev.ops.nms import circle_nms, rotated_nms
from distillbev.structures import BOX_DIM, CLASS_NAMES, TASK_GROUPS, BEVGrid, class_index

__all__ = [
    "CenterHead",
    "HeadConfig",
    "HeadTargets",
    "SeparateHead",
    "clip_sigmoid",
    "draw_gaussian",
    "gaussian_focal_loss",
    "gaussian_radius",
]

#: Regression branches and their output channels, in the order of the 10-vector box code.
REG_BRANCHES: tuple[tuple[str, int], ...] = (("reg", 2), ("height", 1), ("dim", 3), ("rot", 2), ("vel", 2))
#: Boxes entering rotated NMS per task (CenterPoint's ``nms_pre_max_size``).
NMS_PRE_MAX = 1000
#: |z| limit (m) of decoded centres (the post-centre range's z part).
POST_CENTER_Z = 10.0
#: Scale-NMS (BEVDet): BEV size factor per class before rotated NMS; barrier uses circle NMS instead.
SCALE_NMS_FACTORS: dict[str, float] = {
    "car": 1.0,
    "truck": 0.7,
    "construction_vehicle": 0.7,
    "bus": 0.4,
    "trailer": 0.55,
    "barrier": 1.0,
    "motorcycle": 1.0,
    "bicycle": 1.0,
    "pedestrian": 4.5,
    "traffic_cone": 9.0,
}
#: Scale-NMS IoU threshold per class (a task uses the largest of its classes): 0.5 for ped+cone, else 0.2.
SCALE_NMS_IOU: dict[str, float] = {
    name: 0.5 if name in ("pedestrian", "traffic_cone") else 0.2 for name in CLASS_NAMES
}
#: Classes whose task uses circle NMS under scale-NMS.
SCALE_NMS_CIRCLE_CLASSES: frozenset[str] = frozenset({"barrier"})


@dataclass(frozen=True)
class HeadConfig:
    """CenterHead hyper-parameters (docs/architectures.md, The shared head)."""

    share_channels: int = 64  # shared 3x3 conv width
    head_channels: int = 64  # per-branch hidden width
    min_radius: int = 2  # Gaussian radius floor (cells)
    gaussian_overlap: float = 0.1
    code_weights: tuple[float, ...] = (
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
        0.2,
        0.2,
    )  # dx,dy,z,log lwh,sin,cos,vx,vy
    box_loss_weight: float = 0.25
    # The velocity branch predicts v / velocity_scale (m/s); 1 = CenterPoint. Velocities are ~10x the
    # other regression targets, and AdamW moves every output by about the same amount per step, so a
    # short schedule never reaches them at 1 (the branch sits at the median, 0 m/s).
    velocity_scale: float = 1.0
    # Decoding: a box whose predicted speed exceeds this (m/s) gets its heading turned by pi when that
    # heading points against its velocity (objects move forwards); 0 = off (CenterPoint).
    heading_from_motion: float = 0.0
    top_k: int = 500  # decoding candidates per task, over (class x cell)
    score_threshold: float = 0.1
    nms: Literal["circle", "rotate", "scale", "none"] = "circle"
    nms_iou_threshold: float = 0.2  # rotated NMS ("rotate" mode)
    circle_radius: tuple[float, ...] = (
        4.0,
        12.0,
        10.0,
        1.0,
        0.85,
        0.175,
    )  # per task, vs SQUARED distance (quirk)
    max_per_task: int = 83
    post_center_range: float = 61.2  # |x|, |y| limit (m) of decoded centres
    heatmap_bias: float = -2.19
    tasks: tuple[tuple[str, ...], ...] = TASK_GROUPS  # heatmap groups; one group of all 10 = cheapest on CPU
    class_aware_nms: bool = False  # NMS separately per class (needed when a task mixes many classes)


class SeparateHead(nn.Module):
    """One task group's branches; each = 3x3 ConvBNReLU then a 3x3 conv with bias to its outputs."""

    def __init__(self, in_channels: int, head_channels: int, num_classes: int, heatmap_bias: float) -> None:
        super().__init__()
        outputs = (("heatmap", num_classes),) + REG_BRANCHES
        self.branches = nn.ModuleDict(
            {
                name: nn.Sequential(
                    ConvBNReLU(in_channels, head_channels), nn.Conv2d(head_channels, k, 3, padding=1)
                )
                for name, k in outputs
            }
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.branches["heatmap"][-1].bias, heatmap_bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` (B, C, H, W) -> {"heatmap": (B, n_t, H, W) logits, "reg": (B, 2, H, W), ...}."""
        return {name: branch(x) for name, branch in self.branches.items()}


class CenterHead(nn.Module):
    """CenterPoint head on a BEV map laid out on ``grid``: heatmaps per task group plus box regression."""

    def __init__(
        self,
        in_channels: int,
        grid: BEVGrid,
        cfg: HeadConfig = HeadConfig(),
        tasks: tuple[tuple[str, ...], ...] | None = None,
    ) -> None:
        super().__init__()
        tasks = cfg.tasks if tasks is None else tasks
        for field, n in (("code_weights", CODE_SIZE), ("circle_radius", len(tasks))):
            if len(getattr(cfg, field)) != n:
                raise ValueError(f"HeadConfig.{field}: expected {n} values, got {len(getattr(cfg, field))}")
        if cfg.heading_from_motion < 0:
            raise ValueError(f"HeadConfig.heading_from_motion must be >= 0, got {cfg.heading_from_motion}")
        if not cfg.velocity_scale > 0:
            raise ValueError(f"HeadConfig.velocity_scale must be > 0, got {cfg.velocity_scale}")
        self.grid, self.cfg, self.tasks = grid, cfg, tasks
        self.class_labels = [
            [class_index(name) for name in names] for names in tasks
        ]  # global label per channel
        self.shared_conv = ConvBNReLU(in_channels, cfg.share_channels)
        nn.init.kaiming_normal_(self.shared_conv.conv.weight, mode="fan_out", nonlinearity="relu")
        self.task_heads = nn.ModuleList(
            SeparateHead(cfg.share_channels, cfg.head_channels, len(names), cfg.heatmap_bias)
            for names in tasks
        )

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """``x`` (B, C, H, W) on ``grid`` -> per task {"heatmap", "reg", "height", "dim", "rot", "vel"}."""
        return self.forward_shared(self.shared_map(x))

    def shared_map(self, x: torch.Tensor) -> torch.Tensor:
        """The shared 3x3 conv's output ``(B, share_channels, H, W)``: what every task branch reads."""
        if tuple(x.shape[-2:]) != self.grid.shape:
            raise ValueError(
                f"CenterHead: input map is {tuple(x.shape[-2:])} but the head grid is {self.grid.shape}"
            )
        return self.shared_conv(x)

    def forward_shared(self, shared: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """The task branches on the shared map (``shared_map``'s output)."""
        return [head(shared) for head in self.task_heads]

    # ----------------------------------------------------------------------------------------- training
    def build_targets(self, gt_boxes: list[torch.Tensor], gt_labels: list[torch.Tensor]) -> HeadTargets:
        """Heatmap and regression targets of a batch (see ``head_targets.build_head_targets``)."""
        return build_head_targets(
            gt_boxes,
            gt_labels,
            self.grid,
            self.tasks,
            self.cfg.min_radius,
            self.cfg.gaussian_overlap,
            device=self.shared_conv.conv.weight.device,
            max_objects=MAX_OBJECTS,
        )

    def loss(
        self,
        preds: list[dict[str, torch.Tensor]],
        gt_boxes: list[torch.Tensor],
        gt_labels: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """{"heatmap": sum over tasks of the focal loss, "box": sum over tasks of weighted L1}."""
        return self.loss_from_targets(preds, self.build_targets(gt_boxes, gt_labels))

    def loss_from_targets(
        self, preds: list[dict[str, torch.Tensor]], targets: HeadTargets
    ) -> dict[str, torch.Tensor]:
        """Losses against prebuilt ``targets`` (lets distillation reuse the GT heatmaps).

        Per task: focal loss / max(1, #peak cells in the batch); box L1 weighted by mask x code weight,
        divided by (#objects in the batch + 1e-4), times ``box_loss_weight`` (CenterPoint's normalisation).
        """
        code_weights = torch.tensor(self.cfg.code_weights, device=targets.box_targets[0].device)
        heat_total, box_total = 0.0, 0.0
        target_scale = torch.ones(CODE_SIZE, device=code_weights.device)
        target_scale[8:10] = 1.0 / self.cfg.velocity_scale
        for t, pred in enumerate(preds):
            target = targets.heatmaps[t]
            num_pos = max(float(target.eq(1).sum()), 1.0)
            heat_total = heat_total + gaussian_focal_loss(clip_sigmoid(pred["heatmap"]), target) / num_pos
            gathered = self.boxes_at(pred, targets.indices[t])  # (B, M, 10)
            mask = targets.masks[t].float()  # (B, M)
            weight = mask[..., None] * code_weights  # (B, M, 10)
            diff = gathered - targets.box_targets[t] * target_scale
            l1 = (diff.abs() * weight).sum() / (mask.sum() + 1e-4)
            box_total = box_total + self.cfg.box_loss_weight * l1
        return {"heatmap": heat_total, "box": box_total}

    @staticmethod
    def boxes_at(pred: dict[str, torch.Tensor], indices: torch.Tensor) -> torch.Tensor:
        """(B, M, 10) regression branches of one task's ``pred`` (in ``REG_BRANCHES`` order, the box
        targets' columns) at the flat cells ``indices`` (B, M) of ``HeadTargets.indices``."""
        box_pred = torch.cat([pred[name] for name, _ in REG_BRANCHES], 1).float()  # (B, 10, H, W)
        box_pred = box_pred.flatten(2).transpose(1, 2)  # (B, H*W, 10)
        return box_pred.gather(1, indices[..., None].expand(-1, -1, CODE_SIZE))

    # ---------------------------------------------------------------------------------------- inference
    def score_map(self, preds: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """(B, 1, H, W): max over all classes of clamp(sigmoid(heatmap), 1e-4, 1 - 1e-4)."""
        return torch.cat([clip_sigmoid(p["heatmap"]) for p in preds], 1).amax(1, keepdim=True)

    @staticmethod
    def gt_score_map(targets: HeadTargets) -> torch.Tensor:
        """(B, 1, H, W): max over all classes of the GT Gaussian heatmaps."""
        return torch.cat(targets.heatmaps, 1).amax(1, keepdim=True)

    @torch.no_grad()
    def decode(self, preds: list[dict[str, torch.Tensor]]) -> list[Detections]:
        """Detections per sample: top-k over (class x cell), decode, threshold, centre range, per-task NMS."""
        n_b = preds[0]["heatmap"].shape[0]
        per_sample: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = [[] for _ in range(n_b)]
        for t, pred in enumerate(preds):
            boxes, scores, labels = self._decode_task(pred, t)  # (B, K, 9), (B, K), (B, K)
            for b in range(n_b):
                keep = (scores[b] > self.cfg.score_threshold) & (
                    boxes[b, :, :2].abs() <= self.cfg.post_center_range
                ).all(1)
                keep &= boxes[b, :, 2].abs() <= POST_CENTER_Z
                bx, sc, lb = boxes[b][keep], scores[b][keep], labels[b][keep]
                idx = (
                    self._nms_per_class(bx, sc, lb, t)
                    if self.cfg.class_aware_nms
                    else self._nms(bx, sc, lb, t)
                )
                per_sample[b].append((bx[idx], sc[idx], lb[idx]))
        return [
            Detections(
                boxes=torch.cat([d[0] for d in dets]) if dets else torch.zeros(0, BOX_DIM),
                scores=torch.cat([d[1] for d in dets]) if dets else torch.zeros(0),
                labels=torch.cat([d[2] for d in dets]) if dets else torch.zeros(0, dtype=torch.long),
            )
            for dets in per_sample
        ]

    def _decode_task(
        self, pred: dict[str, torch.Tensor], t: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Top-k candidates of task ``t``: boxes (B, K, 9), scores (B, K), global labels (B, K)."""
        heat = torch.sigmoid(pred["heatmap"].float())  # (B, n_t, H, W)
        n_b, n_c, h, w = heat.shape
        scores, flat = heat.flatten(1).topk(min(self.cfg.top_k, n_c * h * w), dim=1)  # (B, K)
        cls, cell = flat // (h * w), flat % (h * w)
        row, col = cell // w, cell % w

        def at(name: str) -> torch.Tensor:  # (B, K, k) prediction of a branch at the chosen cells
            m = pred[name].float().flatten(2)  # (B, k, H*W)
            return m.gather(2, cell[:, None].expand(-1, m.shape[1], -1)).transpose(1, 2)

        reg, rot = at("reg"), at("rot")
        x = (col + reg[..., 0]) * self.grid.cell + self.grid.x_min
        y = (row + reg[..., 1]) * self.grid.cell + self.grid.y_min
        yaw = torch.atan2(rot[..., 0], rot[..., 1])
        vel = at("vel") * self.cfg.velocity_scale  # (B, K, 2) m/s
        if self.cfg.heading_from_motion > 0:
            moving = vel.norm(dim=-1) > self.cfg.heading_from_motion
            backwards = torch.cos(yaw) * vel[..., 0] + torch.sin(yaw) * vel[..., 1] < 0
            turned = torch.remainder(yaw + 2 * math.pi, 2 * math.pi) - math.pi  # yaw + pi in [-pi, pi)
            yaw = torch.where(moving & backwards, turned, yaw)
        xy = torch.stack([x, y], -1)
        boxes = torch.cat([xy, at("height"), torch.exp(at("dim")), yaw[..., None], vel], -1)
        labels = torch.tensor(self.class_labels[t], device=heat.device)[cls]
        return boxes, scores, labels

    def _nms_per_class(
        self, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, t: int
    ) -> torch.Tensor:
        """``_nms`` run separately on each class of task ``t`` (scale-NMS then uses that class's own
        factor and IoU threshold); the best ``max_per_task`` survivors overall, best first."""
        kept = []
        for label in labels.unique():
            idx = torch.nonzero(labels == label).squeeze(1)
            name = CLASS_NAMES[int(label)]
            kept.append(idx[self._nms(boxes[idx], scores[idx], labels[idx], t, (name,))])
        if not kept:
            return torch.zeros(0, dtype=torch.long, device=boxes.device)
        kept_all = torch.cat(kept)
        order = torch.sort(scores[kept_all], descending=True, stable=True).indices
        return kept_all[order][: self.cfg.max_per_task]

    def _nms(
        self,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        labels: torch.Tensor,
        t: int,
        names: tuple[str, ...] | None = None,
    ) -> torch.Tensor:
        """Kept indices (best first, at most ``max_per_task``) of one sample's task-``t`` boxes."""
        cfg = self.cfg
        names = self.tasks[t] if names is None else names
        match cfg.nms:
            case "circle":
                return circle_nms(boxes[:, :2], scores, cfg.circle_radius[t], cfg.max_per_task)
            case "rotate":
                return rotated_nms(
                    boxes[:, [0, 1, 3, 4, 6]], scores, cfg.nms_iou_threshold, NMS_PRE_MAX, cfg.max_per_task
                )
            case "scale":
                if all(name in SCALE_NMS_CIRCLE_CLASSES for name in names):
                    return circle_nms(boxes[:, :2], scores, cfg.circle_radius[t], cfg.max_per_task)
                factors = torch.tensor(
                    [SCALE_NMS_FACTORS[CLASS_NAMES[i]] for i in range(len(CLASS_NAMES))], device=boxes.device
                )[labels]  # (K,)
                bev = boxes[:, [0, 1, 3, 4, 6]].clone()
                bev[:, 2:4] *= factors[:, None]
                iou = max(SCALE_NMS_IOU[name] for name in names)
                return rotated_nms(bev, scores, iou, NMS_PRE_MAX, cfg.max_per_task)
            case "none":
                return torch.sort(scores, descending=True, stable=True).indices[: cfg.max_per_task]
        raise ValueError(f"HeadConfig.nms: unknown NMS kind {cfg.nms!r}")
