"""Supernet indicators: tables vs naive loops, NASWOT vs an explicit kernel, MC-BN, CPI."""
from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from fbnas_jax.indicators import base
from fbnas_jax.ranking import rank_average, reference_cpi
from fbnas_jax.indicators.supernet import (
    BN_EPS, bn_table, cpi_from_scores, table_scores,
)
from fbnas_jax.models.layers import ReLU
from fbnas_jax.models.nb201 import build_network
from fbnas_jax.scoring import score_architectures
from fbnas_jax.spaces import nb201
from random_variables import random_variables

H = 16


def _perturbed_supernet(bn_mode, seed=0):
    """A tiny supernet with random BN scales/variances (so every op differs).

    Variables are drawn in NumPy on the shapes of ``eval_shape(init)``: compiling the
    supernet's init costs tens of seconds on a busy CPU.
    """
    net = build_network(channels=4, cells_per_stage=1, bn_mode=bn_mode)
    return net, random_variables(net, seed, scale="normal", var_range=(0.1, 3.0), head_gain=10.0, image_size=H)


@pytest.fixture(scope="module")
def fair():
    return _perturbed_supernet("fair")


@pytest.fixture(scope="module")
def bnnas():
    return _perturbed_supernet("bnnas", seed=1)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return {"images": rng.normal(size=(12, H, H, 3)).astype(np.float32),
            "labels": rng.integers(0, 10, 12).astype(np.int32),
            "train_images": rng.normal(1.0, 2.0, size=(3, 8, H, H, 3)).astype(np.float32)}


def _naive(net, variables, enc, kind):
    """Per-architecture Python loop straight over the variable trees."""
    p, s = variables["params"], variables["batch_stats"]
    total = 0.0
    for c in range(3 * net.cells_per_stage):
        for e, k in enumerate(enc):
            op = nb201.OPS[int(k)]
            if op in ("nor_conv_1x1", "nor_conv_3x3"):
                bp, bs = p[f"cell_{c}"][f"edge_{e}"][op]["bn"], s[f"cell_{c}"][f"edge_{e}"][op]["bn"]
            elif op in ("skip_connect", "avg_pool_3x3") and net.bn_mode == "fair":
                bp, bs = p[f"cell_{c}"][f"edge_{e}"][f"{op}_bn"], s[f"cell_{c}"][f"edge_{e}"][f"{op}_bn"]
            else:
                continue
            g = np.abs(np.asarray(bp["scale"], np.float64))
            if kind == "trainability":
                g = g / np.sqrt(np.asarray(bs["var"], np.float64) + BN_EPS)
            total += g.mean()
    return total


@pytest.mark.parametrize("which", ["fair", "bnnas"])
@pytest.mark.parametrize("kind", ["gamma", "trainability"])
def test_tables_match_naive_loop(which, kind, request):
    net, v = request.getfixturevalue(which)
    encs = np.concatenate([np.zeros((1, 6), np.int32),
                           nb201.sample_encodings(np.random.default_rng(3), 40)])
    table = bn_table(v["params"], v["batch_stats"], num_cells=3, bn_mode=net.bn_mode, kind=kind)
    got = np.asarray(table_scores(table, encs))
    want = np.array([_naive(net, v, e, kind) for e in encs])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got[0] == 0.0  # all-`none`


def test_gamma_whole_space_through_engine(fair):
    net, v = fair
    ctx = base.ScoringContext(net=net, variables=v)
    encs = nb201.all_encodings()
    res = score_architectures(ctx, ["gamma"], encs, progress=False)
    idx = np.random.default_rng(0).choice(len(encs), 25, replace=False)
    np.testing.assert_allclose(res["gamma"][idx], [_naive(net, v, encs[i], "gamma") for i in idx], rtol=1e-5)
    assert res["gamma"][0] == 0.0 and res["gamma"].shape == (15625,)
    assert res.timings["gamma"]["chunk_size"] == 15625


def test_bn_mode_parameter_free_ops(fair, bnnas):
    skip = nb201.string_to_encoding("|skip_connect~0|+|skip_connect~0|avg_pool_3x3~1|+"
                                    "|avg_pool_3x3~0|skip_connect~1|skip_connect~2|")
    for kind in ("gamma", "trainability"):
        (_, vf), (_, vb) = fair, bnnas
        tf = bn_table(vf["params"], vf["batch_stats"], num_cells=3, bn_mode="fair", kind=kind)
        tb = bn_table(vb["params"], vb["batch_stats"], num_cells=3, bn_mode="bnnas", kind=kind)
        assert float(table_scores(tb, skip[None])[0]) == 0.0
        assert float(table_scores(tf, skip[None])[0]) > 0.0
        tbl = np.asarray(tb)
        assert np.all(tbl[:, :, [0, 1, 4]] == 0) and np.all(tbl[:, :, [2, 3]] > 0)
        assert np.all(np.asarray(tf)[:, :, 0] == 0) and np.all(np.asarray(tf)[:, :, 1:] > 0)


def _prune(supernet_tree, template):
    if isinstance(template, dict):
        return {k: _prune(supernet_tree[k], t) for k, t in template.items()}
    return supernet_tree


def test_expressivity_equals_explicit_kernel_logdet(fair, batch):
    net, v = fair
    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
    enc = nb201.string_to_encoding(arch)
    ctx = base.ScoringContext(net=net, variables=v, images=batch["images"], labels=batch["labels"])
    encs = np.stack([enc, np.zeros(6, np.int32)])
    res = score_architectures(ctx, ["expressivity"], encs, chunk_size=2, progress=False)
    # stand-alone net with the supernet's weights of the chosen ops; ReLU codes captured explicitly
    solo = build_network(channels=4, cells_per_stage=1, bn_mode="fair", num_classes=10, arch=arch)
    x = jnp.asarray(batch["images"])
    template = jax.eval_shape(lambda k: solo.init(k, x[:1]), jax.random.key(0))
    sv = _prune(v, template)
    from fbnas_jax.models.layers import ForwardMode

    _, state = solo.apply(sv, x, mode=ForwardMode(train=True),
                          capture_intermediates=lambda mdl, _: isinstance(mdl, ReLU), mutable=["intermediates"])
    acts = jax.tree.leaves(state["intermediates"])
    assert len(acts) == 3 * 3 + 2 * 2 + 1  # 3 convs per cell x 3 cells, 2 per reduction block x 2, last act
    k = np.zeros((x.shape[0],) * 2)
    for a in acts:
        c = (np.asarray(a).reshape(x.shape[0], -1) > 0).astype(np.float64)
        k += c @ c.T + (1 - c) @ (1 - c).T
    want = np.linalg.slogdet(k)[1]
    assert np.isfinite(want)
    np.testing.assert_allclose(res["expressivity"][0], want, rtol=1e-5)
    assert res["expressivity"][1] == -np.inf  # all-none: every sample has the same code


@pytest.fixture(scope="module")
def uncertainty_scores(fair, batch):
    net, v = fair
    encs = np.concatenate([nb201.sample_encodings(np.random.default_rng(1), 3), np.zeros((1, 6), np.int32)])
    out = {"encs": encs}
    for t in (3, 1):
        ctx = base.ScoringContext(net=net, variables=v, images=batch["images"], labels=batch["labels"],
                                  train_images=batch["train_images"][:t])
        out[t] = score_architectures(ctx, ["uncertainty"], encs, chunk_size=4, progress=False)["uncertainty"]
    return out


def test_uncertainty_sign_and_single_sample(uncertainty_scores):
    u3, u1 = uncertainty_scores[3], uncertainty_scores[1]
    assert np.all(u3 <= 0) and np.any(u3 < -1e-6)
    np.testing.assert_array_equal(u1, 0.0)


def test_uncertainty_equals_weighted_statistics_reference(fair, batch, uncertainty_scores):
    """The engine's MC-BN (statistics from a static slice of the training part, ``stat_count``)
    equals the weighted-statistics formulation (weights 1 on train, 0 on eval), forward by forward."""
    from fbnas_jax.models.layers import ForwardMode

    net, v = fair
    x, tr = jnp.asarray(batch["images"]), jnp.asarray(batch["train_images"][:3])
    w = jnp.concatenate([jnp.ones(tr.shape[1]), jnp.zeros(x.shape[0])])
    apply = jax.jit(lambda t, e: net.apply(v, jnp.concatenate([t, x]), e, mode=ForwardMode(train=True, stat_weights=w)))
    want = []
    for e in uncertainty_scores["encs"]:
        probs = np.stack([np.asarray(jax.nn.softmax(apply(t, jnp.asarray(e))[tr.shape[1]:])) for t in tr])
        want.append(-np.mean(np.var(probs, axis=0)))
    np.testing.assert_allclose(uncertainty_scores[3], want, rtol=1e-4, atol=1e-9)
    with pytest.raises(ValueError, match="not both"):
        net.apply(v, x, uncertainty_scores["encs"][0], mode=ForwardMode(train=True, stat_weights=w[:12], stat_count=4))


def test_cpi_hand_example():
    s = {"expressivity": np.array([1.0, 2.0, 3.0, -np.inf]),
         "trainability": np.array([3.0, 2.0, 1.0, 0.0]),
         "uncertainty": np.array([-1.0, -1.0, -0.5, -2.0])}
    # ranks: e [2,3,4,1]; t [4,3,2,1]; u [2.5,2.5,4,1]
    np.testing.assert_allclose(cpi_from_scores(s), [(2 + 4 + 2.5) / 3, (3 + 3 + 2.5) / 3, (4 + 2 + 4) / 3, 1.0])
    s_nan = dict(s, trainability=np.array([3.0, np.nan, 1.0, 0.0]))
    c = cpi_from_scores(s_nan)
    assert np.isnan(c[1]) and np.all(np.isfinite(c[[0, 2, 3]]))
    # reference CPI: the set against itself is (rank - 0.5) / n per component
    ref = reference_cpi(s, s)
    np.testing.assert_allclose(ref, (cpi_from_scores(s) - 0.5) / 4)
    top = reference_cpi({k: np.array([10.0]) for k in s}, s)
    np.testing.assert_allclose(top, [1.0])
    with pytest.raises(KeyError, match="cpi needs"):
        cpi_from_scores({"expressivity": np.ones(3)})


def test_unknown_indicator_lists_available(fair):
    net, v = fair
    ctx = base.ScoringContext(net=net, variables=v)
    with pytest.raises(base.UnknownIndicatorError, match="available: .*gamma"):
        score_architectures(ctx, ["gama"], np.zeros((1, 6), np.int32), progress=False)
    with pytest.raises(ValueError, match="needs .*images"):
        score_architectures(ctx, ["expressivity"], np.zeros((1, 6), np.int32), progress=False)


def test_nan_scores_warned_and_not_ranked(fair):
    net, v = fair

    def build(ctx):
        return lambda enc: jnp.where(enc[:, 0] == 0, jnp.nan, jnp.sum(enc, axis=1).astype(jnp.float32))

    base.REGISTRY["_test_nan"] = base.Indicator("_test_nan", build, "supernet", per_arch_cost="table")
    try:
        ctx = base.ScoringContext(net=net, variables=v)
        encs = nb201.sample_encodings(np.random.default_rng(0), 30)
        with pytest.warns(UserWarning, match=r"_test_nan: \d+ of 30 architectures scored NaN"):
            res = score_architectures(ctx, ["_test_nan"], encs, progress=False)
        assert res.nan_archs["_test_nan"] == np.flatnonzero(encs[:, 0] == 0).tolist()
        r = rank_average(res["_test_nan"])
        assert np.all(np.isnan(r[encs[:, 0] == 0]))
    finally:
        del base.REGISTRY["_test_nan"]
