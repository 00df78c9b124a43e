"""GPU candidates of issue 14 give today's values: ntk_cond's blocked per-sample VJPs and the
im2col kernel gradient (``kernel_grad="patches"``), both behind options off by default.

Tiny sizes (C=4, N=1, 16x16 images, batch 8); each comparison is one jitted program. Where the
comparison does not need the architecture to be an input (the per-sample VJPs, second order),
a stand-alone network (only the chosen ops) keeps the compilation short.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fbnas_jax.indicators import _proxies as P
from fbnas_jax.indicators import training_free as tf
from fbnas_jax.indicators.base import REGISTRY, ScoringContext
from fbnas_jax.models.conv_patches import patches_grad_conv
from fbnas_jax.models.nb201 import build_network, init_variables

ARCHS = np.array([[1, 2, 3, 4, 1, 2], [3, 3, 3, 3, 3, 3], [2, 0, 3, 1, 4, 3]], np.int32)
B = 8


@pytest.fixture(scope="module")
def tiny(tiny_dataset):
    ds = tiny_dataset
    x = ((ds.train_images[:B].astype(np.float32) / 255.0 - ds.mean) / ds.std).astype(np.float32)
    y = ds.train_labels[:B].astype(np.int32)
    net = build_network(channels=4, cells_per_stage=1, bn_mode="bnnas")
    v = jax.device_get(init_variables(net, 0, x.shape[1:]))
    alone = build_network(channels=4, cells_per_stage=1, bn_mode="bnnas", arch=tuple(ARCHS[0]))
    va = jax.device_get(init_variables(alone, 0, x.shape[1:]))
    return dict(net=net, v={"params": v["params"], "batch_stats": v["batch_stats"]}, x=x, y=y, alone=alone,
                va={"params": va["params"], "batch_stats": va["batch_stats"]})


def test_ntk_gram_cotangent_blocks_agree(tiny):
    """n = 1 (today's map), 4 (a map over vmapped blocks), B (one vmap): one Gram matrix."""
    net, v, x = tiny["alone"], tiny["va"], jnp.asarray(tiny["x"])
    grams = jax.jit(lambda e: {n: P.ntk_gram(net, v, x, e, cotangent_block=n) for n in (1, 4, B)})(ARCHS[0])
    g1 = np.asarray(grams[1], np.float64)
    assert g1.shape == (B, B) and np.all(np.diag(g1) > 0)
    for n in (4, B):
        np.testing.assert_allclose(np.asarray(grams[n]), g1, rtol=2e-5, atol=2e-5 * np.abs(g1).max(), err_msg=str(n))


def test_ntk_cond_option_reaches_the_indicator(tiny):
    """The option through the registry (3: blocks with a remainder), the same score."""
    net, v, x = tiny["alone"], tiny["va"], tiny["x"]
    fns = {}
    for n in (1, 3):
        ctx = ScoringContext(net=net, init_variables=v, images=x, key=jax.random.key(0),
                             options={"ntk_cond": {"batch_size": B, "repeats": 1, "cotangent_block": n}})
        assert tf.resolve_options("ntk_cond", ctx)["cotangent_block"] == n
        fns[n] = REGISTRY["ntk_cond"].build_arch(ctx)
    finish = REGISTRY["ntk_cond"].finish_fn(ctx)
    out = jax.device_get(jax.jit(lambda e: {n: f(e) for n, f in fns.items()})(jnp.asarray(ARCHS[0])))
    scores = {n: finish(g[None]) for n, g in out.items()}
    assert np.isfinite(scores[1]).all()
    np.testing.assert_allclose(scores[3], scores[1], rtol=1e-3)
    bad = ScoringContext(net=net, init_variables=v, images=x, options={"ntk_cond": {"cotangent_block": 0}})
    with pytest.raises(ValueError, match="cotangent_block must be an integer >= 1"):
        REGISTRY["ntk_cond"].build_arch(bad)


@pytest.mark.parametrize("win,stride,pad", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (3, 1, 0)])
def test_patches_conv_first_and_second_order(win, stride, pad):
    """Values, kernel/input gradients and the GraSP-style Hessian-gradient product under a vmap
    over "architectures" (batched input, shared kernel) equal lax's, strided and 1x1 included."""
    dn, p = ("NHWC", "HWIO", "NHWC"), ((pad, pad), (pad, pad))
    x = jax.random.normal(jax.random.key(0), (2, 4, 8, 8, 3))
    k = jax.random.normal(jax.random.key(1), (win, win, 3, 5))
    k2 = jax.random.normal(jax.random.key(2), (3, 3, 5, 2))

    def loss(conv, k, x):
        y = jnp.tanh(conv(x, k, (stride, stride), p, None, None, dn))
        return jnp.sum(jnp.sin(conv(y, k2, (1, 1), ((1, 1), (1, 1)), None, None, dn)))

    def quantities(conv):
        def one(x):
            gk, gx = jax.grad(loss, argnums=(1, 2))(conv, k, x)
            z = lambda k: (lambda g: jnp.vdot(lax.stop_gradient(g), g))(jax.grad(loss, argnums=1)(conv, k, x))
            return loss(conv, k, x), gk, gx, jax.grad(z)(k)
        return jax.vmap(one)(x)

    ref, ours = quantities(lax.conv_general_dilated), quantities(patches_grad_conv)
    for name, a, b in zip(("value", "dk", "dx", "Hg"), ref, ours):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max(), err_msg=name)


def test_patches_kernel_grad_gives_the_ce_proxies(tiny):
    """snip / grad_norm (first order) of the all-ops supernet vmapped over architectures, as on a
    GPU, and grasp (second order) of a stand-alone net: kernel_grad="patches" equals the default."""
    x, y = jnp.asarray(tiny["x"]), jnp.asarray(tiny["y"])
    first = ("snip", "grad_norm")

    @jax.jit
    def both(enc):
        out = {}
        for kg in ("lax", "patches"):
            net, alone = tiny["net"].clone(kernel_grad=kg), tiny["alone"].clone(kernel_grad=kg)
            out[kg] = jax.vmap(lambda e: P.ce_family(net, tiny["v"], x, y, e, first))(enc)
            out[kg]["grasp"] = P.ce_family(alone, tiny["va"], x, y, enc[0], ("grasp",))["grasp"][None]
        return out

    out = jax.device_get(both(jnp.asarray(ARCHS)))
    for name in first + ("grasp",):
        a, b = np.asarray(out["lax"][name], np.float64), np.asarray(out["patches"][name], np.float64)
        assert np.all(np.isfinite(a)) and np.all(a != 0), name
        np.testing.assert_allclose(b, a, rtol=2e-4 if name == "grasp" else 2e-5, err_msg=name)


def test_kernel_grad_option_is_checked():
    with pytest.raises(ValueError, match="kernel_grad must be one of"):
        build_network(channels=4, cells_per_stage=1, kernel_grad="im2col")
    assert build_network(channels=4, cells_per_stage=1).kernel_grad == "lax"
