"""The NAS-Bench-201 network in Flax: one module for stand-alone nets and the supernet.

Macro skeleton, exactly as the benchmark's ``TinyNetwork``: stem Conv3x3+BN; three stages of
``cells_per_stage`` cells at C, 2C, 4C channels joined by two residual reduction blocks;
BN-ReLU, global average pool, linear head.

* ``arch=None`` (the default) builds the **weight-sharing supernet**: every edge of every
  cell owns every candidate op with its own parameters and BatchNorm statistics, and the
  architecture is an *input* (``encoding``, int array of shape (6,)). Every candidate op is
  computed and the chosen one selected, so the forward is jit-compiled once and can be
  ``jax.vmap``-ed over many encodings with one set of parameters. Unchosen ops get zero
  gradient and their BN running statistics are left untouched.
* ``arch=(…6 ints…)`` builds a **stand-alone** network holding only the chosen ops.

BatchNorm placement (``bn_mode``):

* ``"bnnas"``: BN only where the benchmark has it (inside ReLU-Conv-BN ops, stem, reduction
  blocks, before the head) -- as in BN-NAS;
* ``"fair"``: additionally a BN after ``skip_connect`` and after ``avg_pool_3x3`` -- as in
  FBN-NAS, so BN-only training can rescale every parametric-free op too.

``none`` stays exactly zero in both modes. A BN after ``none`` would output its shift
``beta`` once trained, turning "no edge" into a learned constant bias; we keep the
benchmark's meaning of the op instead.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from fbnas_jax.models.layers import (
    BatchNorm, ForwardMode, ReLU, ReLUConvBN, ResNetBasicBlock, avg_pool_3x3, kaiming_normal,
)
from fbnas_jax.spaces import nb201

BN_MODES = ("bnnas", "fair")


def op_last_bn(op_name: str, bn_mode: str) -> tuple[str, ...] | None:
    """Path, inside an edge's params, of the BN that ends op ``op_name`` (None if it has none)."""
    if op_name in ("nor_conv_1x1", "nor_conv_3x3"):
        return (op_name, "bn")
    if op_name in ("skip_connect", "avg_pool_3x3") and bn_mode == "fair":
        return (f"{op_name}_bn",)
    return None


def check_bn_mode(bn_mode: str) -> str:
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
    return bn_mode


class Edge(nn.Module):
    """One edge of a cell: all candidate ops (supernet) or only the chosen one."""

    features: int
    bn_mode: str
    choice: int | None = None  # stand-alone: the op index; supernet: None
    bn_momentum: float = 0.9

    def _op(self, k: int, x, mode: ForwardMode, active):
        name = nb201.OPS[k]
        if name == "none":
            return jnp.zeros_like(x)
        if name == "nor_conv_1x1":
            return ReLUConvBN(self.features, 1, 1, self.bn_momentum, name=name)(x, mode, active)
        if name == "nor_conv_3x3":
            return ReLUConvBN(self.features, 3, 1, self.bn_momentum, name=name)(x, mode, active)
        y = x if name == "skip_connect" else avg_pool_3x3(x)
        if self.bn_mode == "fair":
            y = BatchNorm(self.bn_momentum, name=f"{name}_bn")(y, mode, active)
        return y

    @nn.compact
    def __call__(self, x, choice, mode: ForwardMode):
        if self.choice is not None:
            return self._op(self.choice, x, mode, None)
        out = jnp.zeros_like(x)
        for k in range(1, nb201.NUM_OPS):  # k = 0 is `none`: contributes zero
            active = choice == k
            out = out + jnp.where(active, self._op(k, x, mode, active), 0.0)
        return out


class Cell(nn.Module):
    features: int
    bn_mode: str
    arch: tuple[int, ...] | None = None
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x, encoding, mode: ForwardMode):
        nodes = [x]
        e = 0
        for node in range(1, nb201.NUM_NODES):
            total = 0.0
            for j in range(node):
                choice = None if self.arch is not None else encoding[e]
                fixed = None if self.arch is None else self.arch[e]
                total = total + Edge(self.features, self.bn_mode, fixed, self.bn_momentum, name=f"edge_{e}")(
                    nodes[j], choice, mode)
                e += 1
            nodes.append(total)
        return nodes[-1]


class NB201Net(nn.Module):
    channels: int = 16
    cells_per_stage: int = 5
    num_classes: int = 10
    bn_mode: str = "fair"
    arch: tuple[int, ...] | None = None
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x, encoding=None, *, mode: ForwardMode = ForwardMode()):
        check_bn_mode(self.bn_mode)
        if self.arch is None and encoding is None:
            raise ValueError("the supernet (arch=None) needs an architecture `encoding` of shape (6,)")
        c = self.channels
        x = nn.Conv(c, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, kernel_init=kaiming_normal(),
                    name="stem_conv")(x)
        x = BatchNorm(self.bn_momentum, name="stem_bn")(x, mode)
        cell = 0
        for stage, width in enumerate((c, 2 * c, 4 * c)):
            if stage > 0:
                x = ResNetBasicBlock(width, self.bn_momentum, name=f"reduction_{stage - 1}")(x, mode)
            for _ in range(self.cells_per_stage):
                x = Cell(width, self.bn_mode, self.arch, self.bn_momentum, name=f"cell_{cell}")(x, encoding, mode)
                cell += 1
        x = BatchNorm(self.bn_momentum, name="lastact_bn")(x, mode)
        x = ReLU(name="lastact_relu")(x, mode)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.lecun_normal(), name="classifier")(x)

    @property
    def num_cells(self) -> int:
        return 3 * self.cells_per_stage


def build_network(*, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10,
                  bn_mode: str = "fair", arch: Sequence[int] | str | None = None,
                  bn_momentum: float = 0.9) -> NB201Net:
    """Validated constructor: ``arch`` may be None (supernet), an encoding or a cell string."""
    check_bn_mode(bn_mode)
    if arch is not None:
        enc = nb201.string_to_encoding(arch) if isinstance(arch, str) else nb201.validate_encoding(arch)
        arch = tuple(int(a) for a in enc)
    for name, value in (("channels", channels), ("cells_per_stage", cells_per_stage), ("num_classes", num_classes)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    return NB201Net(channels, cells_per_stage, num_classes, bn_mode, arch, bn_momentum)


def init_variables(net: NB201Net, key, input_shape) -> dict:
    """``{'params', 'batch_stats'}`` of ``net`` for inputs of shape ``input_shape`` (no batch).

    Jit-compiled: eager Flax init dispatches hundreds of small ops one by one. An int ``key``
    is a seed for the ``rbg`` PRNG (XLA:CPU compiles threefry for hundreds of parameter
    tensors ~3x slower; initial weights need reproducibility, not a portable stream).
    """
    import jax

    if isinstance(key, int):
        key = jax.random.key(key, impl="rbg")
    x = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
    enc = None if net.arch is not None else jnp.zeros((nb201.NUM_EDGES,), jnp.int32)
    return jax.jit(lambda k: net.init(k, x, enc))(key)


def check_input_shape(input_shape) -> None:
    """Raise ``ValueError`` unless images of ``input_shape`` (H, W, C) fit the network: the two
    reduction blocks halve height and width, so both must be multiples of 4 (a residual branch
    and its shortcut must agree in size)."""
    h, w = int(input_shape[0]), int(input_shape[1])
    if h % 4 or w % 4 or h < 4 or w < 4:
        raise ValueError(f"images of {h}x{w} pixels do not fit the NB201 network: its two reduction blocks "
                         "halve the resolution twice, so height and width must be multiples of 4 "
                         "(e.g. 16, 32); resize the dataset")
