"""What a checkpoint's velocity branch predicts at the ground-truth centres, against the targets.

    python scripts/velocity_probe.py RUN/checkpoint.pt [--split val] [--samples 64] [--stride 8]

Runs the model (eval mode, no augmentation) on every ``stride``-th sample of the split (the first
``samples`` of it), builds the head's own training targets for the same batch and prints, at the
ground-truth centre cells: the targets' mean speed and the share of objects moving faster than 0.5 m/s,
the predicted mean speed there, and the predicted velocity map's spread over the whole grid. A branch
that answers ~0 at the centres while its map varies elsewhere has settled on the L1 loss's median
(most objects stand still), not on motion (docs/results/levers-8ep/results.md, "BEVDepth4D").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from distillbev.data.collate import collate
from distillbev.train.checkpoint import load_model
from distillbev.train.data import make_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--split", choices=("train", "val"), default="val")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, cfg, _ = load_model(args.checkpoint)
    model.eval()
    ds = make_dataset(cfg, train=args.split == "train")
    batch = collate([ds[i] for i in range(0, min(args.samples, len(ds)), args.stride)])
    with torch.no_grad():
        preds = model.head(model.forward_bev(batch)["H"])
    targets = model.head.build_targets(batch.gt_boxes, batch.gt_labels)
    speed_t, speed_p = [], []
    for t, pred in enumerate(preds):
        at = model.head.boxes_at(pred, targets.indices[t])  # (B, M, 10), the targets' columns
        mask = targets.masks[t].bool()
        speed_t.append(targets.box_targets[t][..., 8:10][mask].norm(dim=-1))
        speed_p.append(at[..., 8:10][mask].norm(dim=-1) * model.head.cfg.velocity_scale)
    st, sp = torch.cat(speed_t), torch.cat(speed_p)
    vel_map = torch.cat([p["vel"] for p in preds], 1) * model.head.cfg.velocity_scale
    print(f"{args.checkpoint}: {len(batch.gt_boxes)} samples of {args.split}, {len(st)} objects")
    moving = st > 0.5
    share = moving.float().mean()
    print(f"  targets at centres:    mean speed {st.mean():.3f} m/s, moving (> 0.5 m/s) {share:.2f}")
    print(
        f"  predicted at centres:  mean speed {sp.mean():.4f} m/s (moving objects {sp[moving].mean():.4f}, "
        f"static {sp[~moving].mean():.4f})"
    )
    print(f"  predicted map:         std {vel_map.std():.3f} m/s, max |v| {vel_map.abs().max():.2f} m/s")


if __name__ == "__main__":
    main()
