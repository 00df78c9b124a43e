"""``benchmarks/cost_model.py``: its FLOP counts agree with XLA and with PyTorch on closed-form cases,
loops are counted in full, and the script runs end to end at a tiny size.

The model's claims rest on three counters agreeing: XLA's ``cost_analysis`` (every op),
:func:`cost_model.hlo_conv_dot_flops` (convolutions and dots from the HLO text) and the PyTorch
loop's ``FlopCounterMode`` with valid-tap convolutions. Each pair is checked here on programs
whose count is known in closed form.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import cost_model  # noqa: E402


def _valid_macs_1d(inp, k, stride, pad):
    """Closed form by enumeration of a 1-D convolution's valid (output, tap) pairs."""
    out = (inp + 2 * pad - k) // stride + 1
    return sum(1 for o in range(out) for t in range(k) if 0 <= o * stride + t - pad < inp)


@pytest.mark.parametrize("stride,pad,size", [(1, 1, 16), (2, 1, 16), (1, 0, 9), (2, 0, 8)])
def test_hlo_count_equals_xla_and_closed_form_for_a_conv_and_its_gradients(stride, pad, size):
    import jax
    from jax import lax

    x = jax.ShapeDtypeStruct((4, size, size, 3), np.float32)
    w = jax.ShapeDtypeStruct((3, 3, 3, 5), np.float32)

    def conv(a, k):
        return lax.conv_general_dilated(a, k, (stride, stride), ((pad, pad), (pad, pad)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    fwd = 2 * 4 * 3 * 5 * _valid_macs_1d(size, 3, stride, pad) ** 2
    c = cost_model.xla_cost(jax.jit(conv).lower(x, w).compile())
    assert c["flops"] == c["conv_dot_flops"] == fwd
    # forward + input gradient (a dilated convolution when strided) + kernel gradient: 3x the forward
    out = jax.eval_shape(conv, x, w)
    g = cost_model.xla_cost(jax.jit(lambda a, k, ct: jax.vjp(conv, a, k)[1](ct)).lower(x, w, out).compile())
    assert g["conv_dot_flops"] == 2 * fwd and g["convolutions"] == 2
    assert g["flops"] == pytest.approx(g["conv_dot_flops"], rel=0.02)  # XLA adds a few elementwise ops


def test_hlo_count_of_a_dot():
    import jax

    a, b = jax.ShapeDtypeStruct((6, 7, 8), np.float32), jax.ShapeDtypeStruct((8, 5), np.float32)
    c = cost_model.xla_cost(jax.jit(lambda p, q: p @ q).lower(a, b).compile())
    assert c["conv_dot_flops"] == c["flops"] == 2 * 6 * 7 * 8 * 5


def test_torch_valid_tap_count_matches_ours():
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    w = torch.randn(5, 3, 3, 3, requires_grad=True)
    fwd = 2 * 4 * 3 * 5 * _valid_macs_1d(16, 3, 2, 1) ** 2
    with FlopCounterMode(display=False, custom_mapping=cost_model.torch_valid_flops()) as counter:
        y = torch.nn.functional.conv2d(x, w, stride=2, padding=1)
        y.sum().backward()
    assert counter.get_total_flops() == 3 * fwd  # forward, input and kernel gradients
    # a transposed convolution (in GraSP's double backward) does the forward's multiply-adds
    with FlopCounterMode(display=False, custom_mapping=cost_model.torch_valid_flops()) as counter:
        out = torch.nn.functional.conv_transpose2d(torch.randn(4, 5, 8, 8), w, stride=2, padding=1, output_padding=1)
    assert out.shape == (4, 3, 16, 16) and counter.get_total_flops() == fwd
    with FlopCounterMode(display=False) as stock:  # the stock count includes the padding taps
        torch.nn.functional.conv2d(x, w, stride=2, padding=1)
    assert stock.get_total_flops() == 2 * 4 * 3 * 5 * 9 * 8 * 8 > fwd


def test_loops_are_counted_once_by_xla_and_in_full_unrolled():
    c = cost_model.loop_counting_check()
    one = c["closed_form_one_conv"]
    assert c["one_conv"]["flops"] == one
    assert c["lax_map_5_as_compiled"]["while_loops"] == 1
    assert c["lax_map_5_as_compiled"]["conv_dot_flops"] == one  # the trap: 1 of 5
    assert c["lax_map_5_unrolled"]["while_loops"] == 0
    assert c["lax_map_5_unrolled"]["flops"] == c["vmap_5"]["flops"] == 5 * one


def test_balanced_archs_take_every_op_once_per_edge():
    a = cost_model.balanced_archs()
    assert a.shape == (5, 6)
    assert all(sorted(a[:, e]) == [0, 1, 2, 3, 4] for e in range(6))


def test_script_at_tiny_size(tmp_path):
    """uncertainty (a scan of MC forwards: unrolled, so no while left) under vmap, map and route,
    and snip under vmap/map (route: counted, or skipped with a note where not yet routable)."""
    pytest.importorskip("torch")
    out = cost_model.main(["--proxies", "uncertainty,snip", "--sizes", "4:1", "--image-size", "16", "--batch-size", "8",
                           "--ntk-batch-size", "8", "--mc-samples", "2", "--mc-batch-size", "8", "--vmap-chunk", "4",
                           "--route-chunk", "25", "--map-archs", "2", "--out", str(tmp_path), "--tag", "t"])
    rows = {(r["proxy"], r["execution"]): r for r in out["rows"]}
    assert set(rows) == {(p, e) for p in ("uncertainty", "snip") for e in ("vmap", "map", "route")}
    unc = [rows["uncertainty", e] for e in ("vmap", "map", "route")]
    for r in unc + [rows["snip", "vmap"], rows["snip", "map"]]:
        assert r["while_loops"] == 0 and r["conditionals"] == 0, r
        assert r["flops"] > r["conv_dot_flops"] > 0 and r["bytes"] > 0 and r["torch_flops"] > 0
        assert r["roofline_s"]["H200"] <= r["roofline_s"]["H100 SXM"]
    # the supernet under vmap computes every op; map and route only the chosen ones
    assert rows["uncertainty", "vmap"]["conv_dot_flops"] > 2 * rows["uncertainty", "map"]["conv_dot_flops"]
    assert rows["snip", "vmap"]["conv_dot_flops"] > 2 * rows["snip", "map"]["conv_dot_flops"]
    # uncertainty: T=2 forwards of 8+8 images on both sides; ours under map does the chosen ops only,
    # as the loop does: the same convolutions (NB201 at C=4 has no dots but the head)
    assert rows["uncertainty", "map"]["conv_dot_flops"] == pytest.approx(rows["uncertainty", "map"]["torch_flops"],
                                                                         rel=0.05)
    assert "skipped" in rows["snip", "route"] or rows["snip", "route"]["while_loops"] == 0
    saved = json.loads((tmp_path / "cost_model_t.json").read_text())
    assert saved["complete"] and len(saved["rows"]) == 6
    md = (tmp_path / "cost_model_t.md").read_text()
    assert "| uncertainty | 4:1 | route |" in md and "ESTIMATE" in md and "CPU-compiled" in md
    # --merge: runs of parts (e.g. one per size) combine into one output
    for i, part in enumerate((saved["rows"][:2], saved["rows"][2:])):
        (tmp_path / f"part{i}.json").write_text(json.dumps(dict(saved, rows=part)))
    merged = cost_model.main(["--merge", str(tmp_path / "part0.json"), str(tmp_path / "part1.json"),
                              "--out", str(tmp_path), "--tag", "m"])
    assert merged["rows"] == saved["rows"] and len(merged["merged_from"]) == 2
    assert "Merged from runs" in (tmp_path / "cost_model_m.md").read_text()
