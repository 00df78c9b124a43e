"""Parameters and FLOPs of NAS-Bench-201 architectures, counted the way the benchmark does.

The benchmark (Dong & Yang, ICLR 2020) reports, per architecture, the number of
parameters and the FLOPs of its ``TinyNetwork``, both in millions:

* **FLOPs** are multiply-accumulates per image of convolution and linear layers only.
  A convolution costs ``C_in * C_out * k * k * H_out * W_out`` (no bias in NB201), a linear
  layer ``in * out + out`` (its bias adds ``out``). BatchNorm, ReLU, additions and
  *pooling cost nothing*: neither the cell's ``avg_pool_3x3`` nor the ``AvgPool2d(2)`` in
  the shortcut of the residual reduction blocks is counted. (Counting them would break the
  published values, e.g. all-``none`` would be 7.80763 instead of 7.78305 MFLOPs.)
* **Parameters** are all weights: convolution kernels, BatchNorm affine scale and shift
  (2 per channel) and the linear head's weight and bias.
* No pruning: every non-``none`` op of the cell is counted even when its output cannot
  reach the cell output (all 15 cells share one genotype).

The macro skeleton, for ``C`` channels and ``N`` cells per stage::

    stem:   Conv3x3(3 -> C, no bias) + BN
    stage 1: N cells at C            (H x W)
    ResNetBasicblock(C -> 2C, stride 2):
            conv_a  = ReLU-Conv3x3(stride 2)-BN, conv_b = ReLU-Conv3x3-BN,
            shortcut = AvgPool2x2 -> Conv1x1(no bias)
    stage 2: N cells at 2C           (H/2 x W/2)
    ResNetBasicblock(2C -> 4C, stride 2)
    stage 3: N cells at 4C           (H/4 x W/4)
    lastact: BN + ReLU, global average pool, Linear(4C -> classes)

Cell ops: ``nor_conv_kxk`` = ReLU-Conv(kxk, C -> C, no bias)-BN (``k*k*C*C + 2C`` params,
``k*k*C*C*H*W`` FLOPs); ``avg_pool_3x3``, ``skip_connect`` and ``none`` are free.

Because every cell repeats one genotype, an architecture's cost is a fixed skeleton cost
plus, for each of its 6 edges, a per-op cost that does not depend on the edge
(:func:`cost_table`). :func:`nb201_costs` uses that to cost all 15,625 cells at once.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from fbnas_jax.spaces.base import Cost
from fbnas_jax.spaces.nb201 import (
    NUM_EDGES,
    NUM_OPS,
    OPS,
    SearchSpaceError,
    parse_archs,
    string_to_encoding,
    validate_encoding,
    validate_encodings,
)

__all__ = ["Cost", "CostTable", "cost_table", "nb201_cost", "nb201_costs"]


class CostTable(NamedTuple):
    """Additive cost model: ``cost(arch) = base + sum_e op[arch[e]]`` (all in millions).

    ``op_params_m[k]`` / ``op_flops_m[k]`` is the cost of op ``OPS[k]`` on *one* edge,
    summed over all ``3 * cells_per_stage`` cells (it is the same for every edge).
    ``base_*`` is the skeleton: stem, reduction blocks, last BN and the linear head.
    """

    op_params_m: np.ndarray  # (NUM_OPS,) float64
    op_flops_m: np.ndarray  # (NUM_OPS,) float64
    base_params_m: float
    base_flops_m: float


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _counts(num_classes: int, channels: int, cells_per_stage: int, input_size: int):
    """Integer counts: (op_params (5,), op_flops (5,), base_params, base_flops)."""
    num_classes = _check_int("num_classes", num_classes, 1)
    channels = _check_int("channels", channels, 1)
    cells_per_stage = _check_int("cells_per_stage", cells_per_stage, 0)
    input_size = _check_int("input_size", input_size, 1)

    c_in = 3
    widths = (channels, 2 * channels, 4 * channels)
    # Stem: conv3x3 stride 1 pad 1 (size preserved), no bias, + BN.
    h = input_size
    base_params = c_in * channels * 9 + 2 * channels
    base_flops = c_in * channels * 9 * h * h

    op_params = np.zeros(NUM_OPS, dtype=np.int64)
    op_flops = np.zeros(NUM_OPS, dtype=np.int64)
    k_of = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}

    for stage, c in enumerate(widths):
        if stage > 0:
            cp = widths[stage - 1]
            # ResNetBasicblock(cp -> c, stride 2): conv_a (3x3, stride 2, pad 1) + BN,
            # conv_b (3x3, stride 1, pad 1) + BN, shortcut AvgPool2d(2, 2) -> Conv1x1.
            h_out = _conv_out(h, 3, 2, 1)
            h_pool = _conv_out(h, 2, 2, 0)
            if h_pool != h_out:
                raise ValueError(
                    f"input_size={input_size}: the feature map before reduction block {stage} is "
                    f"{h}x{h} (odd), so the residual block's two branches disagree "
                    f"({h_out} vs {h_pool}); NB201's network needs input_size divisible by 4"
                )
            h = h_out
            base_params += cp * c * 9 + 2 * c  # conv_a + BN
            base_params += c * c * 9 + 2 * c  # conv_b + BN
            base_params += cp * c  # shortcut conv1x1, no bias
            base_flops += cp * c * 9 * h * h + c * c * 9 * h * h + cp * c * h * h
            # AvgPool2d in the shortcut: not counted by NB201.
        for name, k in k_of.items():
            idx = OPS.index(name)
            op_params[idx] += cells_per_stage * (k * k * c * c + 2 * c)
            op_flops[idx] += cells_per_stage * (k * k * c * c * h * h)
        # none, skip_connect, avg_pool_3x3 (stride 1, C_in == C_out): no params, no FLOPs.

    c_last = widths[-1]
    base_params += 2 * c_last  # lastact BN
    base_params += c_last * num_classes + num_classes  # Linear with bias
    base_flops += c_last * num_classes + num_classes
    return op_params, op_flops, base_params, base_flops


def cost_table(
    *, num_classes: int = 10, channels: int = 16, cells_per_stage: int = 5, input_size: int = 32
) -> CostTable:
    """Per-op (edge-independent) and skeleton costs in millions; see :class:`CostTable`.

    Useful for constraint checks in search: e.g. the FLOPs budget left for the cell is
    ``budget - base_flops_m`` and each edge spends ``op_flops_m[op]`` of it.
    """
    op_p, op_f, base_p, base_f = _counts(num_classes, channels, cells_per_stage, input_size)
    return CostTable(op_p / 1e6, op_f / 1e6, base_p / 1e6, base_f / 1e6)


def _as_encoding(arch: str | Sequence[int] | np.ndarray) -> np.ndarray:
    if isinstance(arch, str):
        return string_to_encoding(arch)
    arr = np.asarray(arch)
    if arr.dtype.kind not in "biuf":
        raise SearchSpaceError(f"an NB201 encoding must be numeric, got dtype {arr.dtype}")
    return validate_encoding(arr)


def nb201_cost(
    encoding: str | Sequence[int] | np.ndarray,
    *,
    num_classes: int = 10,
    channels: int = 16,
    cells_per_stage: int = 5,
    input_size: int = 32,
) -> Cost:
    """Params and FLOPs (millions) of one NB201 architecture (encoding or cell string).

    >>> nb201_cost("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    ...            "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    Cost(params_m=1.531546, flops_m=220.11969)
    """
    enc = _as_encoding(encoding)
    op_p, op_f, base_p, base_f = _counts(num_classes, channels, cells_per_stage, input_size)
    params = int(base_p + op_p[enc].sum())
    flops = int(base_f + op_f[enc].sum())
    return Cost(params / 1e6, flops / 1e6)


def nb201_costs(
    encodings: np.ndarray | Sequence[Sequence[int]] | Sequence[str],
    *,
    num_classes: int = 10,
    channels: int = 16,
    cells_per_stage: int = 5,
    input_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`nb201_cost`: ``(n, 6)`` encodings (or a list of cell strings)
    -> ``(params_m, flops_m)``, two float64 arrays of shape ``(n,)``.

    All 15,625 architectures take about a millisecond.
    """
    if isinstance(encodings, (list, tuple)) and any(isinstance(x, str) for x in encodings):
        enc = parse_archs(encodings)
    else:
        arr = np.asarray(encodings)
        if arr.size == 0:
            arr = arr.reshape(0, NUM_EDGES)
        if arr.dtype.kind not in "biuf":
            raise SearchSpaceError(f"NB201 encodings must be numeric, got dtype {arr.dtype}")
        if arr.dtype.kind == "f" and arr.size and not np.all(np.mod(arr, 1) == 0):
            raise SearchSpaceError("encoding entries must be integers")
        enc = validate_encodings(arr)
    op_p, op_f, base_p, base_f = _counts(num_classes, channels, cells_per_stage, input_size)
    params = base_p + op_p[enc].sum(axis=1)
    flops = base_f + op_f[enc].sum(axis=1)
    return params / 1e6, flops / 1e6
