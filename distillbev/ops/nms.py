"""Bird's-eye-view NMS in pure PyTorch: circle NMS and exact rotated-IoU NMS.

Both are greedy by score: the boxes are sorted once, a boolean "i suppresses j" matrix (upper
triangle, i before j) is built with tensor ops, and the greedy pass is a short loop over it on the
CPU (K <= 1000 after top-k, about a millisecond).

Rotated boxes are ``(x, y, l, w, yaw)`` rows: centre (m), length along the heading, width, yaw
counter-clockwise from +x. The exact IoU of two rotated rectangles clips one by the other's four edges
(Sutherland-Hodgman, vectorised over pairs with padded vertex lists) and takes the shoelace area.
"""

from __future__ import annotations

import numpy as np
import torch

#: Pairs whose IoU is computed at once (bounds memory: ~1 kB of temporaries per pair).
_PAIR_CHUNK = 65536


def bev_corners(boxes: torch.Tensor) -> torch.Tensor:
    """Corners ``(N, 4, 2)`` of rotated boxes ``(N, 5)`` = (x, y, l, w, yaw), counter-clockwise."""
    x, y, l, w, yaw = boxes.unbind(-1)
    local = boxes.new_tensor([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])  # (4, 2) in (l, w) units
    px = local[:, 0] * l[:, None]  # (N, 4)
    py = local[:, 1] * w[:, None]
    c, s = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]
    return torch.stack([px * c - py * s + x[:, None], px * s + py * c + y[:, None]], -1)


def _cross(o: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """z of (a - o) x (b - o) over the last dim (size 2)."""
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (
        b[..., 0] - o[..., 0]
    )


def _cyclic_shift(poly: torch.Tensor, n: torch.Tensor, shift: int) -> torch.Tensor:
    """Vertex ``(k + shift) mod n`` of each padded polygon ``(P, V, 2)`` with ``n`` valid vertices."""
    v = poly.shape[1]
    k = torch.arange(v, device=poly.device)[None]  # (1, V)
    idx = (k + shift) % n.clamp(min=1)[:, None]  # (P, V)
    return torch.gather(poly, 1, idx[..., None].expand(-1, -1, 2))


def _intersection_area(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Area of the intersection of convex CCW quadrilaterals ``a``, ``b`` (P, 4, 2), pairwise."""
    poly, n = a, torch.full((a.shape[0],), 4, dtype=torch.long, device=a.device)  # (P, V, 2), (P,)
    for e in range(4):
        p0, p1 = b[:, e][:, None], b[:, (e + 1) % 4][:, None]  # (P, 1, 2) clip edge, inside = left
        valid = torch.arange(poly.shape[1], device=a.device)[None] < n[:, None]  # (P, V)
        prev = _cyclic_shift(poly, n, -1)
        d_cur, d_prev = _cross(p0, p1, poly), _cross(p0, p1, prev)  # (P, V)
        in_cur, in_prev = d_cur >= 0, d_prev >= 0
        crossing = valid & (in_cur != in_prev)
        t = d_prev / torch.where(crossing, d_prev - d_cur, torch.ones_like(d_cur))
        inter = prev + (poly - prev) * t[..., None]
        # For each input edge prev -> cur emit [intersection if it crosses, cur if inside], in this order.
        out = torch.stack([inter, poly], 2).flatten(1, 2)  # (P, 2V, 2)
        keep = torch.stack([crossing, valid & in_cur], 2).flatten(1)  # (P, 2V)
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :8]  # valid first, <= 8 of them
        poly = torch.gather(out, 1, order[..., None].expand(-1, -1, 2))
        n = keep.sum(1)
    valid = torch.arange(poly.shape[1], device=a.device)[None] < n[:, None]
    nxt = _cyclic_shift(poly, n, 1)
    shoelace = poly[..., 0] * nxt[..., 1] - poly[..., 1] * nxt[..., 0]  # (P, V)
    return (0.5 * (shoelace * valid).sum(1)).clamp(min=0)


def rotated_iou_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact BEV IoU ``(P,)`` of corresponding rotated boxes ``a[i]``, ``b[i]`` (each ``(P, 5)``)."""
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 5:
        raise ValueError(
            f"rotated_iou_pairs: expected two (P, 5) tensors, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    a64, b64 = a.double(), b.double()
    # Work relative to a's centre: keeps the clipping well conditioned far from the origin.
    origin = a64[:, :2].clone()
    a64 = torch.cat([a64[:, :2] - origin, a64[:, 2:]], 1)
    b64 = torch.cat([b64[:, :2] - origin, b64[:, 2:]], 1)
    inter = _intersection_area(bev_corners(a64), bev_corners(b64))  # (P,)
    union = a64[:, 2] * a64[:, 3] + b64[:, 2] * b64[:, 3] - inter
    return (inter / union.clamp(min=1e-12)).to(a.dtype)


def _candidate_pairs(a: torch.Tensor, b: torch.Tensor, upper: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (i, j) whose circumscribed circles overlap (only i < j when ``upper``)."""
    ra = 0.5 * torch.hypot(a[:, 2], a[:, 3])  # (N,)
    rb = 0.5 * torch.hypot(b[:, 2], b[:, 3])  # (M,)
    near = torch.cdist(a[:, :2].double(), b[:, :2].double()) < (ra[:, None] + rb[None]).double()  # (N, M)
    if upper:
        near = torch.triu(near, diagonal=1)
    i, j = near.nonzero(as_tuple=True)
    return i, j


def rotated_iou_bev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact BEV IoU matrix ``(N, M)`` between rotated boxes ``a`` (N, 5) and ``b`` (M, 5)."""
    iou = a.new_zeros((a.shape[0], b.shape[0]))
    i, j = _candidate_pairs(a, b, upper=False)
    for s in range(0, len(i), _PAIR_CHUNK):
        ii, jj = i[s : s + _PAIR_CHUNK], j[s : s + _PAIR_CHUNK]
        iou[ii, jj] = rotated_iou_pairs(a[ii], b[jj])
    return iou


def _greedy(suppress: np.ndarray, max_keep: int | None) -> list[int]:
    """Greedy pass over a score-sorted ``(K, K)`` upper-triangular "i suppresses j" matrix."""
    removed = np.zeros(len(suppress), dtype=bool)
    keep: list[int] = []
    for i in range(len(suppress)):
        if removed[i]:
            continue
        keep.append(i)
        if max_keep is not None and len(keep) >= max_keep:
            break
        removed |= suppress[i]
    return keep


def _sorted_by_score(scores: torch.Tensor, pre_max: int | None) -> torch.Tensor:
    order = torch.sort(scores, descending=True, stable=True).indices
    return order if pre_max is None else order[:pre_max]


def circle_nms(
    centers: torch.Tensor, scores: torch.Tensor, radius_sq: float, max_keep: int | None = None
) -> torch.Tensor:
    """Greedy circle NMS: a kept centre suppresses later ones whose **squared** distance is <= ``radius_sq``.

    ``centers`` (N, 2) metres, ``scores`` (N,). ``radius_sq`` is compared with the squared distance as
    in CenterPoint (quirk: a value of 4 means 2 m). Returns kept indices (long), highest score first.
    """
    if centers.ndim != 2 or centers.shape[1] != 2 or scores.shape != centers.shape[:1]:
        raise ValueError(
            f"circle_nms: centers (N, 2) and scores (N,), got {tuple(centers.shape)}, {tuple(scores.shape)}"
        )
    order = _sorted_by_score(scores, None)
    x, y = centers[order].double().unbind(1)
    dx, dy = x[:, None] - x[None], y[:, None] - y[None]  # (K, K)
    d2 = dx * dx + dy * dy
    suppress = torch.triu(d2 <= radius_sq, diagonal=1).cpu().numpy()
    keep = _greedy(suppress, max_keep)
    return order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]


def rotated_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    pre_max: int | None = None,
    max_keep: int | None = None,
) -> torch.Tensor:
    """Greedy NMS with exact rotated BEV IoU: a kept box suppresses later ones with IoU > ``iou_threshold``.

    ``boxes`` (N, 5) = (x, y, l, w, yaw), ``scores`` (N,). Only the ``pre_max`` best boxes enter NMS.
    Returns kept indices (long), highest score first.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 5 or scores.shape != boxes.shape[:1]:
        raise ValueError(
            f"rotated_nms: boxes (N, 5) and scores (N,), got {tuple(boxes.shape)}, {tuple(scores.shape)}"
        )
    order = _sorted_by_score(scores, pre_max)
    b = boxes[order]
    suppress = torch.zeros((len(b), len(b)), dtype=torch.bool, device=b.device)
    i, j = _candidate_pairs(b, b, upper=True)
    for s in range(0, len(i), _PAIR_CHUNK):
        ii, jj = i[s : s + _PAIR_CHUNK], j[s : s + _PAIR_CHUNK]
        suppress[ii, jj] = rotated_iou_pairs(b[ii].double(), b[jj].double()) > iou_threshold
    keep = _greedy(suppress.cpu().numpy(), max_keep)
    return order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]
