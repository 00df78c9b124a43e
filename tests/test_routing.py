"""Routed execution (execution="route"): chunking on the host and the routed NB201 forward.

The chunking functions (fbnas_jax.models.routing) are pure NumPy: cosets of the whole space
are perfectly balanced, packing puts every architecture in exactly one chunk and never over
the capacity. The routed network (fbnas_jax.models.nb201_routed) and the engine's route jobs
must give the values of the all-ops vmap supernet: logits and NASWOT kernels, expressivity,
supernet accuracy/loss and uncertainty, for a balanced coset and for an unbalanced list that
needs padding. Tolerance: relative 2e-4 / absolute 1e-5 (float32 reductions in another order;
measured max relative difference ~4e-6); kernels are integer counts and must match exactly.
Tiny sizes: C=4, N=1, 16x16 images, batch 8.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from fbnas_jax import engine
from fbnas_jax.indicators import base
from fbnas_jax.models import routing
from fbnas_jax.models.layers import ForwardMode, relu_kernel_total
from fbnas_jax.models.nb201 import build_network
from fbnas_jax.models.nb201_routed import routed_apply
from fbnas_jax.scoring import Scorer, score_architectures
from random_variables import random_variables

H = 16


# --------------------------------------------------------------------------- chunking (NumPy)

@pytest.mark.parametrize("d", [1, 2, 3])
def test_space_cosets_partition_the_space_and_are_balanced(d):
    cosets = routing.space_cosets(d)
    assert cosets.shape == (5 ** (6 - d), 5 ** d, 6)
    flat = cosets.reshape(-1, 6)
    assert len(np.unique(flat, axis=0)) == 15625  # every architecture exactly once
    for chunk in cosets:
        assert (routing.op_counts(chunk) == 5 ** (d - 1)).all()  # each op exactly K/5 times per edge
    assert routing.balanced_capacity(flat, 5 ** d) == 5 ** (d - 1)


def test_cosets_are_nested():
    """A coset of 125 is 5 cosets of 25 (the engine may halve a chunk; 25 per device...)."""
    big = routing.space_cosets(3)[11]
    keys = routing.coset_keys(big, 2)
    assert len(np.unique(keys)) == 5 and (np.bincount(np.unique(keys, return_inverse=True)[1]) == 25).all()
    assert routing.balanced_capacity(big, 25) == 5 and routing.balanced_capacity(big, 5) == 1
    chunks, order = routing.pack_chunks(big, 25, 5)
    assert chunks.shape == (5, 25, 6) and (order >= 0).all()
    with pytest.raises(ValueError, match="subgroup dimension"):
        routing.coset_keys(big, 7)


def test_pack_chunks_random_list():
    rng = np.random.default_rng(3)
    enc = rng.integers(0, 5, (300, 6)).astype(np.int32)
    enc[7] = enc[3]  # a duplicate is scored twice, like any other entry
    for chunk in (10, 25, 32):
        cap = routing.default_capacity(chunk)
        chunks, order = routing.pack_chunks(enc, chunk, cap)
        assert chunks.shape[1:] == (chunk, 6) and order.shape == (chunks.shape[0] * chunk,)
        assert sorted(order[order >= 0].tolist()) == list(range(len(enc)))  # every architecture exactly once
        assert np.array_equal(chunks.reshape(-1, 6)[order >= 0], enc[order[order >= 0]])
        assert (chunks.reshape(-1, 6)[order < 0] == routing.PAD).all()
        for c in chunks:
            assert routing.op_counts(c).max() <= cap
            routing.check_chunk(c, cap)
        assert len(chunks) <= -(-len(enc) // chunk) + 2  # first-fit wastes little
        assert np.array_equal(routing.unpack(chunks.reshape(-1, 6), order, len(enc)), enc)


def test_pack_chunks_whole_cosets_fill_chunks_exactly():
    grid = routing.space_cosets(2)[[4, 9, 2]].reshape(-1, 6)
    perm = np.random.default_rng(0).permutation(len(grid))
    chunks, order = routing.pack_chunks(grid[perm], 25, 5)
    assert chunks.shape == (3, 25, 6) and (order >= 0).all()


def test_check_chunk_refuses_overflow_and_bad_entries():
    chunk = np.array([[1, 2, 3, 4, 0, 1]] * 3 + [[routing.PAD] * 6], np.int32)
    routing.check_chunk(chunk, 3)
    with pytest.raises(ValueError, match="overflows its capacity: op 1 of edge 0 is chosen by 3"):
        routing.check_chunk(chunk, 2)
    with pytest.raises(ValueError, match="op indices"):
        routing.check_chunk(np.full((2, 6), 5), 2)
    with pytest.raises(ValueError, match="chunk and cap"):
        routing.pack_chunks(chunk[:1], 4, 0)


# --------------------------------------------------------------------------- routed network

@pytest.fixture(scope="module")
def ctx():
    net = build_network(channels=4, cells_per_stage=1, bn_mode="fair")
    v = random_variables(net, 0, image_size=H)
    rng = np.random.default_rng(0)
    return base.ScoringContext(
        net=net, variables=v, images=rng.normal(size=(8, H, H, 3)).astype(np.float32),
        labels=rng.integers(0, 10, 8).astype(np.int32),
        train_images=rng.normal(0.5, 1.5, size=(3, 8, H, H, 3)).astype(np.float32), key=jax.random.key(1))


@pytest.mark.parametrize("bn_mode", ["fair", "bnnas"])
def test_routed_apply_matches_vmapped_supernet(ctx, bn_mode):
    """Logits and NASWOT kernels, balanced chunk (cap = K/5) and a padded unbalanced one; both
    BN placements (bnnas: no BN after skip / pooling)."""
    net, v, x = ctx.net, ctx.variables, ctx.images
    if bn_mode == "bnnas":
        net = build_network(channels=4, cells_per_stage=1, bn_mode="bnnas")
        v = random_variables(net, 1, image_size=H)
    mode = ForwardMode(train=True, relu_kernel=True)

    def select(e):
        logits, st = net.apply(v, x, e, mode=mode, mutable=["relu_kernel"])
        return logits, relu_kernel_total(st["relu_kernel"])

    balanced = routing.space_cosets(1)[17]  # 5 architectures, each op once per edge
    unbalanced = np.array([[3, 3, 3, 3, 3, 3], [3, 1, 0, 2, 3, 4], [0, 0, 0, 0, 0, 0],
                           [routing.PAD] * 6], np.int32)  # op 3 chosen twice on edge 0, and a padding row
    for enc, cap in ((balanced, 1), (unbalanced, 2)):
        routed = jax.jit(lambda v, x, e, cap=cap: routed_apply(net, v, x, e, cap=cap, mode=mode))
        lg1, k1 = routed(v, x, enc)
        real = (enc >= 0).all(1)
        lg0, k0 = jax.jit(jax.vmap(select))(enc[real])
        np.testing.assert_allclose(np.asarray(lg1)[real], lg0, rtol=2e-4, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(k1)[real], k0)  # integer counts: exact


def test_routed_apply_scans_cells_of_a_stage():
    """N=2 cells per stage (the cells of a stage run as one lax.scan, the routing computed once):
    logits and NASWOT kernels (recorded across the scanned cells) equal the vmapped supernet's,
    with both ways of combining the op outputs."""
    net = build_network(channels=4, cells_per_stage=2, bn_mode="fair")
    v = random_variables(net, 2, image_size=H)
    x = np.random.default_rng(2).normal(size=(8, H, H, 3)).astype(np.float32)
    mode = ForwardMode(train=True, relu_kernel=True)

    def select(e):
        logits, st = net.apply(v, x, e, mode=mode, mutable=["relu_kernel"])
        return logits, relu_kernel_total(st["relu_kernel"])

    enc = np.array([[3, 3, 3, 3, 3, 3], [3, 1, 0, 2, 3, 4], [2, 4, 1, 1, 0, 3], [routing.PAD] * 6], np.int32)
    lg0, k0 = jax.jit(jax.vmap(select))(enc[:3])
    for combine in ("gather", "scatter"):
        lg1, k1 = jax.jit(lambda v, x, e: routed_apply(net, v, x, e, cap=2, mode=mode, combine=combine))(v, x, enc)
        np.testing.assert_allclose(np.asarray(lg1)[:3], lg0, rtol=2e-4, atol=1e-5, err_msg=combine)
        np.testing.assert_array_equal(np.asarray(k1)[:3], k0)  # integer counts: exact


def test_route_engine_scores_match_vmap(ctx):
    """score_architectures with execution='route' = 'vmap' for CPI's components and the
    forward group, on a list that needs padding (7 archs, chunk 4) and on a balanced coset."""
    names = ["expressivity", "supernet_accuracy", "supernet_neg_loss", "uncertainty", "cpi"]
    enc = np.concatenate([routing.space_cosets(1)[3], np.array([[1, 1, 1, 1, 1, 1], [1, 1, 2, 2, 4, 0]])])
    ref = score_architectures(ctx, names, enc, chunk_size=7, execution="vmap", progress=False)
    got = score_architectures(ctx, names, enc, chunk_size=4, execution="route", progress=False)
    assert got.timings["uncertainty"]["execution"] == "route"
    for n in names:
        np.testing.assert_allclose(got[n], ref[n], rtol=2e-4, atol=1e-5, err_msg=n)
    coset = score_architectures(ctx, ["expressivity"], enc[:5], chunk_size=5, execution="route", progress=False)
    assert coset.timings["expressivity"]["route_cap"] == 1  # a whole coset: cap = K/5
    np.testing.assert_allclose(coset["expressivity"], ref["expressivity"][:5], rtol=2e-4, atol=1e-5)
    stacked = dataclasses.replace(ctx, options={"uncertainty": {"mc_batching": "stacked"}})
    got = score_architectures(stacked, ["uncertainty"], enc, chunk_size=4, execution="route", progress=False)
    np.testing.assert_allclose(got["uncertainty"], ref["uncertainty"], rtol=2e-4, atol=1e-5)
    # the Scorer (search loops) packs too
    scorer = Scorer(ctx, chunk_size=4, execution="route")
    np.testing.assert_allclose(scorer("expressivity", enc), ref["expressivity"], rtol=2e-4, atol=1e-5)


def test_route_refuses_what_it_cannot_run(ctx):
    with pytest.raises(ValueError, match="execution='route' supports the per-architecture indicators"):
        engine.plan(ctx, ["naswot", "uncertainty"], execution="route")
    job = dataclasses.replace(engine.plan(ctx, ["expressivity"], execution="route")[0], route_cap=1)
    comp = engine.compile_job(ctx, job, 4, [jax.local_devices()[0]], (6,))
    with pytest.raises(ValueError, match="overflows its capacity"):
        comp.run(np.array([[1, 2, 3, 4, 1, 2], [1, 3, 4, 2, 2, 1]] + [[routing.PAD] * 6] * 2, np.int32))
