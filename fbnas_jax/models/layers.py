"""Building blocks of the networks: a maskable BatchNorm, ReLU, and the cell operations.

Why our own BatchNorm rather than ``flax.linen.BatchNorm``:

* in the weight-sharing supernet every candidate op is computed (so the forward can be
  vmapped over architecture encodings) but only the *chosen* op may update its running
  statistics: ``active`` masks the update -- a scalar (the whole op), or a per-channel mask
  (NB101's supernet, whose vertices use a leading slice of their channels);
* Monte-Carlo BatchNorm (the FBN-NAS uncertainty indicator) normalises an evaluation batch
  with the statistics of a *different* training mini-batch. ``stat_weights`` (one weight per
  sample) lets one forward of ``concat([train_batch, eval_batch])`` take its statistics from
  the training part only.

Variable names follow flax (``params/scale``, ``params/bias``, ``batch_stats/mean``,
``batch_stats/var``). Running variance is the unbiased estimate, as in PyTorch (which the
benchmark used), and ``momentum`` is flax-style: ``new = momentum * old + (1 - momentum) * batch``.

Mixed precision: convolutions take a compute ``dtype`` (e.g. bfloat16, see :func:`conv2d`);
BatchNorm always computes its statistics and normalisation in float32 and returns the input's
dtype; parameters stay float32.

Conditional execution: the supernet's choice between candidate ops lives in
:mod:`fbnas_jax.models.execution` (``choose_op``: all ops masked, or ``lax.switch``);
convolutions built with ``canonical_grads=True`` keep XLA:CPU's fast gradient path inside
such branches and loops (:mod:`fbnas_jax.models.conv`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fbnas_jax.models.conv import canonical_grad_conv
from fbnas_jax.models.conv_patches import check_kernel_grad, patches_grad_conv
from fbnas_jax.models.execution import STRATEGIES, check_strategy, choose_op, with_strategy  # noqa: F401


@dataclasses.dataclass(frozen=True)
class ForwardMode:
    """How a forward pass treats BatchNorm and what it records.

    train: normalise with batch statistics (and update running statistics when the
        ``batch_stats`` collection is mutable); otherwise use running statistics.
    stat_weights: optional (batch,) per-sample weights for the batch statistics.
    stat_count: optional static int n: batch statistics from the first n samples only (the
        same values as ``stat_weights`` = n ones then zeros, without the weighted passes over
        the other samples: Monte-Carlo BatchNorm's ``concat([train_batch, eval_batch])``).
    relu_kernel: accumulate the NASWOT Hamming kernel of ReLU codes into the
        ``relu_kernel`` collection (must be mutable).
    """

    train: bool = False
    stat_weights: Any = None
    stat_count: int | None = None
    relu_kernel: bool = False

    def __post_init__(self):
        if self.stat_weights is not None and self.stat_count is not None:
            raise ValueError("ForwardMode: give stat_weights or stat_count, not both")


def kaiming_normal():
    # Frozen random convolutions: He-normal (fan-in) keeps activations O(1) before BN.
    return nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def conv2d(features: int, kernel: int, stride: int = 1, *, name: str, canonical_grads: bool = False,
           dtype: Any = None, pad: int | None = None, relu_input: bool = False, kernel_grad: str = "lax") -> nn.Conv:
    """Bias-free ``kernel x kernel`` convolution, He-normal init, symmetric padding (default
    ``kernel // 2``). ``canonical_grads``: gradients as canonical convolutions (fast on
    XLA:CPU inside ``lax.switch``/loops; no forward-mode autodiff). ``dtype``: compute dtype.
    ``relu_input`` (only with ``canonical_grads``): the module convolves ``relu(input)``, the
    backward recomputing the ReLU (:func:`fbnas_jax.models.conv.canonical_relu_conv`).
    ``kernel_grad="patches"`` (without ``canonical_grads``, which takes precedence): the kernel
    gradient as one im2col GEMM (:mod:`fbnas_jax.models.conv_patches`; a GPU candidate)."""
    pad = kernel // 2 if pad is None else pad
    check_kernel_grad(kernel_grad)
    if relu_input and not canonical_grads:
        raise ValueError("conv2d: relu_input needs canonical_grads=True")
    conv = None
    if canonical_grads:
        conv = functools.partial(canonical_grad_conv, relu_input=True) if relu_input else canonical_grad_conv
    elif kernel_grad == "patches":
        conv = patches_grad_conv
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   use_bias=False, kernel_init=kaiming_normal(), name=name, dtype=dtype,
                   conv_general_dilated=conv)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x, scale, bias, epsilon: float):
    """``(y, mean, biased var)`` of train-mode BatchNorm over all but the last axis (float32),
    with a hand-written backward: autodiff of the mean/variance graph takes ~5 passes over
    the activations, the closed form 2 reductions and one elementwise pass (the BN backward
    was the second-largest cost of the zero-cost proxies' backward on XLA:CPU). Reverse mode
    only (a ``custom_vjp``); the backward is plain JAX, so second order (GraSP) works."""
    return _bn_fwd(x, scale, bias, epsilon)[0]


def _bn_fwd(x, scale, bias, epsilon):
    mean, var, _ = _batch_moments(x, None)
    rstd = jax.lax.rsqrt(var + epsilon)
    xhat = (x - mean) * rstd
    return (xhat * scale + bias, mean, var), (xhat, rstd, scale)


def _bn_bwd(epsilon, res, cts):
    xhat, rstd, scale = res
    dy, dmean, dvar = cts
    axes = tuple(range(xhat.ndim - 1))
    m = xhat.size // xhat.shape[-1]
    dbias = jnp.sum(dy, axis=axes)
    dscale = jnp.sum(dy * xhat, axis=axes)
    # d/dx of y: the textbook closed form; of the returned mean and variance: 1/m and
    # 2 (x - mean) / m = 2 xhat / (rstd m) (zero cotangents when only y is used).
    dx = (scale * rstd) * (dy - (dbias + xhat * dscale) / m) + (dmean + 2.0 * dvar * xhat / rstd) / m
    return dx, dscale, dbias


batch_norm_train.defvjp(_bn_fwd, _bn_bwd)


class BatchNorm(nn.Module):
    momentum: float = 0.9
    epsilon: float = 1e-5
    #: train mode without ``stat_weights`` through :func:`batch_norm_train` (closed-form
    #: backward, no forward-mode autodiff): set by networks executing per architecture
    #: (``strategy="switch"``), as their canonical-gradient convolutions
    fast_grads: bool = False

    @nn.compact
    def __call__(self, x, mode: ForwardMode, active=None):
        features = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        out_dtype = x.dtype
        x = x.astype(jnp.float32)
        y = None
        if mode.train:
            if self.fast_grads and mode.stat_weights is None and mode.stat_count is None:
                y, mean, var = batch_norm_train(x, scale, bias, float(self.epsilon))
                count = jnp.asarray(x.size / x.shape[-1], jnp.float32)
            else:
                stats_of = x if mode.stat_count is None else x[:mode.stat_count]
                mean, var, count = _batch_moments(stats_of, mode.stat_weights)
            if self.is_mutable_collection("batch_stats") and not self.is_initializing():
                unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
                new_mean = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
                new_var = self.momentum * ra_var.value + (1.0 - self.momentum) * unbiased
                if active is not None:
                    new_mean = jnp.where(active, new_mean, ra_mean.value)
                    new_var = jnp.where(active, new_var, ra_var.value)
                ra_mean.value, ra_var.value = new_mean, new_var
        else:
            mean, var = ra_mean.value, ra_var.value
        if y is None:
            y = (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
        return y.astype(out_dtype)


def _batch_moments(x, weights):
    """Per-channel mean and biased variance over all but the last axis.

    With ``weights`` (shape (batch,)), samples are weighted; ``count`` is the effective
    number of elements used for the unbiased running-variance correction.
    """
    axes = tuple(range(x.ndim - 1))
    spatial = 1
    for d in x.shape[1:-1]:
        spatial *= d
    if weights is None:
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - mean), axis=axes)
        return mean, var, jnp.asarray(x.size / x.shape[-1], jnp.float32)
    w = weights.astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
    total = jnp.sum(w) * spatial
    mean = jnp.sum(w * x, axis=axes) / total
    var = jnp.sum(w * jnp.square(x - mean), axis=axes) / total
    return mean, var, total


def relu_code_kernel(x, channel_mask=None):
    """NASWOT's Hamming-similarity kernel of binary ReLU codes, shape (batch, batch).

    K[i, j] = number of units where samples i and j are on the same side of zero; with a
    ``channel_mask`` (0/1 over the last axis), only units of masked-in channels count.

    One matmul instead of NASWOT's ``c c^T + (1 - c)(1 - c)^T``: with ``on = c * m`` (m the
    0/1 unit mask, M = sum of m, a = row sums of ``on``), ``K = M - a_i - a_j + 2 on on^T``.
    Every term is an integer count < 2**24 (units per sample), so float32 gives exactly
    the two-matmul values (``tests/test_relu_kernel.py``) at half the FLOPs (the kernels were
    ~1/3 of the expressivity indicator's CPU time, ``benchmarks/results/cpi_cpu/cpi15_ab.md``).
    """
    if channel_mask is None:
        on = (x.reshape(x.shape[0], -1) > 0).astype(jnp.float32)
        units = jnp.float32(on.shape[1])
    else:
        m = jnp.asarray(channel_mask, jnp.float32)
        on = ((x > 0).astype(jnp.float32) * m).reshape(x.shape[0], -1)
        units = jnp.sum(jnp.broadcast_to(m, x.shape[1:]))
    a = jnp.sum(on, axis=1)
    return (units - a[:, None] - a[None, :]) + 2.0 * (on @ on.T)


def relu_code_kernel_reference(x, channel_mask=None):
    """NASWOT's own two-matmul form ``c c^T + (1 - c)(1 - c)^T`` (tests: the reference of
    :func:`relu_code_kernel`)."""
    if channel_mask is None:
        c = (x.reshape(x.shape[0], -1) > 0).astype(jnp.float32)
        return c @ c.T + (1.0 - c) @ (1.0 - c).T
    m = jnp.asarray(channel_mask, jnp.float32)
    c = (x > 0).astype(jnp.float32)
    on, off = (c * m).reshape(x.shape[0], -1), ((1.0 - c) * m).reshape(x.shape[0], -1)
    return on @ on.T + off @ off.T


def relu_kernel_total(collection) -> jax.Array:
    """The NASWOT kernel ``(B, B)`` of a ``relu_kernel`` collection: the sum of every sown
    leaf, each summed over its leading axes (a ReLU inside ``nn.scan`` -- the DARTS supernet's
    edges -- sows one ``(B, B)`` kernel per scan step, stacked)."""
    leaves = jax.tree.leaves(collection)
    return sum(jnp.sum(k.reshape((-1,) + k.shape[-2:]), axis=0) if jnp.ndim(k) > 2 else k for k in leaves)


class ReLU(nn.Module):
    """ReLU that optionally records NASWOT codes (masked by ``active``: a scalar, or a
    per-channel mask over the last axis)."""

    @nn.compact
    def __call__(self, x, mode: ForwardMode, active=None):
        if mode.relu_kernel:
            if active is not None and jnp.ndim(active) > 0:
                k = relu_code_kernel(x, active)
            else:
                k = relu_code_kernel(x)
                if active is not None:
                    k = k * active.astype(k.dtype)
            self.sow("relu_kernel", "K", k, init_fn=lambda: 0.0, reduce_fn=lambda a, b: a + b)
        return nn.relu(x)


class ReLUConvBN(nn.Module):
    features: int
    kernel: int
    stride: int = 1
    bn_momentum: float = 0.9
    canonical_grads: bool = False
    dtype: Any = None
    kernel_grad: str = "lax"  # see conv2d

    @nn.compact
    def __call__(self, x, mode: ForwardMode, active=None):
        r = ReLU(name="relu")(x, mode, active)  # records NASWOT codes when asked
        fold = self.canonical_grads  # ReLU folded into the conv's custom_vjp: fewer switch residuals
        x = conv2d(self.features, self.kernel, self.stride, name="conv", canonical_grads=self.canonical_grads,
                   dtype=self.dtype, relu_input=fold, kernel_grad=self.kernel_grad)(x if fold else r)
        return BatchNorm(self.bn_momentum, fast_grads=self.canonical_grads, name="bn")(x, mode, active)


class ConvBNReLU(nn.Module):
    """NAS-Bench-101's ``conv_bn_relu``: Conv (no bias, 'same') -> BN -> ReLU (post-activation)."""

    features: int
    kernel: int
    bn_momentum: float = 0.9
    canonical_grads: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x, mode: ForwardMode, active=None):
        x = conv2d(self.features, self.kernel, name="conv", canonical_grads=self.canonical_grads, dtype=self.dtype)(x)
        x = BatchNorm(self.bn_momentum, name="bn")(x, mode, active)
        return ReLU(name="relu")(x, mode, active)


def avg_pool_3x3(x, shifted_sums: bool = False):
    """NB201's ``AvgPool2d(3, stride=1, padding=1, count_include_pad=False)``.

    The per-position divisor (how many of the 9 window cells lie inside the image) is a
    NumPy constant: asking XLA for it (``flax.linen.avg_pool(count_include_pad=False)``
    pools a tensor of ones) makes XLA constant-fold a full-size reduce-window at compile
    time, which costs seconds per pooling op on CPU.

    ``shifted_sums`` (networks executing per architecture, ``strategy="switch"``): the window
    sum as separable shifted-slice sums instead of ``lax.reduce_window``, whose backward
    XLA:CPU runs as a slow generic reduce-window inside the per-architecture loops (snip
    +7 %, ntk_cond +9 %, measured). Equal to float rounding, not bitwise: XLA fuses the sums
    into their consumers, so the all-ops path keeps ``reduce_window`` (and with it the
    bit-identity of one-hot op weights and encodings).
    """
    h, w = x.shape[-3], x.shape[-2]
    rows = np.minimum(np.arange(h) + 1, h - 1) - np.maximum(np.arange(h) - 1, 0) + 1
    cols = np.minimum(np.arange(w) + 1, w - 1) - np.maximum(np.arange(w) - 1, 0) + 1
    count = (rows[:, None] * cols[None, :]).astype(np.float32)[:, :, None]
    if shifted_sums:
        summed = _box3_sum(_box3_sum(x, x.ndim - 3), x.ndim - 2)
    else:
        window = (1,) * (x.ndim - 3) + (3, 3, 1)
        padding = ((0, 0),) * (x.ndim - 3) + ((1, 1), (1, 1), (0, 0))
        summed = jax.lax.reduce_window(x, np.zeros((), x.dtype)[()], jax.lax.add, window, (1,) * x.ndim, padding)
    return summed / count.astype(x.dtype)


def _box3_sum(x, axis: int):
    """``y[i] = x[i-1] + x[i] + x[i+1]`` along ``axis`` (zero outside): three shifted slices
    of the padded input, whose gradients are pads and slices XLA fuses into elementwise loops."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 1)
    xp = jnp.pad(x, pad)
    n = x.shape[axis]
    return (jax.lax.slice_in_dim(xp, 0, n, axis=axis) + jax.lax.slice_in_dim(xp, 1, n + 1, axis=axis)
            + jax.lax.slice_in_dim(xp, 2, n + 2, axis=axis))


def avg_pool_2x2(x):
    """``AvgPool2d(2, stride=2)`` on NHWC (even H, W) as a reshape-mean (the same values as
    ``flax.linen.avg_pool``; its backward is a broadcast instead of a padded reduce-window)."""
    *lead, h, w, c = x.shape
    return jnp.mean(x.reshape(*lead, h // 2, 2, w // 2, 2, c), axis=(-4, -2))


class ResNetBasicBlock(nn.Module):
    """NB201's reduction block: two ReLU-Conv-BN (first strided) + avgpool/1x1 shortcut."""

    features: int
    bn_momentum: float = 0.9
    canonical_grads: bool = False
    dtype: Any = None
    kernel_grad: str = "lax"  # see conv2d

    @nn.compact
    def __call__(self, x, mode: ForwardMode):
        kw = dict(canonical_grads=self.canonical_grads, dtype=self.dtype, kernel_grad=self.kernel_grad)
        y = ReLUConvBN(self.features, 3, 2, self.bn_momentum, name="conv_a", **kw)(x, mode)
        y = ReLUConvBN(self.features, 3, 1, self.bn_momentum, name="conv_b", **kw)(y, mode)
        s = avg_pool_2x2(x) if self.canonical_grads else nn.avg_pool(x, (2, 2), strides=(2, 2))
        s = conv2d(self.features, 1, name="shortcut", **kw)(s)
        return y + s
