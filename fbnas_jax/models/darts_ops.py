"""The 8 DARTS operations in Flax, as the DARTS code's ``operations.py`` builds them.

Each op is called ``op(x, mode, active)`` (``active`` masks BN running-statistic updates and
NASWOT codes in the supernet). Parameter names end every op with a BatchNorm called ``bn``
(the one the BN-NAS indicator reads), intermediate BNs end in ``_bn``, so the BN-only
partition (:mod:`fbnas_jax.training.partition`) finds every BN and nothing else.

``bn_mode="fair"`` appends a BN (``<op>_bn``) to the parameter-free ops -- both pools and the
stride-1 ``skip_connect`` (at stride 2 ``skip_connect`` is ``FactorizedReduce``, which ends in
a BN already). ``none`` stays exactly zero in both modes.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fbnas_jax.models.layers import BatchNorm, ForwardMode, ReLU, kaiming_normal
from fbnas_jax.spaces.darts import OPS


def _conv(features, kernel, stride=1, dilation=1, groups=1, name=None):
    pad = dilation * (kernel - 1) // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   kernel_dilation=(dilation, dilation), feature_group_count=groups, use_bias=False,
                   kernel_init=kaiming_normal(), name=name)


def max_pool_3x3(x, stride: int):
    """``MaxPool2d(3, stride, padding=1)`` (padding never wins the max)."""
    return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)))


def avg_pool_3x3(x, stride: int):
    """``AvgPool2d(3, stride, padding=1, count_include_pad=False)``; the divisor is a NumPy
    constant (see :func:`fbnas_jax.models.layers.avg_pool_3x3` for why)."""
    h, w = x.shape[-3], x.shape[-2]

    def counts(n):
        starts = np.arange(0, n, stride)  # output positions: centres 0, s, 2s, ...
        return np.minimum(starts + 1, n - 1) - np.maximum(starts - 1, 0) + 1

    count = (counts(h)[:, None] * counts(w)[None, :]).astype(np.float32)[:, :, None]
    window = (1,) * (x.ndim - 3) + (3, 3, 1)
    strides = (1,) * (x.ndim - 3) + (stride, stride, 1)
    padding = ((0, 0),) * (x.ndim - 3) + ((1, 1), (1, 1), (0, 0))
    summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, padding)
    return summed / count


class ReLUConvBN(nn.Module):
    """ReLU - Conv(k, stride) - BN: the cell-input preprocessing (k = 1) and the stems."""

    features: int
    kernel: int = 1
    stride: int = 1
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x, mode: ForwardMode, active=None):
        x = ReLU(name="relu")(x, mode, active)
        x = _conv(self.features, self.kernel, self.stride, name="conv")(x)
        return BatchNorm(self.bn_momentum, name="bn")(x, mode, active)


class FactorizedReduce(nn.Module):
    """ReLU, two stride-2 1x1 convs to ``features / 2`` on grids offset by one pixel, concat, BN."""

    features: int
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x, mode: ForwardMode, active=None):
        if self.features % 2:
            raise ValueError(f"FactorizedReduce needs an even number of channels, got {self.features}")
        x = ReLU(name="relu")(x, mode, active)
        half = self.features // 2
        a = nn.Conv(half, (1, 1), strides=(2, 2), use_bias=False, kernel_init=kaiming_normal(), padding="VALID",
                    name="conv_1")(x)
        shifted = jnp.pad(x[..., 1:, 1:, :], ((0, 0),) * (x.ndim - 3) + ((0, 1), (0, 1), (0, 0)))
        b = nn.Conv(half, (1, 1), strides=(2, 2), use_bias=False, kernel_init=kaiming_normal(), padding="VALID",
                    name="conv_2")(shifted)
        return BatchNorm(self.bn_momentum, name="bn")(jnp.concatenate([a, b], axis=-1), mode, active)


class SepConv(nn.Module):
    """Twice ReLU - depthwise conv(k) - conv 1x1 - BN (the stride on the first)."""

    features: int
    kernel: int
    stride: int
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x, mode: ForwardMode, active=None):
        c = x.shape[-1]
        x = ReLU(name="relu_1")(x, mode, active)
        x = _conv(c, self.kernel, self.stride, groups=c, name="dw_1")(x)
        x = _conv(c, 1, name="pw_1")(x)
        x = BatchNorm(self.bn_momentum, name="inner_bn")(x, mode, active)
        x = ReLU(name="relu_2")(x, mode, active)
        x = _conv(c, self.kernel, 1, groups=c, name="dw_2")(x)
        x = _conv(self.features, 1, name="pw_2")(x)
        return BatchNorm(self.bn_momentum, name="bn")(x, mode, active)


class DilConv(nn.Module):
    """ReLU - depthwise conv(k, dilation 2) - conv 1x1 - BN."""

    features: int
    kernel: int
    stride: int
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x, mode: ForwardMode, active=None):
        c = x.shape[-1]
        x = ReLU(name="relu")(x, mode, active)
        x = _conv(c, self.kernel, self.stride, dilation=2, groups=c, name="dw")(x)
        x = _conv(self.features, 1, name="pw")(x)
        return BatchNorm(self.bn_momentum, name="bn")(x, mode, active)


def apply_op(op: str, x, *, features: int, stride: int, bn_mode: str, mode: ForwardMode,
             active=None, bn_momentum: float = 0.9):
    """Op ``op`` on ``x``; call inside a compact method: its modules are named after the op."""
    if op == "none":
        y = x[..., ::stride, ::stride, :] if stride > 1 else x
        return jnp.zeros(y.shape[:-1] + (features,), x.dtype)
    if op.startswith("sep_conv"):
        return SepConv(features, int(op[-1]), stride, bn_momentum, name=op)(x, mode, active)
    if op.startswith("dil_conv"):
        return DilConv(features, int(op[-1]), stride, bn_momentum, name=op)(x, mode, active)
    if op == "skip_connect" and stride > 1:
        return FactorizedReduce(features, bn_momentum, name=op)(x, mode, active)
    if op == "skip_connect":
        y = x
    elif op == "max_pool_3x3":
        y = max_pool_3x3(x, stride)
    elif op == "avg_pool_3x3":
        y = avg_pool_3x3(x, stride)
    else:
        raise ValueError(f"unknown DARTS op {op!r}; ops are {OPS}")
    if bn_mode == "fair":
        y = BatchNorm(bn_momentum, name=f"{op}_bn")(y, mode, active)
    return y


def last_bn_path(op: str, stride: int, bn_mode: str) -> tuple[str, ...] | None:
    """Path, inside an edge's tree, of the BN ending op ``op`` (None if it has none)."""
    if op.startswith(("sep_conv", "dil_conv")) or (op == "skip_connect" and stride > 1):
        return (op, "bn")
    if op in ("skip_connect", "max_pool_3x3", "avg_pool_3x3") and bn_mode == "fair":
        return (f"{op}_bn",)
    return None
