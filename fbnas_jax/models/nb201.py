"""The NAS-Bench-201 network in Flax: one module for stand-alone nets and the supernet.

Macro skeleton, exactly as the benchmark's ``TinyNetwork``: stem Conv3x3+BN; three stages of
``cells_per_stage`` cells at C, 2C, 4C channels joined by two residual reduction blocks;
BN-ReLU, global average pool, linear head.

* ``arch=None`` (the default) builds the **weight-sharing supernet**: every edge of every
  cell owns every candidate op with its own parameters and BatchNorm statistics, and the
  architecture is an *input* (``encoding``, int array of shape (6,)), so the forward is
  jit-compiled once for every architecture. The input may instead be a float array of
  shape (6, 5), a weight per (edge, op): each edge outputs ``sum_k w[e, k] * op_k(x)``
  (one-hot = the subnet, bit-identical; a 0/1 mask = a pruned supernet as in TE-NAS; real
  weights = the DARTS/BaLeNAS relaxation; :func:`fbnas_jax.models.execution.mix_ops`). ``strategy="select"`` computes every candidate
  op and selects the chosen one (``jax.vmap``-able over encodings); ``strategy="switch"``
  runs only the chosen op (``lax.switch``; for per-architecture execution under ``lax.map``
  or a loop). Same parameters and values either way (:mod:`fbnas_jax.models.execution`).
  Unchosen ops get zero gradient and their BN running statistics are left untouched.
* ``arch=(…6 ints…)`` builds a **stand-alone** network holding only the chosen ops.

BatchNorm placement (``bn_mode``):

* ``"bnnas"``: BN only where the benchmark has it (inside ReLU-Conv-BN ops, stem, reduction
  blocks, before the head) -- as in BN-NAS;
* ``"fair"``: additionally a BN after ``skip_connect`` and after ``avg_pool_3x3`` -- as in
  FBN-NAS, so BN-only training can rescale every parametric-free op too.

``none`` stays exactly zero in both modes. A BN after ``none`` would output its shift
``beta`` once trained, turning "no edge" into a learned constant bias; we keep the
benchmark's meaning of the op instead.

The module-level ``build_network``, ``init_variables``, ``bn_scores`` and ``cost_settings``
are the network contract of :mod:`fbnas_jax.spaces.base`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from fbnas_jax.models.conv_patches import check_kernel_grad
from fbnas_jax.models.execution import is_mixed, mix_ops
from fbnas_jax.models.layers import (
    BatchNorm, ForwardMode, ReLU, ReLUConvBN, ResNetBasicBlock, avg_pool_3x3, check_strategy, choose_op, conv2d,
    relu_code_kernel,
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
    strategy: str = "select"
    dtype: Any = None
    kernel_grad: str = "lax"

    def _op(self, k: int, x, mode: ForwardMode, active):
        name = nb201.OPS[k]
        if name == "none":
            return jnp.zeros_like(x)
        kw = dict(canonical_grads=self.strategy == "switch", dtype=self.dtype, kernel_grad=self.kernel_grad)
        if name == "nor_conv_1x1":
            return ReLUConvBN(self.features, 1, 1, self.bn_momentum, name=name, **kw)(x, mode, active)
        if name == "nor_conv_3x3":
            return ReLUConvBN(self.features, 3, 1, self.bn_momentum, name=name, **kw)(x, mode, active)
        y = x if name == "skip_connect" else avg_pool_3x3(x, shifted_sums=self.strategy == "switch")
        if self.bn_mode == "fair":
            y = BatchNorm(self.bn_momentum, fast_grads=self.strategy == "switch", name=f"{name}_bn")(y, mode, active)
        return y

    @nn.compact
    def __call__(self, x, choice, mode: ForwardMode):
        if self.choice is not None:
            return self._op(self.choice, x, mode, None)
        # supernet: the NASWOT codes of the chosen op are recorded by the Cell (`_record_codes`)
        mode = dataclasses.replace(mode, relu_kernel=False)
        branches = [None] + [(lambda mdl, x, active, k=k: mdl._op(k, x, mode, active))
                             for k in range(1, nb201.NUM_OPS)]  # op 0 is `none`: exactly zero
        if is_mixed(choice):
            return mix_ops(self, choice, branches, x)
        return choose_op(self, choice, branches, x, strategy=self.strategy)


class Cell(nn.Module):
    features: int
    bn_mode: str
    arch: tuple[int, ...] | None = None
    bn_momentum: float = 0.9
    strategy: str = "select"
    dtype: Any = None
    kernel_grad: str = "lax"

    def _record_codes(self, nodes, encoding):
        """Sow the NASWOT kernel of the supernet's chosen ReLUs, once per node.

        Both convolution ops start with a ReLU of their edge's input, so an edge contributes
        the codes of its source node when its op is a convolution (a ``sow`` inside a switch
        branch would give the branches different variables, hence here). Edges 0, 1, 3 read
        node 0 and edges 2, 4 node 1: one kernel per node, weighted by how many of its
        out-edges chose a convolution, is the same sum (integer counts: exact) at half the
        matmuls. Per architecture (``strategy="switch"``) a node with no convolution out-edge
        skips its kernel (``lax.cond``).
        """
        has_relu = jnp.asarray([name.startswith("nor_conv") for name in nb201.OPS], jnp.float32)
        weights = [0.0] * (nb201.NUM_NODES - 1)
        e = 0
        for node in range(1, nb201.NUM_NODES):
            for j in range(node):
                w = jnp.dot(encoding[e], has_relu) if is_mixed(encoding[e]) else has_relu[encoding[e]]
                weights[j] = weights[j] + w
                e += 1
        for j, w in enumerate(weights):
            x = nodes[j]
            if self.strategy == "switch" and not self.is_initializing():
                k = jax.lax.cond(w != 0, lambda x, w: relu_code_kernel(x) * w,
                                 lambda x, w: jnp.zeros((x.shape[0], x.shape[0]), jnp.float32), x, w)
            else:
                k = relu_code_kernel(x) * w
            self.sow("relu_kernel", f"K{j}", k, init_fn=lambda: 0.0, reduce_fn=lambda a, b: a + b)

    @nn.compact
    def __call__(self, x, encoding, mode: ForwardMode):
        nodes = [x]
        record = mode.relu_kernel and self.arch is None
        e = 0
        for node in range(1, nb201.NUM_NODES):
            total = 0.0
            for j in range(node):
                choice = None if self.arch is not None else encoding[e]
                fixed = None if self.arch is None else self.arch[e]
                total = total + Edge(self.features, self.bn_mode, fixed, self.bn_momentum, self.strategy, self.dtype,
                                     self.kernel_grad, name=f"edge_{e}")(nodes[j], choice, mode)
                e += 1
            nodes.append(total)
        if record:
            self._record_codes(nodes, encoding)
        return nodes[-1]


class NB201Net(nn.Module):
    space: ClassVar[str] = "nb201"
    #: With non-negative weights and inputs and BN an identity, the network is a chain of its
    #: top-level submodules (each one's output the next one's only input) whose ops other
    #: than conv/linear layers are linear (ReLU on non-negative values, average pooling,
    #: sums): ``synflow`` may take its one-forward path (``_proxies.synflow_forward``).
    linear_chain: ClassVar[bool] = True

    channels: int = 16
    cells_per_stage: int = 5
    num_classes: int = 10
    bn_mode: str = "fair"
    arch: tuple[int, ...] | None = None
    bn_momentum: float = 0.9
    #: "select" (every op computed, vmap-able) | "switch" (only the chosen op; per
    #: architecture): see :mod:`fbnas_jax.models.execution`. Same parameters, same values.
    strategy: str = "select"
    #: compute dtype of convolutions / the head ("float32" | "bfloat16"); BN stays float32
    compute_dtype: str = "float32"
    #: kernel gradients of the convolutions: "lax" (autodiff) | "patches" (one im2col GEMM,
    #: a candidate for vmap over architectures on a GPU; :mod:`fbnas_jax.models.conv_patches`).
    #: Only the all-ops path: with strategy="switch" the canonical-gradient convolutions win.
    kernel_grad: str = "lax"

    @nn.compact
    def __call__(self, x, encoding=None, *, mode: ForwardMode = ForwardMode()):
        check_bn_mode(self.bn_mode)
        check_strategy(self.strategy)
        check_kernel_grad(self.kernel_grad)
        if self.arch is None and encoding is None:
            raise ValueError("the supernet (arch=None) needs an architecture `encoding` of shape (6,) "
                             "or op weights of shape (6, 5)")
        if self.arch is None:
            check_arch_input(encoding)
        c = self.channels
        # Convolutions outside the cells run inside loops too (lax.map over architectures
        # or samples): canonical gradients whenever the network executes per architecture.
        dtype = None if self.compute_dtype == "float32" else jnp.dtype(self.compute_dtype)
        kw = dict(canonical_grads=self.strategy == "switch", dtype=dtype, kernel_grad=self.kernel_grad)
        x = conv2d(c, 3, name="stem_conv", **kw)(x)
        x = BatchNorm(self.bn_momentum, fast_grads=self.strategy == "switch", name="stem_bn")(x, mode)
        cell = 0
        for stage, width in enumerate((c, 2 * c, 4 * c)):
            if stage > 0:
                x = ResNetBasicBlock(width, self.bn_momentum, name=f"reduction_{stage - 1}", **kw)(x, mode)
            for _ in range(self.cells_per_stage):
                x = Cell(width, self.bn_mode, self.arch, self.bn_momentum, self.strategy, dtype, self.kernel_grad,
                         name=f"cell_{cell}")(x, encoding, mode)
                cell += 1
        x = BatchNorm(self.bn_momentum, fast_grads=self.strategy == "switch", name="lastact_bn")(x, mode)
        x = ReLU(name="lastact_relu")(x, mode)
        x = jnp.mean(x, axis=(1, 2))
        out = nn.Dense(self.num_classes, kernel_init=nn.initializers.lecun_normal(), name="classifier",
                       dtype=dtype)(x)
        return out.astype(jnp.float32)

    @property
    def num_cells(self) -> int:
        return 3 * self.cells_per_stage


def build_network(model_config: Any = None, num_classes: int | None = None, *, channels: int = 16,
                  cells_per_stage: int = 5, bn_mode: str = "fair", arch: Sequence[int] | str | None = None,
                  bn_momentum: float = 0.9, strategy: str = "select", compute_dtype: str = "float32",
                  kernel_grad: str = "lax") -> NB201Net:
    """Validated constructor: ``arch`` may be None (supernet), an encoding or a cell string.

    ``build_network(model_config, num_classes)`` (the network contract) takes the sizes from a
    :class:`fbnas_jax.config.ModelConfig`; otherwise from the keyword arguments.
    """
    if model_config is not None:
        m = model_config
        channels, cells_per_stage, bn_mode, arch, bn_momentum = (
            m.channels, m.cells_per_stage, m.bn_mode, m.arch, m.bn_momentum)
    num_classes = 10 if num_classes is None else num_classes
    check_bn_mode(bn_mode)
    if arch is not None:
        enc = nb201.string_to_encoding(arch) if isinstance(arch, str) else nb201.validate_encoding(arch)
        arch = tuple(int(a) for a in enc)
    for name, value in (("channels", channels), ("cells_per_stage", cells_per_stage), ("num_classes", num_classes)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    check_strategy(strategy)
    if compute_dtype not in ("float32", "bfloat16"):
        raise ValueError(f"compute_dtype must be 'float32' or 'bfloat16', got {compute_dtype!r}")
    check_kernel_grad(kernel_grad)
    return NB201Net(channels, cells_per_stage, num_classes, bn_mode, arch, bn_momentum, strategy, compute_dtype,
                    kernel_grad)


def init_variables(net: NB201Net, key, input_shape) -> dict:
    """``{'params', 'batch_stats'}`` of ``net`` for inputs of shape ``input_shape`` (no batch).

    Jit-compiled: eager Flax init dispatches hundreds of small ops one by one. An int ``key``
    is a seed for the ``rbg`` PRNG (XLA:CPU compiles threefry for hundreds of parameter
    tensors ~3x slower; initial weights need reproducibility, not a portable stream).
    """
    if isinstance(key, int):
        key = jax.random.key(key, impl="rbg")
    return _compiled_init(net, tuple(int(d) for d in input_shape))(key)


@functools.lru_cache(maxsize=32)
def _compiled_init(net: NB201Net, input_shape: tuple[int, ...]):
    # One jitted init per (network, input shape): repeats of ntk_cond/TEG and per-seed runs
    # re-initialise the same network many times, and a fresh lambda would recompile each time.
    # (The dummy inputs are built inside the jitted function: this may first be called under
    # an outer trace, e.g. jax.eval_shape, and a cached closure must not hold its tracers.)
    def init(key):
        x = jnp.zeros((1,) + input_shape, jnp.float32)
        enc = None if net.arch is not None else jnp.zeros((nb201.NUM_EDGES,), jnp.int32)
        return net.init(key, x, enc)

    return jax.jit(init)


def check_arch_input(encoding) -> None:
    """Raise ``ValueError`` unless ``encoding`` is an op index per edge, shape (6,) integer, or a
    weight per (edge, op), shape (6, 5) floating (mixed edges)."""
    shape, dtype = tuple(jnp.shape(encoding)), jnp.result_type(encoding)
    if shape == (nb201.NUM_EDGES,) and jnp.issubdtype(dtype, jnp.integer):
        return
    if shape == (nb201.NUM_EDGES, nb201.NUM_OPS) and jnp.issubdtype(dtype, jnp.floating):
        return
    raise ValueError(f"an NB201 architecture input is an integer encoding of shape ({nb201.NUM_EDGES},) or float "
                     f"op weights of shape ({nb201.NUM_EDGES}, {nb201.NUM_OPS}); got shape {shape} of {dtype}")


def cost_settings(net: NB201Net, input_size: int) -> dict:
    """Keyword arguments of :func:`fbnas_jax.spaces.cost.nb201_cost` describing ``net``."""
    return {"num_classes": net.num_classes, "channels": net.channels, "cells_per_stage": net.cells_per_stage,
            "input_size": int(input_size)}


# --------------------------------------------------------------------------- BN tables

BN_EPS = 1e-5  # BatchNorm.epsilon


def _last_bn(edge_tree: Mapping[str, Any], op: str, bn_mode: str):
    """The sub-tree (``scale``/``bias`` or ``mean``/``var``) of op ``op``'s last BN, or None."""
    path = op_last_bn(op, bn_mode)
    if path is None:
        return None
    node = edge_tree
    for key in path:
        node = node[key]
    return node


def bn_table(params, batch_stats, *, num_cells: int, bn_mode: str, kind: str = "gamma"):
    """``T[cell, edge, op]``: per-op BN statistic, shape ``(num_cells, 6, 5)`` float32.

    kind="gamma": mean |scale|; kind="trainability": mean |scale| / sqrt(var + eps).
    Ops without a BN are 0. Pure (jit-able) in ``params``/``batch_stats``.
    """
    if kind not in ("gamma", "trainability"):
        raise ValueError(f"kind must be 'gamma' or 'trainability', got {kind!r}")
    rows = []
    for c in range(num_cells):
        edges = []
        for e in range(nb201.NUM_EDGES):
            p_edge = params[f"cell_{c}"][f"edge_{e}"]
            vals = []
            for op in nb201.OPS:
                bn_p = _last_bn(p_edge, op, bn_mode) if op != "none" else None
                if bn_p is None:
                    vals.append(jnp.zeros((), jnp.float32))
                    continue
                g = jnp.abs(jnp.asarray(bn_p["scale"], jnp.float32))
                if kind == "trainability":
                    bn_s = _last_bn(batch_stats[f"cell_{c}"][f"edge_{e}"], op, bn_mode)
                    g = g * jax.lax.rsqrt(jnp.asarray(bn_s["var"], jnp.float32) + BN_EPS)
                vals.append(jnp.mean(g))
            edges.append(jnp.stack(vals))
        rows.append(jnp.stack(edges))
    return jnp.stack(rows)


def table_scores(table, encodings):
    """Gather-sum: ``score[a] = sum_{cell, edge} T[cell, edge, enc[a, edge]]``.

    Every cell has the same op on a given edge, so the cell sum is folded first.
    """
    per_edge = jnp.sum(table, axis=0)  # (6, 5)
    enc = jnp.asarray(encodings, jnp.int32)
    return jnp.sum(per_edge[jnp.arange(nb201.NUM_EDGES)[None, :], enc], axis=1)


def bn_scores(params, batch_stats, encodings, *, net: NB201Net, kind: str):
    """Gamma / trainability of each encoding (the network contract): a table built once from
    the parameters, then a gather-sum per architecture (the whole space in milliseconds)."""
    table = bn_table(params, batch_stats, num_cells=net.num_cells, bn_mode=net.bn_mode, kind=kind)
    return table_scores(table, encodings)


def check_input_shape(input_shape) -> None:
    """Raise ``ValueError`` unless images of ``input_shape`` (H, W, C) fit the network: the two
    reduction blocks halve height and width, so both must be multiples of 4 (a residual branch
    and its shortcut must agree in size)."""
    h, w = int(input_shape[0]), int(input_shape[1])
    if h % 4 or w % 4 or h < 4 or w < 4:
        raise ValueError(f"images of {h}x{w} pixels do not fit the NB201 network: its two reduction blocks "
                         "halve the resolution twice, so height and width must be multiples of 4 "
                         "(e.g. 16, 32); resize the dataset")
