"""Slot convolutions: per-slot kernel gradients of ONE shared kernel, with a dense forward.

Why: the routed gradient proxies (:mod:`fbnas_jax.indicators.routed_grads`) need each
architecture's own weight gradient, so every slot of a routed op (``cap`` of them, run as
one ``vmap``) must own its kernel. With per-slot *copies* of the kernel, ``vmap`` turns the
forward and the input gradient into grouped convolutions (``cap`` groups), which XLA:CPU runs
far below its dense speed. But the copies are all equal where the proxies differentiate.

Here slot ``s`` convolves ``x[s]`` with ``w + d[s]``: ``w`` the shared kernel, ``d[s]`` a
per-slot delta that is ZERO at the primal point (the proxies differentiate w.r.t. ``d`` at 0).
:func:`slot_conv` takes all the slots at once, ``x`` ``(S, B, H, W, C)``, and then

* the forward is ``conv(x, w)``: ONE dense convolution of the ``S * B`` inputs;
* the input gradient is ``input_grad(g, w)``: dense too;
* the kernel gradient ``kernel_grad(x[s], g[s])`` is per slot: the gradient w.r.t. ``d[s]``
  (and, summed over the slots, w.r.t. ``w``);
* reverse over reverse (GraSP's Hessian-gradient product): the cotangent of a per-slot kernel
  gradient is a per-slot kernel (untied); it meets the untied family's convolution and input
  gradient (grouped convolutions) -- exact, and only there.

The functions are closed under reverse mode (as
:func:`fbnas_jax.models.conv.closed_bilinear_family`, which builds the untied family); no
forward mode. They take the slot axis explicitly (a ``vmap`` of them would batch the
``custom_vjp`` rules, whose unbatched kernel is what makes the forward dense).

Tiedness is checked, not assumed: the dense forward is exact only at ``d == 0``, so a
non-zero delta of a slot makes that slot's output (and input gradient) NaN -- one reduction
over the deltas, never a silently wrong value. ``tests/test_slot_conv.py`` compares values,
first and second derivatives with the per-slot-copies (grouped) formulation.

``kernel_grad`` picks the base family: ``"lax"`` (XLA's own transposed convolutions) or
``"patches"`` (:mod:`fbnas_jax.models.conv_patches`: the kernel gradient as one im2col GEMM).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from fbnas_jax.models import conv_patches
from fbnas_jax.models.conv import closed_bilinear_family


def _lax_kernel_grad(x, g, geom, k_shape):
    # XLA's own kernel gradient (autodiff of the convolution w.r.t. its kernel)
    _, vjp = jax.vjp(lambda k: conv_patches._conv(x, k, geom), jnp.zeros(k_shape, x.dtype))
    return vjp(g)[0]


#: one convolution's three bilinear maps ``(conv, input_grad, kernel_grad)``, ``geom =
#: (strides, ((lo, hi), (lo, hi)), rhs_dilation, precision)``, by ``kernel_grad`` option
_MAPS = {"lax": (conv_patches._conv, conv_patches._input_grad_impl, _lax_kernel_grad),
         "patches": (conv_patches._conv, conv_patches._input_grad_impl, conv_patches._kernel_grad_impl)}


def _flat(a):
    return a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])


def _untied_poison(y, d):
    """``y`` ``(S, B, ...)``, NaN in the slots whose delta ``d[s]`` is not zero (the dense value
    would be wrong there)."""
    bad = jnp.any(d.reshape(d.shape[0], -1) != 0, axis=1).reshape((-1,) + (1,) * (y.ndim - 1))
    return jnp.where(bad, jnp.asarray(jnp.nan, y.dtype), y)


def slot_families(conv1, input_grad1, kernel_grad1):
    """``(tied_conv, tied_input_grad, untied)`` over the slot axis from ONE convolution's maps.

    ``untied = (conv, input_grad, kernel_grad, _)``: each slot with its own kernel ``(S, ...)``
    (a ``vmap`` of the maps inside closed ``custom_vjp`` functions,
    :func:`fbnas_jax.models.conv.closed_bilinear_family`: grouped convolutions).
    ``tied_conv(x, w, d, geom, shapes)``: slot s convolves ``x[s]`` with ``w + d[s]``, evaluated
    as ONE dense convolution of ``(S * B, ...)`` with ``w`` (NaN in slots with ``d[s] != 0``);
    gradients w.r.t. ``w`` and ``d`` from the untied kernel gradient (summed over slots for
    ``w``). ``shapes = (x_shape, k_shape)`` (``x``: ``(S, B, H, W, C)``), static."""
    untied = closed_bilinear_family(
        lambda x, k, geom: jax.vmap(lambda x, k: conv1(x, k, geom))(x, k),
        lambda g, k, geom, x_shape: jax.vmap(lambda g, k: input_grad1(g, k, geom, x_shape[1:]))(g, k),
        lambda x, g, geom, k_shape: jax.vmap(lambda x, g: kernel_grad1(x, g, geom, k_shape[1:]))(x, g))
    _, _, kernel_grad, _ = untied

    def dense_conv(x, w, geom):
        y = conv1(_flat(x), w, geom)
        return y.reshape(x.shape[:2] + y.shape[1:])

    def dense_input_grad(g, w, geom, x_shape):
        return input_grad1(_flat(g), w, geom, (x_shape[0] * x_shape[1],) + tuple(x_shape[2:])).reshape(x_shape)

    @partial(jax.custom_vjp, nondiff_argnums=(3, 4))
    def tied_conv(x, w, d, geom, shapes):
        return _untied_poison(dense_conv(x, w, geom), d)

    @partial(jax.custom_vjp, nondiff_argnums=(3, 4))
    def tied_input_grad(g, w, d, geom, shapes):
        return _untied_poison(dense_input_grad(g, w, geom, shapes[0]), d)

    def slot_kernel_grads(x, g, geom, shapes):
        dk = kernel_grad(x, g, geom, (shapes[0][0],) + tuple(shapes[1]))  # (S, kh, kw, Ci, Co)
        return jnp.sum(dk, axis=0), dk

    def conv_bwd(geom, shapes, res, g):
        x, w, d = res
        return (tied_input_grad(g, w, d, geom, shapes),) + slot_kernel_grads(x, g, geom, shapes)

    # <cx, input_grad(g, K)> = <conv(cx, K), g> = <kernel_grad(cx, g), K>, with K[s] = w + d[s]
    def input_grad_bwd(geom, shapes, res, cx):
        g, w, d = res
        return (tied_conv(cx, w, d, geom, shapes),) + slot_kernel_grads(cx, g, geom, shapes)

    # Each forward rule calls its function itself, so that higher orders meet these rules again.
    # The residuals are the inputs, passed through an optimization barrier: forwarded as such,
    # JAX (0.10.2) hands the backward a wrong residual in reverse over reverse through a
    # lax.scan (a 5-D delta where the kernel belongs; "convolution requires lhs and rhs ndim
    # to be equal").
    def conv_fwd(x, w, d, geom, shapes):
        return tied_conv(x, w, d, geom, shapes), jax.lax.optimization_barrier((x, w, d))

    def input_grad_fwd(g, w, d, geom, shapes):
        return tied_input_grad(g, w, d, geom, shapes), jax.lax.optimization_barrier((g, w, d))

    tied_conv.defvjp(conv_fwd, conv_bwd)
    tied_input_grad.defvjp(input_grad_fwd, input_grad_bwd)
    return tied_conv, tied_input_grad, untied


_FAMILIES = {name: slot_families(*maps) for name, maps in _MAPS.items()}


def _geom(k_shape, stride: int, pad: int | None):
    pad = k_shape[0] // 2 if pad is None else pad
    return ((stride, stride), ((pad, pad), (pad, pad)), (1, 1), None)


def slot_conv(x, w, d, stride: int = 1, pad: int | None = None, kernel_grad: str = "lax"):
    """Bias-free NHWC/HWIO convolution of each slot's ``x[s]`` ``(S, B, H, W, C)`` with the
    kernel ``w + d[s]`` (``w`` shared, ``d`` ``(S, kh, kw, C, O)`` ZERO), symmetric padding
    ``pad`` (default ``kh // 2``), as :func:`fbnas_jax.models.layers.conv2d`: the forward and
    the input gradient are one dense convolution with ``w``, the gradient w.r.t. ``d`` is per
    slot. A slot with a non-zero delta returns NaN. ``kernel_grad``: ``"lax"`` or ``"patches"``."""
    conv_patches.check_kernel_grad(kernel_grad)  # the options of layers.conv2d
    if x.ndim != 5 or d.shape != (x.shape[0],) + w.shape:
        raise ValueError(f"slot_conv: x must be (S, B, H, W, C) and the deltas (S,) + {w.shape}; "
                         f"got {x.shape}, {d.shape}")
    return _FAMILIES[kernel_grad][0](x, w, d.astype(w.dtype), _geom(w.shape, stride, pad),
                                     (tuple(x.shape), tuple(w.shape)))


def copies_conv(x, k, stride: int = 1, pad: int | None = None):
    """The reference formulation: each slot's ``x[s]`` convolved with its own kernel copy
    ``k[s]`` (``vmap``: grouped convolutions in the forward and both gradients)."""
    return jax.vmap(lambda x, k: conv_patches._conv(x, k, _geom(k.shape, stride, pad)))(x, k)
