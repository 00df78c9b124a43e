"""Training-free baselines: vmapped supernet scores vs single architectures and stand-alone nets.

XLA compiles of the supernet's gradients dominate the runtime, so every proxy of the
supernet is compiled exactly once, inside one jitted function over a fixed-shape chunk of
4 encodings; consistency checks reuse it with a rearranged chunk (same shape, no recompile).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fbnas_jax.indicators import _proxies as P
from fbnas_jax.indicators import training_free as tf
from fbnas_jax.indicators.base import REGISTRY, ScoringContext
from fbnas_jax.models.nb201 import build_network
from fbnas_jax.spaces.cost import nb201_costs

NAMES = ["naswot", "jacob_cov", "synflow", "snip", "grasp", "fisher", "grad_norm", "ntk_cond",
         "linear_regions", "params", "flops"]
ALL_NONE, MIXED = [0] * 6, [1, 2, 3, 4, 1, 2]
CHUNK_A = np.array([ALL_NONE, [3] * 6, MIXED, [2, 0, 3, 1, 4, 3]], np.int32)
CHUNK_B = np.array([MIXED, [2, 0, 3, 1, 4, 3], [3] * 6, MIXED], np.int32)  # permuted + duplicate
BATCH = 8


@pytest.fixture(scope="module")
def setup(tiny_dataset):
    ds = tiny_dataset
    x = ((ds.train_images[:32].astype(np.float32) / 255.0 - ds.mean) / ds.std).astype(np.float32)
    y = ds.train_labels[:32].astype(np.int32)
    net = build_network(channels=4, cells_per_stage=1)
    v = net.init(jax.random.PRNGKey(0), jnp.asarray(x[:1]), jnp.zeros((6,), jnp.int32))
    options = {n: {"batch_size": BATCH} for n in tf.DEFAULT_OPTIONS if n != "synflow"}
    options["ntk_cond"]["repeats"] = 2
    options["linear_regions"]["repeats"] = 2
    ctx = ScoringContext(net=net, init_variables=v, images=x, labels=y, key=jax.random.PRNGKey(1),
                         options=options)
    fns = {n: REGISTRY[n].build(ctx) for n in NAMES}
    finish = {n: REGISTRY[n].finish_fn(ctx) for n in NAMES}  # host steps (log-det, eigenvalues, costs)
    combined = jax.jit(lambda e: {n: f(e) for n, f in fns.items()})
    a = {k: np.asarray(finish[k](s)) for k, s in jax.device_get(combined(CHUNK_A)).items()}
    b = {k: np.asarray(finish[k](s)) for k, s in jax.device_get(combined(CHUNK_B)).items()}
    return dict(net=net, v=v, x=x, y=y, ctx=ctx, a=a, b=b)


def test_registry_entries():
    for n in NAMES:
        ind = REGISTRY[n]
        assert ind.family == ("cost" if n in ("params", "flops") else "training_free")
        assert ind.sign_note and ind.build is not None
    assert "NEGATED" in REGISTRY["ntk_cond"].sign_note
    assert tf.DEFAULT_OPTIONS["naswot"]["batch_size"] == 128
    # TE-NAS's NB201 launcher; per-sample VJPs one at a time unless asked (issue 14)
    assert tf.DEFAULT_OPTIONS["ntk_cond"] == {"batch_size": 72, "repeats": 3, "cotangent_block": 1}


def test_resolve_options_override_and_cap(setup):
    ctx = setup["ctx"]
    assert tf.resolve_options("naswot", ctx)["batch_size"] == BATCH
    big = ScoringContext(net=ctx.net, images=ctx.images, options={})
    assert tf.resolve_options("naswot", big)["batch_size"] == 32  # 128 capped at the data
    assert tf.resolve_options("jacob_cov", big)["k"] == 1e-5


def test_shapes_and_vmap_consistency(setup):
    a, b = setup["a"], setup["b"]
    for n in NAMES:
        assert a[n].shape == (4,) and a[n].dtype == np.float32, n
        # the same architecture scores the same whatever its chunk-mates and position
        np.testing.assert_allclose(b[n][0], a[n][2], rtol=2e-4, atol=1e-5, err_msg=n)
        np.testing.assert_allclose(b[n][3], a[n][2], rtol=2e-4, atol=1e-5, err_msg=n)
        np.testing.assert_allclose(b[n][1], a[n][3], rtol=2e-4, atol=1e-5, err_msg=n)
        np.testing.assert_allclose(b[n][2], a[n][1], rtol=2e-4, atol=1e-5, err_msg=n)
        assert np.all(np.isfinite(a[n][1:])), (n, a[n])


def test_all_none_documented(setup):
    s = {n: setup["a"][n][0] for n in NAMES}
    assert s["naswot"] == -np.inf and s["synflow"] == -np.inf
    assert np.isnan(s["jacob_cov"])
    assert s["snip"] == 0 and s["grad_norm"] == 0 and s["fisher"] == 0 and s["grasp"] == 0
    assert s["ntk_cond"] == -1e5
    assert s["linear_regions"] == 1


def test_map_switch_shared_passes_equal_vmap(setup):
    """Per-architecture ``lax.map`` (``lax.switch``: only the chosen ops run, canonical-gradient
    convolutions) with shared passes (snip+grasp+fisher+grad_norm from one backward,
    naswot+jacob_cov from one forward) gives the vmapped one-by-one scores above
    (:mod:`fbnas_jax.engine`; the supernet indicators: tests/test_execution.py)."""
    from fbnas_jax.scoring import score_architectures

    per_arch = [n for n in NAMES if REGISTRY[n].per_arch]
    res = score_architectures(setup["ctx"], per_arch, CHUNK_A, chunk_size=4, execution="map", share=True,
                              progress=False)
    assert res.timings["snip"]["job"] == "snip+grasp+fisher+grad_norm" and res.timings["naswot"]["job"] == "naswot+jacob_cov"
    assert {res.timings[n]["execution"] for n in per_arch} == {"map"}
    for n in per_arch:
        a, b = setup["a"][n].astype(np.float64), res.scores[n]
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        assert np.all(same | np.isclose(b, a, rtol=2e-4, atol=1e-5)), (n, a, b)


def test_cost_matches_cost_model(setup):
    p, f = nb201_costs(CHUNK_A, channels=4, cells_per_stage=1, input_size=16)
    np.testing.assert_allclose(setup["a"]["params"], p, rtol=1e-6)
    np.testing.assert_allclose(setup["a"]["flops"], f, rtol=1e-6)


def test_ntk_condition_at_least_one(setup):
    assert np.all(-setup["a"]["ntk_cond"][1:] >= 1.0)
    rng = np.random.default_rng(0)
    m = rng.normal(size=(3, 6, 6)).astype(np.float32)
    gram = m @ np.swapaxes(m, 1, 2)
    ev = np.linalg.eigvalsh(gram.astype(np.float64))
    np.testing.assert_allclose(P.condition_number(gram), ev[:, -1] / ev[:, 0], rtol=1e-4)


def test_count_patterns_matches_unique():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2, size=(5, 40))
    codes = base[rng.integers(0, 5, size=12)].astype(np.float32)  # duplicates on purpose
    k = codes @ codes.T + (1 - codes) @ (1 - codes).T
    assert int(P.count_patterns(jnp.asarray(k))) == len(np.unique(codes, axis=0))


def test_naswot_logdet_float64():
    rng = np.random.default_rng(1)
    c = rng.integers(0, 2, size=(6, 50)).astype(np.float64)
    k = c @ c.T + (1 - c) @ (1 - c).T
    want = np.linalg.slogdet(k)[1]
    assert np.isclose(tf.naswot_logdet(k), want, rtol=1e-6)
    np.testing.assert_allclose(tf.naswot_logdet(np.stack([k, k]).astype(np.float32)), [want, want], rtol=1e-6)


def _standalone(setup, arch):
    """Stand-alone net of ``arch`` with params/stats copied from the supernet's chosen ops."""
    net = build_network(channels=4, cells_per_stage=1, arch=arch)
    own = net.init(jax.random.PRNGKey(5), jnp.asarray(setup["x"][:1]))
    sup = {c: P.flat(setup["v"][c]) for c in ("params", "batch_stats")}
    copied = {c: P.unflat({k: sup[c][k] for k in P.flat(own[c])}) for c in ("params", "batch_stats")}
    return net, copied


def test_standalone_equals_supernet_subnet(setup):
    """Unchosen ops contribute nothing: snip / grad_norm / grasp / fisher / naswot / synflow of the supernet
    subnet equal those of the stand-alone network holding only the chosen ops."""
    net, v = _standalone(setup, MIXED)
    x, y = jnp.asarray(setup["x"][:BATCH]), jnp.asarray(setup["y"][:BATCH])

    @jax.jit
    def scores(v):
        return {"snip": P.snip(net, v, x, y, None), "grad_norm": P.grad_norm(net, v, x, y, None),
                "grasp": P.grasp(net, v, x, y, None), "fisher": P.fisher(net, v, x, y, None),
                "naswot_k": P.relu_kernel(net, v, x, None),
                "synflow": P.synflow(net, v, x.shape[1:], None), "direct": _direct_synflow(net, v, x)}

    s = scores(v)
    a = setup["a"]
    np.testing.assert_allclose(s["snip"], a["snip"][2], rtol=1e-4)
    np.testing.assert_allclose(s["grad_norm"], a["grad_norm"][2], rtol=1e-4)
    np.testing.assert_allclose(s["grasp"], a["grasp"][2], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(s["fisher"], a["fisher"][2], rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(tf.naswot_logdet(np.asarray(s["naswot_k"])), a["naswot"][2], rtol=1e-5)
    np.testing.assert_allclose(s["synflow"], a["synflow"][2], rtol=1e-4)
    # the rescaled log-space SynFlow equals the direct float32 computation (no overflow here)
    np.testing.assert_allclose(s["synflow"], np.log(s["direct"]), rtol=1e-4)


def _direct_synflow(net, v, x, enc=None):
    params = jax.tree.map(jnp.abs, v["params"])
    stats = P.unflat({k: (jnp.zeros_like(t) if k[-1] == "mean" else jnp.full_like(t, 1.0 - 1e-5))
                      for k, t in P.flat(v["batch_stats"]).items()})
    ones = jnp.ones((1,) + x.shape[1:])
    g = jax.grad(lambda p: jnp.sum(P.logits(net, p, stats, ones, enc, P.EVAL)))(params)
    fp, fg = P.flat(params), P.flat(g)
    return sum(jnp.sum(jnp.abs(fp[k] * fg[k])) for k in fp if k[-1] == "kernel")


def test_synflow_forward_equals_backward_beyond_float32(setup):
    """NB201's one-forward SynFlow (a ``linear_chain``) equals the two-pass reverse-mode one,
    also where the plain float32 computation overflows (kernels x 1000),
    and gives -inf for an all-``none`` cell."""
    net, v, x = setup["net"], setup["v"], setup["x"]
    assert net.linear_chain
    big = dict(v, params=P.unflat({k: (t * 1000.0 if k[-1] == "kernel" else t) for k, t in P.flat(v["params"]).items()}))
    ones = jnp.ones((1,) + x.shape[1:], jnp.float32)

    @jax.jit
    def both(v, e):
        params, stats = P._synflow_variables(v, 1e-5)
        return (P.synflow_forward(net, params, stats, ones, e), P.synflow_backward(net, params, stats, ones, e),
                _direct_synflow(net, v, x, e))

    for enc in (MIXED, [2, 0, 3, 1, 4, 3], [3] * 6):
        fwd, bwd, direct = both(v, jnp.asarray(enc, jnp.int32))
        np.testing.assert_allclose(fwd, bwd, rtol=1e-5, err_msg=str(enc))
        np.testing.assert_allclose(fwd, np.log(direct), rtol=1e-4, err_msg=str(enc))
        fwd, bwd, direct = both(big, jnp.asarray(enc, jnp.int32))
        assert not np.isfinite(direct) and fwd > np.log(np.finfo(np.float32).max), (enc, fwd, direct)
        np.testing.assert_allclose(fwd, bwd, rtol=1e-5, err_msg=str(enc))
    fwd, bwd, _ = both(v, jnp.asarray(ALL_NONE, jnp.int32))
    assert fwd == bwd == -np.inf


def test_missing_context_fields_error(setup):
    with pytest.raises(ValueError, match="labels"):
        REGISTRY["snip"].build(ScoringContext(net=setup["net"], init_variables=setup["v"], images=setup["x"]))


def test_ntk_cond_and_linear_regions_take_mixed_op_weights(setup):
    """TE-NAS pruning scores a *pruned supernet*: NB201 op weights (6, 5) instead of an
    encoding. One-hot weights give the encoding's scores (through the engine's per-architecture
    map with float inputs); a 0/1 mask with several live ops per edge gives finite scores that
    differ from any single architecture's."""
    from fbnas_jax import engine
    from fbnas_jax.spaces.nb201 import encodings_to_weights

    ctx = setup["ctx"]
    mask = np.zeros((6, 5), np.float32)
    mask[:, 1:] = 1.0  # every op but `none` alive
    weights = np.stack([encodings_to_weights(np.asarray([MIXED]))[0], mask]).astype(np.float32)
    jobs = engine.plan(ctx, ["ntk_cond", "linear_regions"], execution="map")
    got = {}
    for job in jobs:
        comp = engine.compile_job(ctx, job, 2, [jax.local_devices()[0]], (6, 5), jnp.float32)
        got.update({k: np.asarray(v) for k, v in comp.run(weights).items()})
    for n in ("ntk_cond", "linear_regions"):
        np.testing.assert_allclose(got[n][0], setup["a"][n][2], rtol=2e-4, err_msg=n)
        assert np.isfinite(got[n][1]), (n, got[n])
    assert got["ntk_cond"][1] != got["ntk_cond"][0]
