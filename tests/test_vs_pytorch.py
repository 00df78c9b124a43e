"""The PyTorch reference of ``benchmarks/vs_pytorch.py`` computes our numbers (needs the ``bench`` extra).

The side-by-side benchmark is only meaningful if both sides compute the same thing: the
ported ``TinyNetwork`` must reproduce our logits, and every reference proxy must reproduce
our indicator on the same architectures (after the documented convention alignments).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed (benchmark-only extra: pip install -e '.[bench]')")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import vs_pytorch  # noqa: E402
from torch_ref.network import build_ported, nchw  # noqa: E402

ARCHS = [[1, 2, 3, 4, 1, 2], [3, 3, 3, 3, 3, 3], [0, 0, 0, 0, 0, 0], [4, 1, 0, 2, 3, 4]]


@pytest.mark.parametrize("bn_mode", ["bnnas", "fair"])
def test_ported_network_reproduces_logits(bn_mode):
    import jax
    import jax.numpy as jnp

    from fbnas_jax.models.layers import ForwardMode
    from fbnas_jax.models.nb201 import build_network, init_variables

    net = build_network(channels=4, cells_per_stage=2, bn_mode=bn_mode)
    v = jax.device_get(init_variables(net, 0, (16, 16, 3)))
    x = np.random.default_rng(0).normal(size=(8, 16, 16, 3)).astype(np.float32)
    for arch in ARCHS:
        for train in (True, False):  # a fresh port each time: a train-mode forward updates running stats
            t = build_ported(arch, v, channels=4, cells=2, bn_mode=bn_mode)
            ours = np.asarray(net.apply(v, x, jnp.asarray(arch), mode=ForwardMode(train=train)))
            with torch.no_grad():
                ref = t.train(train)(nchw(x)).numpy()
            assert np.allclose(ours, ref, rtol=1e-5, atol=3e-6 * max(1.0, np.abs(ours).max())), (arch, train)


def test_every_reference_proxy_matches_ours(tmp_path):
    """The whole script (``--preset smoke``, as the GPU device script calls it): every proxy,
    the CPI timing, JSON + markdown written."""
    import json

    assert vs_pytorch.main(["--preset", "smoke", "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "vs_pytorch_smoke.json").read_text())
    assert out["complete"] and out["args"]["sizes"] == "4:1:3" and len(out["load_before"]) == 3
    size = out["sizes"][0]
    by_name = {r["proxy"]: r for r in size["rows"]}
    assert set(by_name) == set(vs_pytorch.PROXIES)
    for name, r in by_name.items():
        tol = 1e-3 if name in ("grasp", "ntk_cond", "jacob_cov") else 1e-4  # second order / eigenvalues
        assert r["max_rel_diff"] < tol, (name, r["ours_values"], r["ref_values"])
        assert r["ours_archs_per_s"] > 0 and r["ref_archs_per_s"] > 0
        assert r["ref_archs"] == 2 and len(r["ref_values"]) == 2 and len(r["ours_values"]) == 3  # --ref-archs 2
        assert (r["chunk"] < 3) == (name == "ntk_cond")  # --proxy-chunks ntk_cond=1 (rounded to the devices)
    # fisher: the reference's own total weights each layer by its fan-in, so it is larger
    assert all(t >= c for t, c in zip(by_name["fisher"]["ref_total"], by_name["fisher"]["ref_values"]))
    assert size["cpi"]["archs"] == 3 and size["cpi"]["all_15625_min"] > 0
    md = (tmp_path / "vs_pytorch_smoke.md").read_text()
    assert "| naswot |" in md and "fan-in" in md and "CPI" in md and "the PyTorch loop on the first 2" in md


def test_cli_rejects_bad_sizes(capsys):
    with pytest.raises(SystemExit):
        vs_pytorch.parse_args(["--sizes", "8:1"])
    assert "C:N:archs" in capsys.readouterr().err
    for bad in ("ntk_cond", "ntk_cond=0", "nope=4"):
        with pytest.raises(SystemExit):
            vs_pytorch.parse_args(["--proxy-chunks", bad])
        assert "PROXY=N" in capsys.readouterr().err
