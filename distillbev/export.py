"""ONNX export of a camera student for fixed cameras (``distillbev export``), and running it.

The graph is the student's inference path from images to the CenterHead's raw maps: image backbone +
neck -> depth net -> lift-splat whose pooling triples were computed once from one sample's cameras
(they depend on the camera matrices only) -> [4D: the previous frame lifted the same way,
pre-processed and warped by the ego motion] -> BEV encoder -> FPN_LSS -> CenterHead. No teacher and no
distillation adapters. Decoding (top-k, NMS) stays in Python: ``OnnxStudent.predict`` feeds the raw maps
to ``CenterHead.decode``.

Inputs (batch 1, float32):
- ``images`` (1, N, 3, H, W), normalised as ``Batch.images``;
- temporal students also ``prev_images`` (1, N, 3, H, W), the previous key frame (the current one again
  when there is none), and ``prev_to_current`` (1, 4, 4), the rigid map from the previous LiDAR frame
  to the current one (``temporal.prev_to_current(batch.cam2lidar, batch.prev_cam2lidar)``; identity when
  there is no previous frame).
Outputs: ``task{t}.{branch}`` per task group ``t`` and branch (``BRANCHES``), each (1, k, G_y, G_x);
heatmaps are logits. The file's metadata (``read_metadata``) records the cameras and the sample they
were taken from, the resolved config, and the checkpoint.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distillbev.models.base import Detections
from distillbev.models.bevdet import BEVDet
from distillbev.models.heads import REG_BRANCHES, CenterHead
from distillbev.models.image_heading import handedness, ray_azimuths, to_bev_heading
from distillbev.models.lss import CameraGeometry, frustum_to_lidar
from distillbev.ops.bev_pool import pool_index
from distillbev.train.config import RunConfig

#: Every task group's outputs, in the order of ``SeparateHead``.
BRANCHES: tuple[str, ...] = ("heatmap", *(name for name, _ in REG_BRANCHES))
#: ONNX opset: GridSample (the 4D warp, BEVDepth's DCN) and ScatterElements' add reduction need >= 16.
OPSET = 17
META_PREFIX = "distillbev."


def input_names(student: BEVDet) -> list[str]:
    """``images`` (and ``prev_images``, ``prev_to_current`` for a temporal student)."""
    return ["images", "prev_images", "prev_to_current"] if student.cfg.temporal else ["images"]


def output_names(student: BEVDet) -> list[str]:
    """``task{t}.{branch}`` for every task group and branch."""
    return [f"task{t}.{b}" for t in range(len(student.head.tasks)) for b in BRANCHES]


class FixedCameraStudent(nn.Module):
    """A student's inference path for the cameras ``cams`` (batch 1), in operators ONNX has: the splat
    is a gather + ``scatter_add`` over precomputed triples, and the 4D warp inverts the ego motion as a
    rigid transform (ONNX has no matrix inverse). ``forward`` returns the head's maps in
    ``output_names(student)`` order."""

    def __init__(self, student: BEVDet, cams: CameraGeometry) -> None:
        super().__init__()
        if cams.intrinsics.shape[0] != 1:
            raise ValueError(
                f"export: cameras of one sample expected, got a batch of {cams.intrinsics.shape[0]}"
            )
        self.student = student
        self.cams = CameraGeometry(*(t.detach().float().cpu().clone() for t in cams.tensors()))
        vt = student.view_transformer
        with torch.no_grad():
            index = pool_index(frustum_to_lidar(vt.frustum.cpu(), self.cams), vt.grid, vt.z_range)
        # (P,) each: depth entry, context row and BEV cell of every kept frustum point
        self.register_buffer("depth_index", index.depth_index, persistent=False)
        self.register_buffer("feat_index", index.feat_index, persistent=False)
        self.register_buffer("cell_index", index.cell_index, persistent=False)
        if student.image_heading is not None:  # the rays and mirror signs of these fixed cameras
            cfg = student.cfg
            rays = ray_azimuths(self.cams, cfg.image_size, cfg.feature_size(), cfg.frustum_cell_centers)
            self.register_buffer("rays", rays, persistent=False)
            self.register_buffer("hand", handedness(self.cams).flatten(), persistent=False)
        grid = student.grid
        xs = grid.x_min + (torch.arange(grid.width, dtype=torch.float32) + 0.5) * grid.cell
        ys = grid.y_min + (torch.arange(grid.height, dtype=torch.float32) + 0.5) * grid.cell
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        centres = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(-1, 3)  # (G_y*G_x, 3)
        self.register_buffer("cell_centres", centres, persistent=False)

    def splat(self, depth: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``depth`` (N, D, h, w) probabilities, ``context`` (N, C, h, w) -> BEV (1, C, G_y, G_x)."""
        c = context.shape[1]
        feat = context.permute(0, 2, 3, 1).reshape(-1, c)  # (N*h*w, C)
        prod = feat[self.feat_index] * depth.reshape(-1)[self.depth_index][:, None]  # (P, C)
        gy, gx = self.student.grid.shape
        bev = feat.new_zeros(gy * gx, c).scatter_add(0, self.cell_index[:, None].expand(-1, c), prod)
        return bev.t().reshape(1, c, gy, gx)

    def lift_splat(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (1, N, 3, H, W) -> BEV (1, C, G_y, G_x), as ``BEVDet.lift_splat``."""
        s = self.student
        x = s.neck(s.backbone(images.flatten(0, 1)))  # (N, C_neck, h, w)
        depth_logits, context = s.depth_net(x, self.cams)
        if s.image_heading is not None:  # as BEVDet.lift_splat: the BEV heading fills 2 context channels
            heading = to_bev_heading(s.image_heading(x).float(), self.rays, self.hand)
            context = torch.cat([context, heading.to(context.dtype)], 1)
        return self.splat(depth_logits.float().softmax(1), context.float())

    def warp(self, prev_bev: torch.Tensor, prev_to_current: torch.Tensor) -> torch.Tensor:
        """``temporal.warp_bev`` of ``prev_bev`` (1, C, G_y, G_x): each current cell centre reads the previous
        map at ``prev_to_current^-1`` of itself (bilinear, zeros outside, align_corners=True)."""
        grid = self.student.grid
        rot_t = prev_to_current[:, :3, :3].transpose(1, 2)  # (1, 3, 3): R^-1 of a rigid map
        shift = -(rot_t @ prev_to_current[:, :3, 3:])  # (1, 3, 1)
        affine = torch.cat([rot_t[:, :2, :2], shift[:, :2]], 2)  # (1, 2, 3): x, y rows of current->prev
        src = self.cell_centres @ affine.transpose(1, 2)  # (1, G_y*G_x, 2) metres in the previous frame
        col = (src[..., 0] - grid.x_min) / grid.cell - 0.5
        row = (src[..., 1] - grid.y_min) / grid.cell - 0.5
        h, w = grid.shape
        norm = torch.stack([2 * col / max(w - 1, 1) - 1, 2 * row / max(h - 1, 1) - 1], -1).reshape(1, h, w, 2)
        return F.grid_sample(prev_bev, norm, mode="bilinear", padding_mode="zeros", align_corners=True)

    def forward(
        self,
        images: torch.Tensor,
        prev_images: torch.Tensor | None = None,
        prev_to_current: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """The head's maps ``(1, k, G_y, G_x)`` in ``output_names(student)`` order."""
        s = self.student
        bev = self.lift_splat(images)
        if s.cfg.temporal:  # BEVDet.temporal_fusion: both frames lifted with the current cameras
            cur = s.pre_process(bev)[-1]
            prev = s.pre_process(self.lift_splat(prev_images))[-1]
            bev = torch.cat([cur, self.warp(prev, prev_to_current)], 1)
        stages = s.bev_encoder(bev)
        preds = s.forward_head({"H": s.fpn(stages[0], stages[2])})
        return tuple(p[b] for p in preds for b in BRANCHES)


def example_inputs(
    student: BEVDet,
    images: torch.Tensor,
    prev_images: torch.Tensor | None = None,
    prev_to_current: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """The graph's inputs for one sample (a temporal student without a previous frame gets the
    current images again and the identity, as the dataset does)."""
    if not student.cfg.temporal:
        return (images.float(),)
    prev = images if prev_images is None else prev_images
    motion = torch.eye(4)[None] if prev_to_current is None else prev_to_current
    return images.float(), prev.float(), motion.float()


def export_student(
    student: BEVDet,
    cams: CameraGeometry,
    inputs: Sequence[torch.Tensor],
    path: Path,
    metadata: dict[str, Any],
) -> list[str]:
    """Write ``student`` for the fixed cameras ``cams`` as ONNX to ``path`` (atomically), with
    ``metadata`` (JSON-encoded) under ``distillbev.*`` keys. Returns the output names."""
    import onnx

    from distillbev.io import atomic_path

    graph = FixedCameraStudent(student.eval(), cams).eval()
    outputs = output_names(student)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter (no onnxscript needed) is deprecated in favour of torch.export's;
        # its tracer warns about the Python-side shape arithmetic, which is fixed for fixed cameras.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            tuple(inputs),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=input_names(student),
            output_names=outputs,
            do_constant_folding=True,
        )
        model = onnx.load(str(tmp))
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = META_PREFIX + key, json.dumps(value)
        onnx.save(model, str(tmp))
    return outputs


def read_metadata(path: Path) -> dict[str, Any]:
    """The ``distillbev.*`` metadata of an exported file, decoded (keys without the prefix)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {
        p.key[len(META_PREFIX) :]: json.loads(p.value)
        for p in model.metadata_props
        if p.key.startswith(META_PREFIX)
    }


def export_checkpoint(
    checkpoint: Path, out: Path, index: int = 0, overrides: Sequence[str] = (), dry_run: bool = False
) -> dict[str, Any]:
    """``distillbev export``: the student of ``checkpoint`` with the cameras of val sample ``index`` (of
    the checkpoint's dataroot, or ``--set data.dataroot=...``) fixed, to ``out``. Returns the metadata."""
    from distillbev.config import config_hash, to_dict
    from distillbev.data.collate import collate
    from distillbev.io import check_writable
    from distillbev.structures import CAMERA_NAMES
    from distillbev.train.checkpoint import load_model, model_kind
    from distillbev.train.data import make_dataset

    check_writable(out)
    student, cfg, blob = load_model(checkpoint, overrides=list(overrides))
    if cfg.is_teacher:
        raise ValueError(f"{checkpoint} holds a {cfg.model!r} LiDAR teacher; export takes a camera student")
    if not isinstance(student, BEVDet):
        raise ValueError(
            f"{checkpoint} holds a {model_kind(cfg)!r} student; export supports the lift-splat students "
            "(BEVDet, BEVDepth and their 4D versions)"
        )
    ds = make_dataset(cfg, train=False)
    if not 0 <= index < len(ds):
        raise IndexError(f"--index {index} outside the val split {cfg.data.val_split!r} ({len(ds)} samples)")
    batch = collate([ds[index]])
    cams = CameraGeometry.from_batch(batch)
    meta = {
        "kind": model_kind(cfg),
        "inputs": {"images": [1, *batch.images.shape[1:]]},
        "outputs": output_names(student),
        "cameras": {
            "sample_token": batch.sample_tokens[0],
            "dataroot": cfg.data.dataroot,
            "version": cfg.data.version,
            "split": cfg.data.val_split,
            "index": index,
            "names": list(CAMERA_NAMES[: cams.intrinsics.shape[1]]),
            **{
                k: v[0].tolist()
                for k, v in zip(
                    ("intrinsics", "cam2lidar", "post_rot", "post_tran"), cams.tensors(), strict=True
                )
            },
        },
        "checkpoint": {
            "path": str(checkpoint),
            "step": blob["step"],
            "config_hash": blob["config_hash"],
            "git_sha": blob["git_sha"],
        },
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
    }
    if cfg.student.temporal:
        meta["inputs"] |= {"prev_images": meta["inputs"]["images"], "prev_to_current": [1, 4, 4]}
    if dry_run:
        return meta
    from distillbev.models.temporal import prev_to_current

    motion = prev_to_current(batch.cam2lidar, batch.prev_cam2lidar) if cfg.student.temporal else None
    inputs = example_inputs(student, batch.images, batch.prev_images, motion)
    export_student(student, cams, inputs, out, meta)
    return meta


class OnnxStudent:
    """An exported student run by onnxruntime (CPU): ``raw`` gives the head's maps per task group,
    ``predict`` the decoded detections (``CenterHead.decode`` of the config in the file)."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        from distillbev.config import config_from_dict

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.metadata = read_metadata(path)
        cfg = config_from_dict(RunConfig, self.metadata["config"], f"{path} (metadata)").student
        self.head = CenterHead(cfg.fpn_channels, cfg.bev_grid(), cfg.head)  # decoding only: no weights
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def raw(self, *inputs: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """The head's maps per task group (as ``forward_head``), from inputs in ``input_names`` order."""
        feed = {
            name: x.detach().cpu().float().numpy() for name, x in zip(self.input_names, inputs, strict=True)
        }
        maps = dict(zip(self.output_names, self.session.run(None, feed), strict=True))
        return [
            {b: torch.from_numpy(maps[f"task{t}.{b}"]) for b in BRANCHES} for t in range(len(self.head.tasks))
        ]

    def predict(self, *inputs: torch.Tensor) -> list[Detections]:
        """Decoded detections (one sample) in the LiDAR frame of the fixed cameras."""
        return self.head.decode(self.raw(*inputs))
