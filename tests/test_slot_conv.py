"""Slot convolutions (fbnas_jax.models.slot_conv): a shared kernel w plus per-slot zero deltas d
must give exactly what per-slot kernel COPIES give (each slot convolving with its own copy,
vmapped: grouped convolutions) -- the value, the gradients w.r.t. the deltas (= the copies'),
the input and the shared kernel, GraSP's Hessian-gradient product (reverse over reverse, the
cotangent kernels untied) and a Hessian-vector product with a random per-slot vector -- while
the forward and the input gradient stay dense (counted in the lowered program). Inside a
lax.scan too (the routed network scans its cells; JAX's residual forwarding broke reverse
over reverse there). Non-zero deltas (copies not tied) must give NaN in those slots, not a
wrong number.

Tolerances (float32, the same convolutions summed in another order): first order relative 1e-5
of the largest entry; second order 1e-4 (measured ~3e-7 of the largest entry).
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fbnas_jax.models.slot_conv import copies_conv, slot_conv

S, B, H, C = 3, 2, 6, 4
TOL1, TOL2 = 1e-5, 1e-4


def _close(got, ref, rel):
    ref = np.asarray(ref)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=rel * float(np.max(np.abs(ref))))


def _data(seed=0, first_ksize=3):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(S, B, H, H, C)), jnp.float32)
    w1 = jnp.asarray(rng.normal(size=(first_ksize, first_ksize, C, C)) * 0.4, jnp.float32)
    w2 = jnp.asarray(rng.normal(size=(3, 3, C, C)) * 0.4, jnp.float32)
    return x, w1, w2


def _nets(w1, w2, stride, kernel_grad):
    """``(slot_loss(x, ds), copies_loss(x, ks))``: two convolution layers (the first of
    stride ``stride``, its own padding), a nonlinearity between and after."""
    pad = w1.shape[0] // 2

    def slot_loss(x, ds):
        h = jnp.tanh(slot_conv(x, w1, ds[0], stride, pad, kernel_grad))
        return jnp.sum(jnp.sin(slot_conv(h, w2, ds[1], 1, None, kernel_grad)))

    def copies_loss(x, ks):
        h = jnp.tanh(copies_conv(x, ks[0], stride, pad))
        return jnp.sum(jnp.sin(copies_conv(h, ks[1])))

    return slot_loss, copies_loss


def _grasp_hg(loss):
    """GraSP's Hessian-gradient product ``H g`` (``g`` held constant), as the proxies take it."""
    def z(p):
        g = jax.grad(loss)(p)
        return sum(jnp.vdot(jax.lax.stop_gradient(a), a) for a in g)
    return jax.grad(z)


def _hvp(loss, v):
    return jax.grad(lambda p: sum(jnp.vdot(a, b) for a, b in zip(v, jax.grad(loss)(p))))


@pytest.mark.parametrize("kernel_grad,first_ksize,stride", [("lax", 3, 2), ("lax", 1, 1), ("patches", 3, 1)])
def test_slot_conv_matches_per_slot_copies(kernel_grad, first_ksize, stride):
    x, w1, w2 = _data(first_ksize=first_ksize)
    slot_loss, copies_loss = _nets(w1, w2, stride, kernel_grad)
    ds = (jnp.zeros((S,) + w1.shape), jnp.zeros((S,) + w2.shape))
    ks = (jnp.broadcast_to(w1, (S,) + w1.shape), jnp.broadcast_to(w2, (S,) + w2.shape))
    slot = jax.jit(lambda d: slot_loss(x, d))
    copies = jax.jit(lambda k: copies_loss(x, k))
    np.testing.assert_allclose(slot(ds), copies(ks), rtol=TOL1)
    g_slot, g_copies = jax.grad(slot)(ds), jax.grad(copies)(ks)
    for a, b in zip(g_slot, g_copies):  # per-slot kernel gradients
        _close(a, b, TOL1)
        assert float(jnp.max(jnp.abs(a[0] - a[1]))) > 1e-3  # the slots' gradients differ
    _close(jax.grad(slot_loss)(x, ds), jax.grad(copies_loss)(x, ks), TOL1)  # input gradient
    w_grad = jax.grad(lambda w: _nets(w, w2, stride, kernel_grad)[0](x, ds))(w1)
    _close(w_grad, jnp.sum(g_copies[0], axis=0), TOL1)  # shared kernel: the slots' sum
    for a, b in zip(jax.jit(_grasp_hg(slot))(ds), jax.jit(_grasp_hg(copies))(ks)):
        _close(a, b, TOL2)
    rng = np.random.default_rng(1)
    v = tuple(jnp.asarray(rng.normal(size=d.shape), jnp.float32) for d in ds)  # untied cotangent kernels
    for a, b in zip(jax.jit(_hvp(slot, v))(ds), jax.jit(_hvp(copies, v))(ks)):
        _close(a, b, TOL2)


def test_slot_conv_second_order_inside_scan():
    """Two scanned layers (stacked kernels, as the routed network's cells): value, gradient and
    GraSP's Hessian-gradient product equal the copies'."""
    x, w1, w2 = _data()
    ws = jnp.stack([w1, w2])

    def slot_loss(ds):
        h, _ = jax.lax.scan(lambda h, wd: (jnp.sin(slot_conv(jnp.tanh(h), wd[0], wd[1])), None), x, (ws, ds))
        return jnp.sum(h)

    def copies_loss(ks):
        h, _ = jax.lax.scan(lambda h, k: (jnp.sin(copies_conv(jnp.tanh(h), k)), None), x, ks)
        return jnp.sum(h)

    ds, ks = jnp.zeros((2, S) + w1.shape), jnp.broadcast_to(ws[:, None], (2, S) + w1.shape)
    np.testing.assert_allclose(slot_loss(ds), copies_loss(ks), rtol=TOL1)
    _close(jax.grad(slot_loss)(ds), jax.grad(copies_loss)(ks), TOL1)
    hg = lambda f: jax.grad(lambda p: jnp.vdot(jax.lax.stop_gradient(jax.grad(f)(p)), jax.grad(f)(p)))  # noqa: E731
    _close(jax.jit(hg(slot_loss))(ds), jax.jit(hg(copies_loss))(ks), TOL2)


def _conv_groups(fn, *args):
    """``(ungrouped, grouped)`` counts of the convolutions in ``fn``'s lowered program."""
    text = jax.jit(fn).lower(*args).as_text()
    convs = [line for line in text.splitlines() if "stablehlo.convolution" in line]
    grouped = sum(1 for line in convs if re.search(r"(feature|batch)_group_count = ([2-9]|\d\d)", line))
    return len(convs) - grouped, grouped


def test_slot_conv_forward_and_input_gradient_are_dense():
    """Forward: no grouped convolution (copies: all grouped). First-order gradient w.r.t. the
    deltas and the input: only the 2 kernel gradients are grouped (per slot)."""
    x, w1, w2 = _data()
    slot_loss, copies_loss = _nets(w1, w2, 1, "lax")
    ds = (jnp.zeros((S,) + w1.shape), jnp.zeros((S,) + w2.shape))
    ks = (jnp.broadcast_to(w1, (S,) + w1.shape), jnp.broadcast_to(w2, (S,) + w2.shape))
    assert _conv_groups(slot_loss, x, ds) == (2, 0)
    assert _conv_groups(copies_loss, x, ks) == (0, 2)
    assert _conv_groups(jax.grad(slot_loss, (0, 1)), x, ds) == (4, 2)  # 2 forward, 2 input grads
    assert _conv_groups(jax.grad(copies_loss, (0, 1)), x, ks) == (0, 6)


def test_untied_deltas_give_nan_not_a_wrong_value():
    """A slot whose delta is not zero (its copy differs from the shared kernel) cannot be
    computed by the dense forward: that slot's output and gradients are NaN, the others exact."""
    x, w1, _ = _data()
    ds = jnp.zeros((S,) + w1.shape).at[1, 0, 0, 0, 0].set(0.5)
    y = slot_conv(x, w1, ds)
    ref = copies_conv(x, jnp.broadcast_to(w1, (S,) + w1.shape))
    assert bool(jnp.all(jnp.isnan(y[1])))
    _close(y[jnp.array([0, 2])], ref[jnp.array([0, 2])], TOL1)
    gx = jax.grad(lambda x: jnp.sum(jnp.sin(slot_conv(x, w1, ds))))(x)
    assert bool(jnp.all(jnp.isnan(gx[1]))) and bool(jnp.all(jnp.isfinite(gx[jnp.array([0, 2])])))


def test_slot_conv_rejects_bad_shapes_and_options():
    x, w1, _ = _data()
    with pytest.raises(ValueError, match="deltas"):
        slot_conv(x, w1, jnp.zeros(w1.shape))  # one delta for all slots
    with pytest.raises(ValueError, match="kernel_grad"):
        slot_conv(x, w1, jnp.zeros((S,) + w1.shape), kernel_grad="im2col")
