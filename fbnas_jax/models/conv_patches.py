"""Convolutions whose kernel gradient is one matrix product over (batch, H, W) (im2col).

Why (a GPU candidate, issue 14): on a GPU the engine ``jax.vmap``-s a per-architecture
gradient over a chunk of architectures while the supernet's weights are shared, so each
architecture gets its own kernel gradient. JAX's batching rule turns that kernel gradient
(a convolution of the batched input with the batched output gradient) into one convolution
with ``batch_group_count``/feature groups over the architectures, a form cuDNN may run
slowly. Here the kernel gradient is ``patches(x)^T @ g``: the ``kh*kw`` shifted, strided
slices of the padded input stacked along channels, contracted with ``g`` over (batch, H, W)
by ``dot_general``; under ``vmap`` it becomes ONE batched GEMM (the architectures as the
batch dimension). The forward and the input gradient stay XLA's own convolutions (their
kernel is the shared, unbatched weight, so ``vmap`` folds the architectures into the batch).

The three bilinear maps (the convolution, its input gradient, its kernel gradient) are
``custom_vjp`` functions whose gradients are again these three maps in the layer's geometry
(``<g, conv(x, k)> = <input_grad(g, k), x> = <kernel_grad(x, g), k>``, as in
:mod:`fbnas_jax.models.conv`): the family is closed under reverse-mode differentiation, so
GraSP's reverse-over-reverse Hessian-gradient product also takes its kernel gradients as
GEMMs. There is no forward mode (``jvp``). The patches are exact copies (slices, not an
identity-kernel convolution, which TF32 would round on a GPU); the GEMM uses JAX's default
matmul precision, as XLA's kernel-gradient convolution does.

Cost: the patches are ``kh*kw`` copies of the input (XLA's memory estimate of a vmapped snip
chunk at C=8, N=1, batch 64: 1976 MB instead of 1030). On this 2-core CPU, vmapped over 20
architectures in chunks of 10, snip ran 1.93 vs 1.17 archs/s and grad_norm 2.05 vs 1.28
(``benchmarks/results/gpu_ab/gpu_ab_cpu_sanity_c8.md``, 2026-11-27, load ~2.5); a CPU's default
per-architecture path (``strategy="switch"``) uses :mod:`fbnas_jax.models.conv` instead. It is an
option of the networks (``kernel_grad="patches"``, NB201 only), off by default, for the all-ops
(``select``) path; ``benchmarks/gpu_ab.py`` measures it on a GPU.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from fbnas_jax.models.conv import _is_nhwc, closed_bilinear_family

#: how a network's convolutions take their kernel gradient: "lax" (autodiff; the default)
#: or "patches" (this module)
KERNEL_GRADS = ("lax", "patches")

_DN = ("NHWC", "HWIO", "NHWC")


def check_kernel_grad(kernel_grad: str) -> str:
    if kernel_grad not in KERNEL_GRADS:
        raise ValueError(f"kernel_grad must be one of {KERNEL_GRADS}, got {kernel_grad!r}")
    return kernel_grad


def _conv(x, kernel, geom):
    strides, padding, rhs_dilation, precision = geom
    return lax.conv_general_dilated(x, kernel, strides, padding, (1, 1), rhs_dilation, dimension_numbers=_DN,
                                    precision=precision)


def patches(x, win, geom, out_sp):
    """``(B, Ho, Wo, kh*kw*C)``: the receptive fields of every output position, ordered
    (kernel row, kernel column, channel) like an HWIO kernel reshaped to ``(kh*kw*C, O)``."""
    strides, padding, rhs_dilation, _ = geom
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    cols = []
    for i in range(win[0]):
        for j in range(win[1]):
            r0, c0 = i * rhs_dilation[0], j * rhs_dilation[1]
            limit = (xp.shape[0], r0 + (out_sp[0] - 1) * strides[0] + 1, c0 + (out_sp[1] - 1) * strides[1] + 1,
                     xp.shape[3])
            cols.append(lax.slice(xp, (0, r0, c0, 0), limit, (1, strides[0], strides[1], 1)))
    return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


def _input_grad_impl(g, kernel, geom, x_shape):
    # XLA's own transposed convolution (the kernel is the shared weight: unbatched under vmap)
    _, vjp = jax.vjp(lambda x: _conv(x, kernel, geom), jnp.zeros(x_shape, g.dtype))
    return vjp(g)[0]


def _kernel_grad_impl(x, g, geom, k_shape):
    p = patches(x, k_shape[0:2], geom, g.shape[1:3])
    dk = lax.dot_general(p, g, (((0, 1, 2), (0, 1, 2)), ((), ())), precision=geom[3])
    return dk.reshape(k_shape).astype(x.dtype)


#: NHWC/HWIO convolution, ``geom = (strides, ((lo, hi), (lo, hi)), rhs_dilation, precision)``
#: (non-negative padding, no input dilation, no groups), with the patches kernel gradient
patches_conv = closed_bilinear_family(_conv, _input_grad_impl, _kernel_grad_impl)[0]


def patches_grad_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                      dimension_numbers=None, feature_group_count=1, precision=None, **kw):
    """Drop-in for ``lax.conv_general_dilated`` (``flax.linen.Conv(conv_general_dilated=...)``):
    NHWC/HWIO ungrouped 2-D convolutions without input dilation and with non-negative padding
    go through :func:`patches_conv`; anything else falls back to ``lax``."""
    if isinstance(padding, str) and lhs.ndim == 4:
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[0:2], window_strides, padding)
    ok = (_is_nhwc(dimension_numbers) and lhs.ndim == 4 and feature_group_count == 1 and lhs.dtype == rhs.dtype
          and kw.get("batch_group_count", 1) == 1 and kw.get("preferred_element_type") is None
          and tuple(lhs_dilation or (1, 1)) == (1, 1) and not isinstance(padding, str)
          and all(int(p) >= 0 for pair in padding for p in pair))
    if not ok:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, precision=precision, **kw)
    geom = (tuple(int(s) for s in window_strides), tuple((int(lo), int(hi)) for lo, hi in padding),
            tuple(int(d) for d in (rhs_dilation or (1, 1))), precision)
    return patches_conv(lhs, rhs, geom)
