"""TEG-NAS indicators: closed forms, input forms (encoding / one-hot / mask), orientation.

Compiles dominate: the generalization indicator is compiled once per input form (int
encodings, op weights) on a C=2, N=1 network with 8x8 images and batches of 4; the thin
linear-region network is tiny.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fbnas_jax.indicators import teg
from fbnas_jax.indicators.base import REGISTRY, ScoringContext
from fbnas_jax.indicators.supernet import cpi_from_scores
from fbnas_jax.models.layers import ForwardMode
from fbnas_jax.models.nb201 import build_network
from fbnas_jax.models.nb201_thin import ThinNB201, init_thin
from fbnas_jax.scoring import resolve_indicators
from fbnas_jax.spaces.nb201 import encodings_to_weights

ENCS = np.array([[0] * 6, [3] * 6, [1, 2, 3, 4, 1, 2], [2, 0, 3, 1, 4, 3]], np.int32)


def _one_hot(encs):
    return np.asarray(encodings_to_weights(np.asarray(encs)), np.float32)


# ----------------------------------------------------------------------------- closed forms


def test_kernel_regression_equals_numpy_solve():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 9))
    k_xx = a @ a.T + 0.1 * np.eye(6)
    k_yx = rng.normal(size=(5, 9)) @ a.T
    t_x, t_y = rng.normal(size=(6, 3)), rng.normal(size=(5, 3))
    want = np.mean(np.sum((k_yx @ np.linalg.solve(k_xx, t_x) - t_y) ** 2, axis=1))
    got = teg.kernel_regression_mse(k_xx, k_yx, t_x, t_y)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    ridge = 0.5 * np.mean(np.diag(k_xx))
    want_r = np.mean(np.sum((k_yx @ np.linalg.solve(k_xx + ridge * np.eye(6), t_x) - t_y) ** 2, axis=1))
    np.testing.assert_allclose(float(teg.kernel_regression_mse(k_xx, k_yx, t_x, t_y, ridge=0.5)), want_r, rtol=1e-5)
    # batched (leading axes) and a singular kernel -> NaN, not an exception
    stacked = teg.kernel_regression_mse(np.stack([k_xx, np.zeros_like(k_xx)]), np.stack([k_yx] * 2),
                                        np.stack([t_x] * 2), np.stack([t_y] * 2))
    np.testing.assert_allclose(float(stacked[0]), want, rtol=1e-5)
    assert np.isnan(stacked[1])


def test_centred_one_hot():
    t = np.asarray(teg.centred_one_hot(jnp.array([0, 1, 1, 2]), 4))
    np.testing.assert_allclose(t.sum(axis=0), 0.0, atol=1e-7)
    np.testing.assert_allclose(t[0], [0.75, -0.5, -0.25, 0.0])


def test_count_unique_rows_matches_numpy():
    rng = np.random.default_rng(1)
    for n, u in ((50, 5), (300, 64), (7, 1)):
        base = rng.random((n // 2 + 1, u)) < 0.5
        codes = base[rng.integers(0, len(base), n)]  # duplicates on purpose
        want = len(np.unique(codes, axis=0))
        assert int(jax.jit(teg.count_unique_rows)(codes)) == want


# ----------------------------------------------------------------------------- thin network


@pytest.fixture(scope="module")
def thin(tiny_dataset):
    ds = tiny_dataset
    x = ((ds.train_images[:64].astype(np.float32) / 255.0 - ds.mean) / ds.std).astype(np.float32)
    crops = jnp.asarray(teg.tenas_crops(x, jax.random.PRNGKey(3), batches=2, batch_size=200))
    net = ThinNB201()
    v = init_thin(net, jax.random.PRNGKey(4))
    codes = jax.jit(lambda a: jax.vmap(lambda c: net.apply(v, c, a, ForwardMode(train=True)))(crops))
    count = jax.jit(lambda a: teg.thin_linear_regions(net, v, crops, a))
    return dict(crops=crops, net=net, v=v, codes=codes, count=count)


def test_tenas_crops_shape_and_content(tiny_dataset):
    x = np.arange(2 * 5 * 5 * 3, dtype=np.float32).reshape(2, 5, 5, 3)
    c = teg.tenas_crops(x, jax.random.PRNGKey(0), batches=2, batch_size=3)
    assert c.shape == (2, 3, 3, 3, 1)
    # every crop is a contiguous 3x3 window of one channel of one image
    for crop in c.reshape(-1, 3, 3):
        img, rem = divmod(int(crop[0, 0]), 75)
        ch = rem % 3
        np.testing.assert_array_equal(np.diff(crop, axis=1), 3)  # next column: +3 (channels)
        np.testing.assert_array_equal(np.diff(crop, axis=0), 15)  # next row: +15
        assert 0 <= img < 2 and 0 <= ch < 3
    with pytest.raises(ValueError, match="crops"):
        teg.tenas_crops(x, jax.random.PRNGKey(0), crop=6)


def test_thin_net_closed_forms(thin):
    crops = np.asarray(thin["crops"])
    # all-none: the cell outputs 0, BN(0) = 0, one pattern
    assert float(thin["count"](jnp.zeros(6, jnp.int32))) == 1.0
    # all-skip: no conv ReLU; node3 = x + x + 2x = 4x, so the head's code is x > batch mean
    # (BN with batch statistics, scale 1, shift 0): count those patterns with NumPy
    flat = crops.reshape(crops.shape[0], crops.shape[1], -1)
    head = flat > flat.mean(axis=(1, 2), keepdims=True)
    want = len(np.unique(head.reshape(-1, head.shape[-1]), axis=0))
    assert float(thin["count"](jnp.ones(6, jnp.int32))) == want
    # a conv on edge 0 adds the ReLU code of the input itself (x > 0)
    codes = np.asarray(thin["codes"](jnp.array([2, 1, 1, 1, 1, 1], jnp.int32)))
    np.testing.assert_array_equal(codes[..., :9], flat > 0)


def test_thin_net_input_forms(thin):
    for enc in ENCS:
        one_hot = _one_hot(enc)
        np.testing.assert_array_equal(np.asarray(thin["codes"](jnp.asarray(enc))),
                                      np.asarray(thin["codes"](jnp.asarray(one_hot))))
    # a mask: every conv ReLU live; codes of dead convs are constant zeros
    mask = np.ones((6, 5), np.float32)
    n_mask = float(thin["count"](jnp.asarray(mask)))
    assert n_mask > 1
    no_conv = mask.copy()
    no_conv[:, 2:4] = 0
    codes = np.asarray(thin["codes"](jnp.asarray(no_conv)))
    assert not codes[..., :54].any()


# ----------------------------------------------------------------------------- generalization


@pytest.fixture(scope="module")
def gen(tiny_dataset):
    ds = tiny_dataset
    x = ((ds.train_images[:32, ::2, ::2].astype(np.float32) / 255.0 - ds.mean) / ds.std).astype(np.float32)
    y = ds.train_labels[:32].astype(np.int32)
    net = build_network(channels=2, cells_per_stage=1, bn_mode="bnnas")
    v = net.init(jax.random.PRNGKey(0), jnp.asarray(x[:1]), jnp.zeros((6,), jnp.int32))
    ctx = ScoringContext(net=net, init_variables=v, images=x, labels=y, key=jax.random.PRNGKey(1),
                         options={"teg_generalization": {"batch_size": 4, "repeats": 2}})
    ind = REGISTRY["teg_generalization"]
    score = teg.map_archs(ind.build_arch(ctx), finish=ind.finish_fn(ctx))  # one compile per input form
    mask = np.ones((6, 5), np.float32)
    mask[:, 0] = 0
    weights = np.concatenate([_one_hot(ENCS), mask[None], (mask / mask.sum(-1, keepdims=True))[None]])
    ints, floats = score(jnp.asarray(ENCS)), score(jnp.asarray(weights))
    return dict(ctx=ctx, ints=np.asarray(ints), floats=np.asarray(floats))


def test_generalization_input_forms_and_orientation(gen):
    ints, floats = gen["ints"], gen["floats"]
    np.testing.assert_array_equal(ints, floats[:4])  # one-hot == encoding, bit for bit
    assert ints[0] == -np.inf  # all-none: no gradient, singular kernel: worst
    assert np.all(np.isfinite(ints[1:])) and np.all(ints[1:] < 0)
    assert np.all(np.isfinite(floats[4:])) and floats[4] != floats[5]  # sum vs mean of live ops differ


def test_generalization_bad_context(gen):
    ctx = gen["ctx"]
    small = ScoringContext(net=ctx.net, init_variables=ctx.init_variables, images=ctx.images[:6],
                           labels=ctx.labels[:6], options=ctx.options)
    assert teg.resolve_options("teg_generalization", small)["batch_size"] == 3  # capped: 3 + 3 images
    with pytest.raises(ValueError, match="held-out"):
        teg.build_generalization(dataclasses.replace(small, images=ctx.images[:3], labels=ctx.labels[:3]))
    with pytest.raises(ValueError, match="labels"):
        teg.build_generalization(ScoringContext(net=ctx.net, init_variables=ctx.init_variables, images=ctx.images))
    with pytest.raises(ValueError, match="params"):
        teg.resolve_options("teg_generalization", ScoringContext(
            net=ctx.net, options={"teg_generalization": {"params": "last"}}))


# ----------------------------------------------------------------------------- composite


def test_teg_composite_is_the_mean_rank(gen):
    ind = REGISTRY["teg"]
    assert ind.family == "composite" and ind.components == teg.TEG_COMPONENTS
    scores = {"ntk_cond": np.array([-3.0, -1.0, -2.0, -1e5]),
              "linear_regions_tenas": np.array([10.0, 30.0, 20.0, 1.0]),
              "teg_generalization": np.array([-0.5, -0.9, -0.7, -np.inf])}
    got = cpi_from_scores(scores, ind.components)
    np.testing.assert_allclose(got, [(2 + 2 + 4) / 3, (4 + 4 + 2) / 3, (3 + 3 + 3) / 3, 1.0])
    assert np.argmax(got) == 1 and np.argmin(got) == 3
    assert resolve_indicators(gen["ctx"], ["teg"]) == ["teg", *teg.TEG_COMPONENTS]
    for name in ("teg_generalization", "linear_regions_tenas"):
        assert "higher" in REGISTRY[name].sign_note


def test_all_skips_teg_indicators_outside_nb201(gen):
    from fbnas_jax.scoring import available

    class OtherSpaceNet:
        space = "nb101"

    ctx = gen["ctx"]
    assert {"teg", *teg.TEG_COMPONENTS} <= set(available(ctx))
    other = dataclasses.replace(ctx, net=OtherSpaceNet())
    names = set(available(other))
    assert "ntk_cond" in names and not names & {"teg", "teg_generalization", "linear_regions_tenas"}
    with pytest.raises(ValueError, match="NB201"):
        teg.build_linear_regions_tenas(other)
