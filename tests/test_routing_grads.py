"""Routed gradient proxies (fbnas_jax.indicators.routed_grads): snip, grad_norm, grasp and the
TE-NAS NTK Gram of a chunk of K architectures, from one routed program differentiated w.r.t.
per-slot / per-architecture parameter copies, must equal the per-architecture computations
(fbnas_jax.indicators._proxies, vmapped over the select supernet) on a fresh supernet.

Chunk: 4 architectures with op 3 chosen twice on edge 0 (cap 2), an all-none architecture
(zero gradients) and a padding row (its outputs discarded). Tolerances: relative 1e-4 /
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
from fbnas_jax.indicators.routed_grads import ce_chunk, expand_params, ntk_grams
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


def test_expand_params_shapes():
    net, v, _, _ = _setup("fair", 1)
    cp = expand_params(v["params"], 3, 5)
    assert cp["cell_0"]["edge_0"]["nor_conv_3x3"]["conv"]["kernel"].shape[0] == 3  # one copy per slot
    assert cp["stem_conv"]["kernel"].shape[0] == 5 and cp["classifier"]["kernel"].shape[0] == 5  # per arch


@pytest.mark.parametrize("bn_mode,cells,names", [("bnnas", 1, ("snip", "grad_norm", "grasp")),
                                                  ("fair", 2, ("snip", "grad_norm"))])
def test_routed_ce_proxies_match_per_architecture(bn_mode, cells, names):
    """bnnas (the training-free default) with grasp; fair BN with 2 cells per stage (scanned
    cells: each cell's copies get their own gradients)."""
    net, v, x, y = _setup(bn_mode, cells)
    got = jax.jit(lambda v, x, y, e: ce_chunk(v, x, y, e, net=net, cap=2, names=names))(v, x, y, ENC)
    ref = jax.jit(jax.vmap(lambda e: P.ce_family(net, v, x, y, e, names)))(ENC[:REAL])
    for n in names:
        tol = dict(rtol=1e-3, atol=1e-6) if n == "grasp" else dict(rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.asarray(got[n])[:REAL], ref[n], err_msg=n, **tol)
        assert np.asarray(got[n])[2] == 0.0  # all-none: no gradient at all
    assert np.all(np.asarray(got["snip"])[:REAL][[0, 1, 3]] > 0)


def test_routed_ntk_gram_matches_per_architecture():
    net, v, x, _ = _setup("bnnas", 1, seed=1)
    got = jax.jit(lambda v, x, e: ntk_grams(v, x, e, net=net, cap=2, block=2))(v, x, ENC)
    ref = jax.jit(jax.vmap(lambda e: P.ntk_gram(net, v, x, e)))(ENC[:REAL])
    scale = float(np.max(np.abs(ref)))
    np.testing.assert_allclose(np.asarray(got)[:REAL], ref, rtol=1e-4, atol=1e-6 * scale)


def test_route_engine_gradient_proxies_match_vmap():
    """score_architectures(execution='route') = 'vmap' for snip/grad_norm (one ce_grads job) and
    ntk_cond (2 repeats: fresh inits), on 7 architectures packed into chunks of 4."""
    net, v, _, _ = _setup("bnnas", 1)
    rng = np.random.default_rng(3)
    ctx = base.ScoringContext(net=net, init_variables=v, images=rng.normal(size=(8, H, H, 3)).astype(np.float32),
                              labels=rng.integers(0, 10, 8).astype(np.int32), key=jax.random.key(1),
                              options={"ntk_cond": {"batch_size": 4, "repeats": 2}, "snip": {"batch_size": 4},
                                       "grad_norm": {"batch_size": 4}})
    enc = np.concatenate([routing.space_cosets(1)[3], ENC[1:3]])
    names = ["snip", "grad_norm", "ntk_cond"]
    ref = score_architectures(ctx, names, enc, chunk_size=7, execution="vmap", progress=False)
    got = score_architectures(ctx, names, enc, chunk_size=4, execution="route", progress=False)
    assert got.timings["ntk_cond"]["execution"] == "route"
    for n in names:
        np.testing.assert_allclose(got[n], ref[n], rtol=1e-4, atol=1e-6, err_msg=n)


def test_route_refuses_fisher():
    net, v, x, y = _setup("bnnas", 1)
    ctx = base.ScoringContext(net=net, init_variables=v, images=np.asarray(x), labels=np.asarray(y))
    from fbnas_jax import engine

    with pytest.raises(ValueError, match="execution='route' supports"):
        engine.plan(ctx, ["fisher"], execution="route")
