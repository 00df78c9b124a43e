"""Routed gradient proxies (fbnas_jax.indicators.routed_grads): snip, grad_norm, grasp and the
TE-NAS NTK Gram of a chunk of K architectures, from one routed program differentiated w.r.t.
per-slot / per-architecture parameter copies (the conv kernels' copies as zero deltas to the
shared kernels: fbnas_jax.models.slot_conv, tested on its own in tests/test_slot_conv.py), must
equal the per-architecture computations (fbnas_jax.indicators._proxies, vmapped over the select
supernet) on a fresh supernet.

Chunks hold an architecture choosing op 3 where another does, an all-none architecture (zero
gradients) and padding rows (their outputs discarded). Tolerances: relative 1e-4 /
absolute 1e-6 for first-order quantities (float32 sums in another order: measured ~2e-7);
grasp (a Hessian-gradient product, sums of terms of both signs) relative 1e-3 / absolute 1e-6
(measured ~5e-5). Tiny sizes: C=4, 8x8 images, batch 4.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fbnas_jax.indicators import _proxies as P
from fbnas_jax.indicators import base
from fbnas_jax.indicators.routed_grads import ce_chunk, expand_params
from fbnas_jax.models import routing
from fbnas_jax.models.nb201 import build_network, init_variables
from fbnas_jax.scoring import score_architectures

H, B = 8, 4
ENC = np.array([[3, 3, 3, 3, 3, 3], [3, 1, 0, 2, 3, 4], [0, 0, 0, 0, 0, 0], [2, 4, 1, 1, 0, 3],
                [routing.PAD] * 6], np.int32)
REAL = 4


def _setup(bn_mode: str, cells: int, seed: int = 0):
    net = build_network(channels=4, cells_per_stage=cells, bn_mode=bn_mode)
    v = init_variables(net, seed, (H, H, 3))
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(B, H, H, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, B), jnp.int32)
    return net, {"params": v["params"], "batch_stats": v["batch_stats"]}, x, y


@pytest.fixture(scope="module")
def bnnas():
    return _setup("bnnas", 1)


def test_expand_params_shapes(bnnas):
    _, v, _, _ = bnnas
    cp = expand_params(v["params"], 3, 5)
    assert cp["cell_0"]["edge_0"]["nor_conv_3x3"]["conv"]["kernel"].shape[0] == 3  # one copy per slot
    assert cp["stem_conv"]["kernel"].shape[0] == 5 and cp["classifier"]["kernel"].shape[0] == 5  # per arch


def test_route_engine_gradient_proxies_match_vmap(bnnas):
    """score_architectures(execution='route') = 'vmap' for snip/grad_norm/grasp (one ce_grads
    job) and ntk_cond (2 repeats: fresh inits), bnnas BN (the training-free default), on 6
    architectures (a balanced coset, op 3 twice on edge 0, all-none: zero gradients) packed
    into chunks of 4 with padding."""
    net, v, _, _ = bnnas
    rng = np.random.default_rng(3)
    names = ["snip", "grad_norm", "grasp", "ntk_cond"]
    options = {n: {"batch_size": B} for n in names}
    options["ntk_cond"]["repeats"] = 2
    ctx = base.ScoringContext(net=net, init_variables=v, images=rng.normal(size=(2 * B, H, H, 3)).astype(np.float32),
                              labels=rng.integers(0, 10, 2 * B).astype(np.int32), key=jax.random.key(1),
                              options=options)
    enc = np.concatenate([routing.space_cosets(1)[3], ENC[1:3]])
    ref = score_architectures(ctx, names, enc, chunk_size=6, execution="vmap", progress=False)
    got = score_architectures(ctx, names, enc, chunk_size=4, execution="route", progress=False)
    assert got.timings["ntk_cond"]["execution"] == got.timings["grasp"]["execution"] == "route"
    for n in names:
        tol = dict(rtol=1e-3, atol=1e-6) if n == "grasp" else dict(rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got[n], ref[n], err_msg=n, **tol)
    assert got["snip"][-1] == got["grad_norm"][-1] == got["grasp"][-1] == 0.0  # all-none: no gradient at all
    assert np.sum(got["snip"] > 0) >= 4  # not a comparison of zeros


def test_routed_ce_chunk_scanned_cells_fair_bn():
    """Fair BN, 2 cells per stage (scanned cells: each cell's copies get their own gradients),
    at the chunk level with a padding row: snip and grad_norm = the per-architecture ce_family."""
    net, v, x, y = _setup("fair", 2)
    names = ("snip", "grad_norm")
    got = jax.jit(lambda v, x, y, e: ce_chunk(v, x, y, e, net=net, cap=2, names=names))(v, x, y, ENC)
    ref = jax.jit(jax.vmap(lambda e: P.ce_family(net, v, x, y, e, names)))(ENC[:REAL])
    for n in names:
        np.testing.assert_allclose(np.asarray(got[n])[:REAL], ref[n], rtol=1e-4, atol=1e-6, err_msg=n)


def test_route_refuses_fisher(bnnas):
    net, v, x, y = bnnas
    ctx = base.ScoringContext(net=net, init_variables=v, images=np.asarray(x), labels=np.asarray(y))
    from fbnas_jax import engine

    with pytest.raises(ValueError, match="execution='route' supports"):
        engine.plan(ctx, ["fisher"], execution="route")
