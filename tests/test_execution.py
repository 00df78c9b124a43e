"""Execution strategies of the engine give the same scores (fbnas_jax.engine).

The all-ops ``vmap`` (the supernet computes every candidate op and selects) and the
per-architecture ``lax.map`` / Python ``loop`` (``lax.switch``: only the chosen op runs,
canonical-gradient convolutions) must agree to float tolerance for every indicator; so must
shared passes (several indicators from one forward/backward) and their one-by-one versions,
and uncertainty's stacked vs sequential Monte-Carlo forwards. Tiny sizes: C=4, N=1, 16x16.
The training-free indicators' check lives in tests/test_training_free.py (it reuses that
module's compiled vmapped scores instead of compiling every gradient proxy twice more).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fbnas_jax import engine
from fbnas_jax.indicators import base
from fbnas_jax.models.layers import ForwardMode
from fbnas_jax.models.nb201 import build_network
from fbnas_jax.scoring import Scorer, score_architectures
from random_variables import random_variables

H = 16
#: the supernet's per-architecture indicators (the training-free ones: tests/test_training_free.py
#: compares lax.map + shared passes with its vmapped one-by-one scores)
PER_ARCH = ["expressivity", "supernet_accuracy", "supernet_neg_loss", "uncertainty"]
ARCHS = np.array([[1, 2, 3, 4, 1, 2], [3, 3, 3, 3, 3, 3], [0, 0, 0, 0, 0, 0], [2, 0, 3, 1, 4, 3],
                  [4, 4, 2, 1, 0, 3]], np.int32)


def _perturbed(net, seed=0):
    """Random BN scales/statistics so that every op (and every BN) matters."""
    return random_variables(net, seed, image_size=H)


@pytest.fixture(scope="module")
def ctx():
    net = build_network(channels=4, cells_per_stage=1, bn_mode="fair")
    v = _perturbed(net)
    rng = np.random.default_rng(0)
    options = {n: {"batch_size": 8} for n in ("naswot", "jacob_cov", "snip", "grasp", "fisher", "grad_norm")}
    options["ntk_cond"] = {"batch_size": 8, "repeats": 2}
    options["linear_regions"] = {"batch_size": 8, "repeats": 2}
    return base.ScoringContext(
        net=net, variables=v, init_variables=v, images=rng.normal(size=(8, H, H, 3)).astype(np.float32),
        labels=rng.integers(0, 10, 8).astype(np.int32),
        train_images=rng.normal(0.5, 1.5, size=(3, 8, H, H, 3)).astype(np.float32),
        key=jax.random.key(1), options=options)


def _close(a, b, name):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, name
    same_inf = np.isinf(a) & (a == b)
    both_nan = np.isnan(a) & np.isnan(b)
    ok = same_inf | both_nan | np.isclose(a, b, rtol=2e-4, atol=1e-5)
    assert ok.all(), f"{name}: {a} vs {b}"


@pytest.fixture(scope="module")
def both(ctx):
    """The supernet indicators one by one under the all-ops vmap with stacked MC forwards, and
    under the per-architecture lax.map (lax.switch) with one shared forward and sequential MC
    forwards."""
    stacked = dataclasses.replace(ctx, options={**ctx.options, "uncertainty": {"mc_batching": "stacked"}})
    seq = dataclasses.replace(ctx, options={**ctx.options, "uncertainty": {"mc_batching": "sequential"}})
    kw = dict(chunk_size=len(ARCHS), progress=False)
    return (score_architectures(stacked, PER_ARCH, ARCHS, execution="vmap", share=False, **kw),
            score_architectures(seq, PER_ARCH, ARCHS, execution="map", share=True, **kw))


def test_vmap_select_vs_map_switch_every_indicator(both):
    a, b = both
    jobs = {b.timings[n]["job"] for n in PER_ARCH}
    assert "expressivity+supernet_accuracy+supernet_neg_loss" in jobs, jobs
    assert {a.timings[n]["execution"] for n in PER_ARCH} == {"vmap"}
    assert {b.timings[n]["execution"] for n in PER_ARCH} == {"map"}
    for n in PER_ARCH:
        _close(a.scores[n], b.scores[n], n)
        assert np.all(np.isfinite(a.scores[n][[0, 1, 3, 4]])), (n, a.scores[n])  # all-`none` may be -inf/NaN


def test_loop_execution_and_scorer(ctx, both):
    """The Python loop over one compiled per-architecture program, through the Scorer."""
    loop = Scorer(ctx, chunk_size=2, execution="loop")("expressivity", ARCHS)
    _close(loop, both[0].scores["expressivity"], "expressivity")


def test_switch_forward_equals_select_forward(ctx):
    """The network itself: lax.switch runs only the chosen op and gives the same logits."""
    x = jnp.asarray(ctx.images)
    for train in (True, False):
        sel, sw = (jax.jit(lambda e, net=net, train=train: net.apply(ctx.variables, x, e, mode=ForwardMode(train=train)))
                   for net in (ctx.net, ctx.net.clone(strategy="switch")))
        for arch in ARCHS:
            np.testing.assert_allclose(np.asarray(sw(arch)), np.asarray(sel(arch)), rtol=1e-5, atol=1e-5)


def test_plan_and_bad_options(ctx):
    jobs = engine.plan(ctx, ["snip", "naswot", "grasp", "synflow", "jacob_cov"], execution="map")
    assert [j.names for j in jobs] == [("snip", "grasp"), ("naswot", "jacob_cov"), ("synflow",)]
    assert [j.names for j in engine.plan(ctx, ["snip", "grasp"], share=False)] == [("snip",), ("grasp",)]
    other = dataclasses.replace(ctx, options={**ctx.options, "grasp": {"batch_size": 4}})
    assert [j.names for j in engine.plan(other, ["snip", "grasp"])] == [("snip",), ("grasp",)]  # batches differ
    assert engine.resolve_execution("auto") == engine.DEFAULT_EXECUTION.get(jax.default_backend(), "vmap")
    with pytest.raises(ValueError, match="execution must be"):
        engine.resolve_execution("parallel")
    with pytest.raises(ValueError, match="precision must be"):
        engine.check_precision("fp8")
    with pytest.raises(ValueError, match="strategy must be"):
        build_network(channels=4, cells_per_stage=1, strategy="all")
    with pytest.raises(ValueError, match="mc_batching"):
        bad = dataclasses.replace(ctx, options={"uncertainty": {"mc_batching": "parallel"}})
        score_architectures(bad, ["uncertainty"], ARCHS[:1], progress=False)


# --------------------------------------------------------------------------- mixed edges

def _edge_outputs(net, v, x, arch_inputs, train):
    mode = ForwardMode(train=train)
    def run(a):
        out = net.apply(v, x, a, mode=mode, mutable=["batch_stats"] if train else False)
        return out[0] if train else out
    return [np.asarray(jax.jit(run)(jnp.asarray(a))) for a in arch_inputs]


@pytest.mark.parametrize("train", [False, True])
def test_one_hot_weights_are_bit_identical_to_encodings(train):
    from fbnas_jax.spaces.nb201 import encodings_to_weights
    net = build_network(channels=4, cells_per_stage=1, bn_mode="fair")
    v = _perturbed(net)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, H, H, 3)), jnp.float32)
    by_index = _edge_outputs(net, v, x, list(ARCHS), train)
    by_weights = _edge_outputs(net, v, x, list(encodings_to_weights(ARCHS)), train)
    for a, b in zip(by_index, by_weights):
        np.testing.assert_array_equal(a, b)


def test_mixed_edge_is_the_sum_of_its_single_ops():
    """An edge with a 0/1 mask outputs the sum of its live ops; real weights scale each op;
    running statistics are updated only for live ops."""
    from fbnas_jax.models.nb201 import Edge
    from fbnas_jax.spaces.nb201 import NUM_OPS
    edge = Edge(4, "fair")
    x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 8, 8, 4)), jnp.float32)
    v = edge.init(jax.random.key(0), x, jnp.ones(NUM_OPS, jnp.float32), ForwardMode())
    v = jax.tree_util.tree_map(lambda a: a + 0.1 * np.random.default_rng(3).normal(size=a.shape).astype(a.dtype), v)
    eye = np.eye(NUM_OPS, dtype=np.float32)
    single = [np.asarray(edge.apply(v, x, jnp.asarray(eye[k]), ForwardMode())) for k in range(NUM_OPS)]
    for w in ([0, 1, 1, 0, 1], [1, 1, 1, 1, 1], [0.0, 0.3, -1.2, 2.0, 0.5]):
        w = np.asarray(w, np.float32)
        mixed = np.asarray(edge.apply(v, x, jnp.asarray(w), ForwardMode()))
        np.testing.assert_allclose(mixed, sum(wk * s for wk, s in zip(w, single)), rtol=1e-5, atol=1e-5)
    # BN running statistics move for live ops only
    _, upd = edge.apply(v, x, jnp.asarray([0, 1, 0, 1, 0], jnp.float32), ForwardMode(train=True),
                        mutable=["batch_stats"])
    moved = {k: not np.allclose(upd["batch_stats"][k]["bn"]["mean"] if "bn" in upd["batch_stats"][k]
                                else upd["batch_stats"][k]["mean"],
                                v["batch_stats"][k]["bn"]["mean"] if "bn" in v["batch_stats"][k]
                                else v["batch_stats"][k]["mean"])
             for k in upd["batch_stats"]}
    # OPS: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3
    assert moved == {"nor_conv_1x1": False, "nor_conv_3x3": True, "skip_connect_bn": True, "avg_pool_3x3_bn": False}


def test_arch_input_of_wrong_shape_is_refused():
    net = build_network(channels=4, cells_per_stage=1)
    v = _perturbed(net)
    x = jnp.zeros((1, H, H, 3))
    with pytest.raises(ValueError, match=r"shape \(6, 5\)"):
        net.apply(v, x, jnp.zeros((6, 4), jnp.float32))
    with pytest.raises(ValueError, match="integer encoding"):
        net.apply(v, x, jnp.zeros((6,), jnp.float32))


def test_init_variables_first_called_under_a_trace_is_reusable():
    """nb201.init_variables caches its compiled init: a first call inside jax.eval_shape must
    not leave a tracer in the cache (it broke every later init of that network)."""
    from fbnas_jax.models.nb201 import init_variables
    net = build_network(channels=3, cells_per_stage=1)
    shapes = jax.eval_shape(lambda k: init_variables(net, k, (8, 8, 3)), jax.random.key(0, impl="rbg"))
    v = init_variables(net, 0, (8, 8, 3))
    assert jax.tree.map(lambda a: a.shape, v) == jax.tree.map(lambda a: a.shape, shapes)


def _second_order(f, *args):
    """Gradients of sum(tanh(grad f)) (reverse over reverse, as GraSP)."""
    g = lambda *a: jax.grad(f, tuple(range(len(a))))(*a)  # noqa: E731
    return jax.grad(lambda *a: sum(jnp.sum(jnp.tanh(q)) for q in g(*a)), tuple(range(len(args))))(*args)


def test_batch_norm_train_closed_form_gradients_equal_autodiff():
    """The switch networks' BatchNorm backward (closed form, custom_vjp) = autodiff of the plain
    formula, for y and the returned statistics, to first and second order."""
    from fbnas_jax.models.layers import _batch_moments, batch_norm_train

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((4, 5, 5, 3)) * 2 + 1, jnp.float32)
    scale, bias = (jnp.asarray(rng.standard_normal(3), jnp.float32) for _ in range(2))
    t = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)

    def plain(x, s, b):
        m, v, _ = _batch_moments(x, None)
        return (x - m) * jax.lax.rsqrt(v + 1e-5) * s + b, m, v

    def loss(bn):
        def f(x, s, b):
            y, m, v = bn(x, s, b)
            return jnp.sum(jnp.sin(y) * t) + jnp.sum(m ** 2) + jnp.sum(jnp.cos(v))
        return f

    fast = lambda x, s, b: batch_norm_train(x, s, b, 1e-5)  # noqa: E731
    for a, b in zip(fast(x, scale, bias), plain(x, scale, bias)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for order in (lambda f, *a: jax.grad(f, (0, 1, 2))(*a), _second_order):
        for a, b in zip(order(loss(fast), x, scale, bias), order(loss(plain), x, scale, bias)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(b))))


@pytest.mark.parametrize("kernel,stride,pad", [(1, 1, 0), (3, 2, 1)])
def test_canonical_conv_gradients_equal_lax(kernel, stride, pad):
    """canonical_conv (its 1x1 dot path and its transposed-conv path) differentiates as lax's
    own convolution, to first and second order."""
    from fbnas_jax.models.conv import canonical_conv

    rng = np.random.default_rng(kernel + stride)
    x = jnp.asarray(rng.standard_normal((3, 6, 6, 2)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((kernel, kernel, 2, 4)), jnp.float32)
    pads = ((pad, pad), (pad, pad))
    ours = lambda x, w: jnp.sum(jnp.sin(canonical_conv(x, w, (stride, stride), pads)))  # noqa: E731
    ref = lambda x, w: jnp.sum(jnp.sin(jax.lax.conv_general_dilated(  # noqa: E731
        x, w, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))))
    for order in (lambda f, *a: jax.grad(f, (0, 1))(*a), _second_order):
        for a, b in zip(order(ours, x, w), order(ref, x, w)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(b))))


@pytest.mark.parametrize("batch,size,stride,groups", [(8, 16, 1, 2), (12, 32, 2, 2), (32, 16, 1, 8), (6, 16, 1, 1)])
def test_kernel_grad_in_sample_blocks_equals_lax(batch, size, stride, groups):
    """The kernel gradient summed over blocks of samples (outputs of >= 256 pixels,
    ``kernel_grad_groups``) = lax's, to first and second order; the block count is as stated
    (a batch with no divisor giving >= 4 samples per block is not split)."""
    from fbnas_jax.models import conv

    assert conv.kernel_grad_groups(batch, (size // stride, size // stride)) == groups
    assert conv.kernel_grad_groups(batch, (8, 8)) == 1  # 64 pixels: one convolution
    rng = np.random.default_rng(batch + stride)
    x = jnp.asarray(rng.standard_normal((batch, size, size, 2)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 2, 3)), jnp.float32)
    pads = ((1, 1), (1, 1))
    ours = lambda x, w: jnp.sum(jnp.sin(conv.canonical_conv(x, w, (stride, stride), pads)))  # noqa: E731
    ref = lambda x, w: jnp.sum(jnp.sin(jax.lax.conv_general_dilated(  # noqa: E731
        x, w, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))))
    for order in (lambda f, *a: jax.grad(f, (0, 1))(*a), _second_order):
        for a, b in zip(order(ours, x, w), order(ref, x, w)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_canonical_conv_second_order_stays_canonical_and_third_order_equals_lax():
    """The gradients of canonical_conv's input/kernel gradients are again convolutions in the
    original geometry (NHWC x HWIO, the layer's window): autodiff of the kernel gradient's
    canonical form would convolve with an image-sized window (~100x the FLOPs; GraSP's
    Hessian-gradient product). Third order still equals lax's."""
    import re

    from fbnas_jax.models.conv import canonical_conv

    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((3, 12, 12, 2)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 2, 4)), jnp.float32)
    pads = ((1, 1), (1, 1))

    def hvp(conv):
        loss = lambda x, w: jnp.sum(jnp.sin(conv(x, w)))  # noqa: E731
        z = lambda x, w: sum(jnp.vdot(jax.lax.stop_gradient(g), g)  # noqa: E731
                             for g in jax.grad(loss, (0, 1))(x, w))
        return lambda x, w: jnp.sum(jnp.tanh(jnp.concatenate([a.ravel() for a in jax.grad(z, (0, 1))(x, w)])))

    ours = hvp(lambda x, w: canonical_conv(x, w, (1, 1), pads))
    ref = hvp(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC")))
    hlo = jax.jit(jax.grad(ours, (0, 1))).lower(x, w).as_text()
    convs = re.findall(r"stablehlo\.convolution\(.*: \(tensor<([0-9x]+)xf32>, tensor<([0-9x]+)xf32>\)", hlo)
    assert len(convs) >= 8, hlo[:2000]
    for lhs, rhs in convs:  # NHWC x HWIO: the window never exceeds the image it slides over
        lhs_sp = [int(v) for v in lhs.split("x")[1:3]]
        rhs_sp = [int(v) for v in rhs.split("x")[0:2]]
        assert rhs_sp[0] <= lhs_sp[0] and rhs_sp[1] <= lhs_sp[1], (lhs, rhs)
    for a, b in zip(jax.grad(ours, (0, 1))(x, w), jax.grad(ref, (0, 1))(x, w)):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4 * float(jnp.max(jnp.abs(b))))


@pytest.mark.parametrize("kernel,stride,pad", [(1, 1, 0), (3, 2, 1)])
def test_canonical_relu_conv_equals_relu_then_conv(kernel, stride, pad):
    """The ReLU folded into the convolution's custom_vjp (the switch networks' ReLU-Conv-BN:
    only the pre-activation is saved) = relu then lax's convolution, to first and second order."""
    from fbnas_jax.models.conv import canonical_relu_conv

    rng = np.random.default_rng(kernel + 7 * stride)
    x = jnp.asarray(rng.standard_normal((3, 6, 6, 2)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((kernel, kernel, 2, 4)), jnp.float32)
    pads = ((pad, pad), (pad, pad))
    ours = lambda x, w: jnp.sum(jnp.sin(canonical_relu_conv(x, w, (stride, stride), pads)))  # noqa: E731
    ref = lambda x, w: jnp.sum(jnp.sin(jax.lax.conv_general_dilated(  # noqa: E731
        jax.nn.relu(x), w, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))))
    np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-5)
    for order in (lambda f, *a: jax.grad(f, (0, 1))(*a), _second_order):
        for a, b in zip(order(ours, x, w), order(ref, x, w)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_pooling_as_shifted_sums_equals_reduce_window():
    """NB201's 3x3 average pool (count_include_pad=False) as shifted slice sums and the
    reduction block's 2x2 pool as a reshape-mean = lax.reduce_window / flax's avg_pool, to
    first and second order (GraSP differentiates through them twice)."""
    import flax.linen as nn

    from fbnas_jax.models.layers import avg_pool_2x2, avg_pool_3x3

    def ref3(x):
        window, pads = (1, 3, 3, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
        total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, (1,) * 4, pads)
        count = jax.lax.reduce_window(jnp.ones_like(x), 0.0, jax.lax.add, window, (1,) * 4, pads)
        return total / count

    ref2 = lambda x: nn.avg_pool(x, (2, 2), strides=(2, 2))  # noqa: E731
    x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 6, 4, 3)), jnp.float32)
    for ours, ref in ((lambda x: avg_pool_3x3(x, shifted_sums=True), ref3), (avg_pool_3x3, ref3), (avg_pool_2x2, ref2)):
        np.testing.assert_allclose(ours(x), ref(x), rtol=1e-5, atol=1e-6)
        f, g = (lambda x, p=p: jnp.sum(jnp.sin(3.0 * p(x))) for p in (ours, ref))
        for order in (lambda f, *a: jax.grad(f)(*a), lambda f, *a: _second_order(f, *a)[0]):
            np.testing.assert_allclose(order(f, x), order(g, x), rtol=1e-4, atol=1e-5)


def test_compile_fitting_halves_the_chunk_to_the_memory_limit(ctx, monkeypatch):
    """A program that would not fit the device memory is recompiled for smaller chunks
    (XLA's memory analysis, before any run), and the scores do not change."""
    job = engine.plan(ctx, ["expressivity"], execution="vmap")[0]
    devs = [jax.local_devices()[0]]
    big = engine.compile_job(ctx, job, 4, devs, (6,))
    small = engine.compile_job(ctx, job, 1, devs, (6,))
    assert big.memory_mb is not None and small.memory_mb < big.memory_mb
    logged = []
    fitted = engine.compile_fitting(ctx, job, 4, devs, (6,), limit_mb=big.memory_mb - 1e-3, log=logged.append)
    assert fitted.chunk == 2 and "recompiling for 2" in logged[0]
    assert fitted.compile_s > 0 and fitted.memory_mb < big.memory_mb
    assert engine.compile_fitting(ctx, job, 4, devs, (6,), limit_mb=0.0).chunk == 1  # never below one architecture
    # far over the limit: one recompilation, straight to the chunk that fits (not 4 -> 2 -> 1)
    logged.clear()
    assert engine.compile_fitting(ctx, job, 4, devs, (6,), limit_mb=0.3 * big.memory_mb, log=logged.append).chunk == 1
    assert len(logged) == 1
    # score_architectures takes the device's limit (here: forced) and reports the chunk it used
    monkeypatch.setattr(engine, "memory_limit_mb", lambda device: small.memory_mb + 1e-3)
    res = score_architectures(ctx, ["expressivity"], ARCHS[:4], chunk_size=4, execution="vmap", progress=False)
    assert res.chunk_size == 1 and res.timings["expressivity"]["chunk_size"] == 1
    _close(res.scores["expressivity"], np.concatenate([small.run(a[None])["expressivity"] for a in ARCHS[:4]]),
           "expressivity, fitted chunk")


def test_memory_limit_is_unknown_on_cpu():
    assert engine.memory_limit_mb(jax.local_devices()[0]) is None or jax.default_backend() != "cpu"
