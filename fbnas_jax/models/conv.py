"""Convolutions whose gradients are canonical convolutions (XLA:CPU's fast path inside loops).

Why: XLA:CPU runs a convolution fast (Eigen) only in the canonical form ``NHWC x HWIO ->
NHWC``. Autodiff emits the kernel gradient of a convolution in another form
(``f01b_i01o->01bf``); at the top level of a program XLA rewrites it into the canonical
one, but inside a ``lax.switch`` branch or a ``while`` loop (``lax.map``, ``lax.scan``) it
does not, and that gradient runs 5-12x slower than the convolution itself (jax 0.10.2; a
(64, 32, 32, 8) batch, 3x3 kernel: 160 ms instead of 14 ms). Per-architecture execution
(``strategy="switch"``, under ``lax.map``) and TE-NAS's per-sample gradients (a ``lax.map``
of VJPs) live exactly there.

:func:`canonical_conv` is ``lax.conv_general_dilated`` restricted to NHWC/HWIO, ungrouped,
with an explicit ``custom_vjp``: both gradients are :func:`canonical_conv` calls on
transposed operands (the same padding/dilation algebra as JAX's own transpose rules), each
wrapped in a ``custom_vjp`` of its own whose gradients are again the convolution and its two
gradients in the layer's geometry. The family is closed under reverse-mode differentiation,
so second-order reverse mode (GraSP's Hessian-gradient product) stays canonical and never
convolves with an image-sized window. Being a ``custom_vjp`` it has no forward mode
(``jvp``): networks use it only for ``strategy="switch"`` and every indicator is reverse mode.
The kernel gradient of a convolution with a large output (>= 256 pixels) is summed over
blocks of 8 samples (:func:`kernel_grad_groups`: XLA:CPU's convolution is 2-3x faster on
them). A 1x1, stride-1, unpadded convolution (NB201's ``nor_conv_1x1`` and shortcuts) is a matrix
product over channels: its gradients are two ``dot_general`` calls instead (no transposed
copies; measured 3-4x faster than the transposed-conv form inside ``lax.map``).

:func:`canonical_grad_conv` is the drop-in for ``flax.linen.Conv(conv_general_dilated=...)``.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")


def _dilate(sizes, dilation):
    return tuple(0 if s == 0 else 1 + d * (s - 1) for s, d in zip(sizes, dilation))


def _lhs_grad_padding(in_sp, win, strides, out_sp, padding, lhs_dil, rhs_dil):
    lhs_d, rhs_d, out_d = _dilate(in_sp, lhs_dil), _dilate(win, rhs_dil), _dilate(out_sp, strides)
    before = tuple(r - lo - 1 for r, (lo, _) in zip(rhs_d, padding))
    after = tuple(a + r - 1 - o - b for a, r, o, b in zip(lhs_d, rhs_d, out_d, before))
    return tuple(zip(before, after))


def _rhs_grad_padding(in_sp, win, strides, out_sp, padding, lhs_dil, rhs_dil):
    lhs_d, rhs_d, out_d = _dilate(in_sp, lhs_dil), _dilate(win, rhs_dil), _dilate(out_sp, strides)
    lows = tuple(lo for lo, _ in padding)
    highs = tuple(o - a + r - lo - 1 for o, a, r, lo in zip(out_d, lhs_d, rhs_d, lows))
    return tuple(zip(lows, highs))


def canonical_conv(x, kernel, strides, padding, lhs_dilation=(1, 1), rhs_dilation=(1, 1)):
    """``lax.conv_general_dilated`` in NHWC/HWIO; ``padding`` is ((lo, hi), (lo, hi))."""
    return _conv(x, kernel, (strides, padding, lhs_dilation, rhs_dilation))


def _conv_impl(x, kernel, geom):
    strides, padding, lhs_dilation, rhs_dilation = geom
    return lax.conv_general_dilated(x, kernel, strides, padding, lhs_dilation, rhs_dilation, dimension_numbers=_DN)


def _is_pointwise(win, strides, padding, lhs_dilation, rhs_dilation) -> bool:
    return (tuple(win) == (1, 1) and tuple(strides) == (1, 1) and tuple(lhs_dilation) == (1, 1)
            and tuple(rhs_dilation) == (1, 1) and all(p == (0, 0) for p in padding))


def _input_grad_impl(g, kernel, geom, x_shape):
    strides, padding, lhs_dilation, rhs_dilation = geom
    in_sp = x_shape[1:3]
    if _is_pointwise(kernel.shape[0:2], *geom):
        # A 1x1 convolution is a matrix product over channels: its gradients are two plain
        # dots (no transposed copies of x and g; 3-4x faster than the canonical-conv form
        # inside loops on XLA:CPU).
        return lax.dot_general(g, kernel[0, 0], (((3,), (1,)), ((), ())))
    win, out_sp = kernel.shape[0:2], g.shape[1:3]
    # input gradient: g convolved with the flipped kernel (in/out channels swapped)
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    pad_x = _lhs_grad_padding(in_sp, win, strides, out_sp, padding, lhs_dilation, rhs_dilation)
    return canonical_conv(g, flipped, lhs_dilation, pad_x, strides, rhs_dilation)


def _kernel_grad_impl(x, g, geom, k_shape):
    strides, padding, lhs_dilation, rhs_dilation = geom
    win = k_shape[0:2]
    if _is_pointwise(win, *geom):
        return lax.dot_general(x, g, (((0, 1, 2), (0, 1, 2)), ((), ())))[None, None]
    in_sp, out_sp = x.shape[1:3], g.shape[1:3]
    # kernel gradient: channels as batch, samples as features (canonical again)
    pad_k = _rhs_grad_padding(in_sp, win, strides, out_sp, padding, lhs_dilation, rhs_dilation)
    groups = kernel_grad_groups(x.shape[0], out_sp)
    n = x.shape[0] // groups
    # the samples split into `groups` blocks (one transposed copy of x and of g, block-major):
    # a sum of per-block convolutions, each contracting n*H*W instead of B*H*W terms
    xs = x.reshape(groups, n, *x.shape[1:]).transpose(0, 4, 2, 3, 1)   # (S, Cin, H, W, n)
    gs = g.reshape(groups, n, *g.shape[1:]).transpose(0, 2, 3, 1, 4)   # (S, Ho, Wo, n, Cout)
    dk = canonical_conv(xs[0], gs[0], rhs_dilation, pad_k, lhs_dilation, strides)
    for s in range(1, groups):
        dk = dk + canonical_conv(xs[s], gs[s], rhs_dilation, pad_k, lhs_dilation, strides)
    return dk.transpose(1, 2, 0, 3)


#: Kernel gradients of convolutions whose output has at least this many pixels are computed
#: per block of samples (:func:`kernel_grad_groups`); 0 disables the split.
KGRAD_SPLIT_MIN_PIXELS = 256


def kernel_grad_groups(batch: int, out_sp) -> int:
    """How many blocks of samples the kernel gradient is summed over (1: one convolution).

    Why: the kernel gradient as a canonical convolution is a GEMM of shape (Cin*kh*kw) x Cout
    contracting B*H*W terms, at which XLA:CPU's (Eigen's) convolution runs 3-4x slower than the
    forward; per block of 8 samples it runs 2-3x faster. Measured inside ``lax.map`` +
    ``lax.switch``, one thread, batch 64, 3x3 (jax 0.10.2, this 2-core CPU under load 2.2,
    2026-11-27; ms per call, best of two passes of 7): 32x32x16 12.7 -> 4.6 (PyTorch's
    ``conv2d_weight`` 3.7), 16x16x32 7.6 -> 3.7, 32x32x8 3.5 -> 2.3, 16x16x16 1.45 -> 1.25,
    8x8x64 3.2 -> 3.4 (no gain: not split). 8 blocks beat 4 and 16, an unrolled sum beats a
    ``lax.scan`` over the blocks (6.9), and an im2col GEMM (9 shifted copies of the input
    stacked) is slower than one convolution (the copies alone cost 7-8 ms at 32x32x16)."""
    if not KGRAD_SPLIT_MIN_PIXELS or out_sp[0] * out_sp[1] < KGRAD_SPLIT_MIN_PIXELS:
        return 1
    for groups in (8, 4, 2):
        if batch % groups == 0 and batch // groups >= 4:
            return groups
    return 1


# The input and kernel gradients of y = conv(x, k) are bilinear too, and their gradients are
# again these three maps in the ORIGINAL geometry (<g, conv(x, k)> = <input_grad(g, k), x> =
# <kernel_grad(x, g), k>). Autodiff of their canonical-conv forms instead would transpose the
# kernel gradient into a convolution whose window is the whole image (a 32x32 "kernel" made
# of g): ~100x the FLOPs of the convolution, the bulk of GraSP's Hessian-gradient product.
def closed_bilinear_family(conv_impl, input_grad_impl, kernel_grad_impl):
    """``(conv, input_grad, kernel_grad, conv_bwd)``: a convolution's three bilinear maps as
    ``custom_vjp`` functions whose gradients are again these maps, so the family is closed
    under reverse-mode differentiation (no forward mode).

    ``conv_impl(x, k, geom)``, ``input_grad_impl(g, k, geom, x_shape)`` and
    ``kernel_grad_impl(x, g, geom, k_shape)`` compute them; ``geom`` is any hashable
    description of the geometry (strides, padding, ...), passed through unchanged.
    ``conv_bwd(geom, (x, k), g)`` is the convolution's backward (for wrappers with their own
    ``custom_vjp``, e.g. a convolution of ``relu(x)``)."""

    @partial(jax.custom_vjp, nondiff_argnums=(2,))
    def conv(x, k, geom):
        return conv_impl(x, k, geom)

    @partial(jax.custom_vjp, nondiff_argnums=(2, 3))
    def input_grad(g, k, geom, x_shape):
        return input_grad_impl(g, k, geom, x_shape)

    @partial(jax.custom_vjp, nondiff_argnums=(2, 3))
    def kernel_grad(x, g, geom, k_shape):
        return kernel_grad_impl(x, g, geom, k_shape)

    def conv_bwd(geom, res, g):
        x, k = res
        return input_grad(g, k, geom, tuple(x.shape)), kernel_grad(x, g, geom, tuple(k.shape))

    def input_grad_bwd(geom, x_shape, res, cx):
        g, k = res
        return conv(cx, k, geom), kernel_grad(cx, g, geom, tuple(k.shape))

    def kernel_grad_bwd(geom, k_shape, res, ck):
        x, g = res
        return input_grad(g, ck, geom, tuple(x.shape)), conv(x, ck, geom)

    # conv's forward rule calls conv itself: a higher-order gradient differentiates this rule's
    # output too, and must meet conv's rule there, not lax's (whose transpose of a kernel gradient
    # convolves with an image-sized window)
    conv.defvjp(lambda x, k, geom: (conv(x, k, geom), (x, k)), conv_bwd)
    input_grad.defvjp(lambda g, k, geom, x_shape: (input_grad_impl(g, k, geom, x_shape), (g, k)), input_grad_bwd)
    kernel_grad.defvjp(lambda x, g, geom, k_shape: (kernel_grad_impl(x, g, geom, k_shape), (x, g)), kernel_grad_bwd)
    return conv, input_grad, kernel_grad, conv_bwd


_conv, _input_grad, _kernel_grad, _conv_bwd = closed_bilinear_family(_conv_impl, _input_grad_impl, _kernel_grad_impl)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def canonical_relu_conv(x, kernel, strides, padding, lhs_dilation=(1, 1), rhs_dilation=(1, 1)):
    """:func:`canonical_conv` of ``relu(x)``, saving only ``x`` for the backward.

    Why: NB201's ReLU-Conv-BN op otherwise keeps ``relu(x)`` and the ReLU's mask as two
    residuals of every conv branch of the supernet's ``lax.switch``; here the backward
    recomputes ``relu(x)`` (one cheap elementwise pass, fused) from the branch input.
    Same values as ``canonical_conv(relu(x), ...)``; second order works (plain JAX bwd)."""
    return canonical_conv(jax.nn.relu(x), kernel, strides, padding, lhs_dilation, rhs_dilation)


def _relu_fwd(x, kernel, strides, padding, lhs_dilation, rhs_dilation):
    return canonical_relu_conv(x, kernel, strides, padding, lhs_dilation, rhs_dilation), (x, kernel)


def _relu_bwd(strides, padding, lhs_dilation, rhs_dilation, res, g):
    x, kernel = res
    dr, dk = _conv_bwd((strides, padding, lhs_dilation, rhs_dilation), (jax.nn.relu(x), kernel), g)
    return jnp.where(x > 0, dr, 0.0).astype(dr.dtype), dk


canonical_relu_conv.defvjp(_relu_fwd, _relu_bwd)


def canonical_grad_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                        dimension_numbers=None, feature_group_count=1, precision=None, *, relu_input=False, **kw):
    """Drop-in for ``lax.conv_general_dilated``: NHWC/HWIO ungrouped 2-D convolutions go
    through :func:`canonical_conv`; anything else falls back to ``lax``. ``relu_input``: the
    convolution of ``relu(lhs)`` (:func:`canonical_relu_conv`; bind it with ``functools.partial``)."""
    canonical = (_is_nhwc(dimension_numbers) and lhs.ndim == 4 and feature_group_count == 1
                 and lhs.dtype == rhs.dtype and kw.get("batch_group_count", 1) == 1)
    if relu_input and not canonical:
        lhs = jax.nn.relu(lhs)
    if canonical:
        if isinstance(padding, str):
            padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[0:2], window_strides, padding)
        pads = tuple((int(lo), int(hi)) for lo, hi in padding)
        conv = canonical_relu_conv if relu_input else canonical_conv
        return conv(lhs, rhs, tuple(window_strides), pads, tuple(lhs_dilation or (1, 1)), tuple(rhs_dilation or (1, 1)))
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, precision=precision, **kw)


def _is_nhwc(dn) -> bool:
    if dn is None:
        return False
    if isinstance(dn, lax.ConvDimensionNumbers):
        return (tuple(dn.lhs_spec), tuple(dn.rhs_spec), tuple(dn.out_spec)) == ((0, 3, 1, 2), (3, 2, 0, 1),
                                                                                (0, 3, 1, 2))
    return tuple(dn) == _DN
