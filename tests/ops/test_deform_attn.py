"""Multi-scale deformable attention: equal to a slow per-sample reference (values and gradients)."""

from __future__ import annotations

import math

import pytest
import torch

from distillbev.ops.deform_attn import ms_deform_attn

SHAPES = [(5, 7), (3, 4)]  # two levels (H_l, W_l)


def bilinear(m: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Value of map ``m`` (C, H, W) at normalised ``(x, y)``: pixel ``(x W - 1/2, y H - 1/2)``, the four
    neighbouring cells weighted by their overlap, cells outside the map read as zero."""
    _, h, w = m.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(float(px.detach())), math.floor(float(py.detach()))
    out = m.new_zeros(m.shape[0])
    for dx in (0, 1):
        for dy in (0, 1):
            cx, cy = x0 + dx, y0 + dy
            if 0 <= cx < w and 0 <= cy < h:
                wx = (px - x0) if dx else (1 - (px - x0))
                wy = (py - y0) if dy else (1 - (py - y0))
                out = out + wx * wy * m[:, cy, cx]
    return out


def reference(value, shapes, loc, weights):
    """Loops over samples, queries, heads, levels and points."""
    b, _, heads, ch = value.shape
    _, q, _, levels, points, _ = loc.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    rows = []
    for i in range(b):
        per_query = []
        for k in range(q):
            per_head = []
            for hd in range(heads):
                acc = value.new_zeros(ch)
                for lv, (h, w) in enumerate(shapes):
                    m = value[i, starts[lv] : starts[lv + 1], hd].T.reshape(ch, h, w)
                    for p in range(points):
                        x, y = loc[i, k, hd, lv, p]
                        acc = acc + weights[i, k, hd, lv, p] * bilinear(m, x, y)
                per_head.append(acc)
            per_query.append(torch.cat(per_head))
        rows.append(torch.stack(per_query))
    return torch.stack(rows)  # (B, Q, heads*C_h)


def inputs(b=2, q=6, heads=2, ch=3, points=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in SHAPES)
    value = torch.randn(b, s, heads, ch, generator=g, dtype=torch.float64)
    # mostly inside, some beyond the border (zeros padding) and some far outside
    loc = torch.rand(b, q, heads, len(SHAPES), points, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(b, q, heads, len(SHAPES), points, generator=g, dtype=torch.float64)
    weights = weights / weights.flatten(-2).sum(-1)[..., None, None]
    return value, loc, weights


def _grads(fn, value, loc, weights):
    leaves = [t.clone().requires_grad_(True) for t in (value, loc, weights)]
    out = fn(*leaves)
    g = torch.Generator().manual_seed(1)
    (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum().backward()
    return out.detach(), [t.grad for t in leaves]


def test_equals_the_reference_in_values_and_gradients():
    value, loc, weights = inputs()
    out, grads = _grads(lambda v, l_, w: ms_deform_attn(v, SHAPES, l_, w), value, loc, weights)
    ref, ref_grads = _grads(lambda v, l_, w: reference(v, SHAPES, l_, w), value, loc, weights)
    assert out.shape == (2, 6, 2 * 3)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for name, a, r in zip(("value", "locations", "weights"), grads, ref_grads, strict=True):
        assert r.abs().sum() > 0, name
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9, msg=f"gradient of the {name}")


def test_a_point_on_a_cell_centre_reads_that_cell():
    value, loc, weights = inputs(b=1, q=1, heads=1, ch=2, points=1)
    h, w = SHAPES[0]
    loc[..., 0, 0, :] = torch.tensor([(3 + 0.5) / w, (1 + 0.5) / h], dtype=torch.float64)
    weights.zero_()
    weights[..., 0, 0] = 1.0
    out = ms_deform_attn(value, SHAPES, loc, weights)
    torch.testing.assert_close(out[0, 0], value[0, 1 * w + 3, 0])


@pytest.mark.parametrize("grad", [True, False])
def test_chunked_queries_equal_one_pass(grad):
    value, loc, weights = inputs(q=11)
    one = lambda v, l_, w: ms_deform_attn(v, SHAPES, l_, w)  # noqa: E731
    # 2 * 2 * 3 * 2 * 3 = 72 elements per query: 150 allows 2 queries per chunk -> 6 chunks
    chunked = lambda v, l_, w: ms_deform_attn(v, SHAPES, l_, w, max_elements=150)  # noqa: E731
    if grad:
        out, grads = _grads(chunked, value, loc, weights)
        ref, ref_grads = _grads(one, value, loc, weights)
        for a, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)
    else:
        with torch.no_grad():
            out, ref = chunked(value, loc, weights), one(value, loc, weights)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_mismatched_shapes_are_refused():
    value, loc, weights = inputs()
    with pytest.raises(ValueError, match="spatial_shapes"):
        ms_deform_attn(value, SHAPES[:1], loc, weights)
    with pytest.raises(ValueError, match="attention weights"):
        ms_deform_attn(value, SHAPES, loc, weights[..., :2])
