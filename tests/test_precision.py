"""bfloat16 runs only where it keeps the float32 ranking (fbnas_jax.engine.BF16_SAFE).

Issue 14: fp32 vs bf16 scores must rank-agree with Kendall tau >= 0.98 for every indicator
allowed to run in bf16. ``benchmarks/bf16_ranks.py`` measures it on 64 architectures at
C=8, N=1; this test re-checks every member of ``BF16_SAFE`` on 16 architectures at C=4,
N=1, 16x16 images, batch 16 (bf16 is emulated on CPU and every indicator is compiled twice:
64 architectures would cost minutes of CI time; 16 give 120 pairs, so tau >= 0.98 allows
at most one discordant pair).
"""
from __future__ import annotations

import jax
import numpy as np
import pytest

from fbnas_jax import engine
from fbnas_jax.indicators import base
from fbnas_jax.models.nb201 import build_network
from test_execution import H, _perturbed

B = 16


@pytest.fixture(scope="module")
def ctx():
    net = build_network(channels=4, cells_per_stage=1, bn_mode="fair")
    v = _perturbed(net, seed=3)
    rng = np.random.default_rng(0)
    options = {n: {"batch_size": B, "repeats": 1} for n in ("naswot", "jacob_cov", "snip", "grasp", "fisher",
                                                             "grad_norm", "ntk_cond", "linear_regions")}
    return base.ScoringContext(
        net=net, variables=v, init_variables=v, images=rng.normal(size=(B, H, H, 3)).astype(np.float32),
        labels=rng.integers(0, 10, B).astype(np.int32),
        train_images=rng.normal(0.5, 1.5, size=(3, B, H, H, 3)).astype(np.float32),
        key=jax.random.key(1), options=options)


def test_bf16_safe_indicators_keep_the_fp32_ranking(ctx):
    if not engine.BF16_SAFE:
        pytest.skip("no indicator is declared bf16-safe")
    enc = np.random.default_rng(7).integers(1, 5, size=(16, 6)).astype(np.int32)  # no `none`: no degenerate ties
    res = engine.precision_agreement(ctx, sorted(engine.BF16_SAFE), enc, execution="map")
    for name in engine.BF16_SAFE:
        assert res[name]["n"] == 16, (name, res[name])
        assert res[name]["tau"] >= 0.98, (name, res[name])
    assert all(res[n]["max_rel_diff"] > 0 for n in engine.BF16_SAFE), ("bf16 changed nothing: is it applied?", res)


def test_route_runs_uncertainty_in_bf16(ctx):
    """The routed network reads the compute dtype too (the GPU's CPI candidate: route in bf16):
    uncertainty (CPI's costliest component; expressivity runs the same routed convolutions) in
    bf16 under route keeps the fp32 ranking and differs from fp32 (so bf16 is applied)."""
    enc = np.random.default_rng(7).integers(1, 5, size=(10, 6)).astype(np.int32)
    res = engine.precision_agreement(ctx, ["uncertainty"], enc, execution="route", chunk=10)["uncertainty"]
    assert res["n"] == 10 and res["tau"] >= 0.95, res  # 45 pairs: at most 1 discordant
    assert res["max_rel_diff"] > 1e-6, ("bf16 changed nothing under route: is it applied?", res)


def test_plan_runs_bf16_only_for_safe_indicators(ctx):
    safe = sorted(engine.BF16_SAFE)
    unsafe = [n for n in ("ntk_cond", "jacob_cov", "uncertainty", "grasp") if n not in engine.BF16_SAFE]
    jobs = engine.plan(ctx, safe[:1] + unsafe[:1], execution="map", precision="bfloat16")
    prec = {n: j.precision for j in jobs for n in j.names}
    if safe:
        assert prec[safe[0]] == "bfloat16"
    if unsafe:
        assert prec[unsafe[0]] == "float32"
    assert {j.precision for j in engine.plan(ctx, safe + unsafe, precision="float32")} == {"float32"}
