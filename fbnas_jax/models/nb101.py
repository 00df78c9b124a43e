"""The NAS-Bench-101 network in Flax: stand-alone nets and a vmappable weight-sharing supernet.

Macro skeleton, exactly as ``nasbench.lib.model_builder``: stem conv3x3-BN-ReLU to
``channels`` (128 in the benchmark); 3 stacks of ``cells_per_stage`` (3) modules, a 2x2
max-pool and channel doubling before the second and third stack; global average pool; dense.
Inside a module with ``c_in`` input and ``c`` output channels, vertex ``t`` has ``c_t``
channels (``compute_vertex_channels``: the output's ``c`` split among the vertices feeding it,
other vertices the maximum of their successors'); it sums the outputs of its interior
predecessors truncated to ``c_t`` channels and, when the input feeds it, a 1x1 conv-BN-ReLU
projection of the input to ``c_t``; then applies its op (conv3x3-BN-ReLU, conv1x1-BN-ReLU or
max-pool 3x3). The module output concatenates the output-feeding vertices (in vertex order)
and adds a projection of the input when the input feeds the output.

* ``arch`` given: a **stand-alone** network holding exactly the benchmark's layers for that
  cell (its parameter count is the benchmark's ``trainable_parameters`` in ``bn_mode=bnnas``).
* ``arch=None``: the **weight-sharing supernet**; the cell is an *input* (``encoding``,
  ``(26,)`` int32, :mod:`fbnas_jax.spaces.nb101`), so one compiled forward is ``jax.vmap``-ed
  over thousands of cells.

The supernet: a fixed-shape realisation by maximal channels and masks
--------------------------------------------------------------------
Every module holds, at each of the 7 vertex positions, every candidate op at the module's
full width ``c`` (the most any vertex can have) plus a 1x1 projection ``c_in -> c``, and one
output projection ``c_in -> c``. For a given cell, computed from the encoding inside the
compiled function: the vertices off input-output paths are dropped (pruning), the vertex
channels ``c_t`` follow the benchmark's split, and vertex ``t`` uses the *leading* ``c_t``
channels of its weights (a channel mask after every BN/ReLU). NB101's truncation of a wider
predecessor is the same mask, and the concatenation places vertex ``t``'s channels at the
offset of the output-feeding vertices before it (a channel roll). All candidate ops are
computed and the chosen one selected, as in the NB201 supernet; unchosen ops, unused
vertices and masked channels get zero gradient and keep their BatchNorm running statistics.
Hence a subnet of the supernet computes *exactly* the stand-alone network whose weights are
the leading slices (:func:`subnet_variables`; tested).

Relation to published NB101 one-shot models. NAS-Bench-1Shot1 (Zela et al., ICLR 2020)
builds one-shot spaces inside NB101 with the same choice blocks (a 1x1 input projection and
a mixed op per vertex, as in Bender et al., 2018) but gives every vertex the full ``c``
channels, concatenates *all* vertices into a ``c * (steps + 1)``-channel cell output and
adds a 1x1 post-processing conv; and it restricts the topology (a fixed number of parents
per vertex, three sub-spaces). Its subnets are therefore not NB101's networks. Ours covers
the whole NB101 space and keeps the benchmark's channel split and concatenation exactly,
sharing weights across topologies by leading-channel slices (as slimmable / once-for-all
networks share them across widths). It departs from 1Shot1 in that a vertex's weights serve
cells that give it different widths.

BatchNorm placement (``bn_mode``): ``bnnas`` exactly the benchmark's (every conv-BN-ReLU,
projections included); ``fair`` adds a BN after ``maxpool3x3`` (FBN-NAS's fair BN), so every
op ends in a BatchNorm. ``bn_scores`` (gamma / trainability) sums, over modules and the
cell's vertices, the mean over the vertex's ``c_t`` channels of the chosen op's last BN
(0 for max-pool in ``bnnas``); projections are not ops and are not counted.
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fbnas_jax.models.layers import BatchNorm, ConvBNReLU, ForwardMode
from fbnas_jax.spaces import nb101 as space101

BN_MODES = ("bnnas", "fair")
BN_EPS = 1e-5
V = space101.NUM_VERTICES
OUT = V - 1
OP_MODULES = ("conv3x3", "conv1x1", "maxpool_bn")  # module name of each op's last BN (maxpool: fair only)


# --------------------------------------------------------------------------- cell structure (jit-able)

def cell_structure(encoding, out_channels: int):
    """``(lm, live, ops, ch, offset)`` of one encoding, all jnp (vmappable).

    ``lm``: the (7, 7) adjacency of the pruned cell at its positions (int32); ``live``: vertices
    on input-output paths; ``ops``: (5,) op ids of vertices 1..5; ``ch``: (7,) channels of each
    vertex (``compute_vertex_channels``; 0 when unused); ``offset``: channel offset of each
    output-feeding vertex in the output concatenation.
    """
    enc = jnp.asarray(encoding, jnp.int32)
    rows, cols = (np.asarray(x) for x in zip(*space101.PAIRS))
    m = jnp.zeros((V, V), jnp.int32).at[rows, cols].set(enc[:space101.NUM_BITS])
    fwd = [jnp.asarray(True)]
    for j in range(1, V):
        fwd.append(jnp.any(jnp.stack(fwd) & (m[:j, j] > 0)))
    bwd = [jnp.asarray(True)]  # built from the output backwards
    for i in range(V - 2, -1, -1):
        bwd.insert(0, jnp.any(jnp.stack(bwd) & (m[i, i + 1:] > 0)))
    live = jnp.stack(fwd) & jnp.stack(bwd)
    lm = m * live[:, None] * live[None, :]
    feeds = lm[1:OUT, OUT]
    k = jnp.maximum(jnp.sum(feeds), 1)
    interior, correction = out_channels // k, out_channels % k
    rank = jnp.cumsum(feeds) - 1
    ch = jnp.zeros((V,), jnp.int32).at[1:OUT].set(
        jnp.where(feeds > 0, interior + (rank < correction).astype(jnp.int32), 0))
    for t in range(OUT - 1, 0, -1):  # backwards: a vertex that does not feed the output takes
        succ = jnp.max(lm[t, t + 1:OUT] * ch[t + 1:OUT]) if t + 1 < OUT else 0  # its successors' max
        ch = ch.at[t].set(jnp.where(lm[t, OUT] > 0, ch[t], succ))
    fed = lm[:, OUT] * ch
    offset = jnp.cumsum(fed) - fed
    return lm, live, enc[space101.NUM_BITS:], ch, offset


def _check_bn_mode(bn_mode: str) -> str:
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
    return bn_mode


class Vertex(nn.Module):
    """One interior vertex: projection + op (stand-alone), or every op, masked (supernet)."""

    features: int  # stand-alone: the vertex's channels; supernet: the module's output channels
    bn_mode: str
    op: int | None = None  # stand-alone: the vertex's op; supernet: None
    project: bool = True  # stand-alone: whether the module input feeds this vertex
    bn_momentum: float = 0.9

    def _op(self, k: int, x, mode: ForwardMode, active):
        if k < 2:
            size = 3 if k == 0 else 1
            return ConvBNReLU(self.features, size, self.bn_momentum, name=OP_MODULES[k])(x, mode, active)
        y = nn.max_pool(x, (3, 3), strides=(1, 1), padding="SAME")
        if self.bn_mode == "fair":
            y = BatchNorm(self.bn_momentum, name="maxpool_bn")(y, mode, active)
        return y

    @nn.compact
    def __call__(self, cell_input, interior_sum, mode: ForwardMode, control=None):
        if control is None:  # stand-alone
            x = interior_sum
            if self.project:
                p = ConvBNReLU(self.features, 1, self.bn_momentum, name="proj")(cell_input, mode)
                x = p if x is None else x + p
            return self._op(self.op, x, mode, None)
        mask, project, op, live = control
        m = mask.astype(jnp.float32)
        p = ConvBNReLU(self.features, 1, self.bn_momentum, name="proj")(cell_input, mode, mask & project) * m
        x = interior_sum + jnp.where(project, p, 0.0)
        out = jnp.zeros_like(x)
        for k in range(len(space101.OPS)):
            chosen = (op == k) & live
            out = jnp.where(chosen, self._op(k, x, mode, mask & chosen) * m, out)
        return out


class Cell(nn.Module):
    """One NB101 module (``build_module``): ``in_channels`` -> ``out_channels``."""

    out_channels: int
    bn_mode: str
    arch: tuple[int, ...] | None = None
    bn_momentum: float = 0.9

    def _standalone(self, x, mode):
        enc = np.asarray(self.arch)
        m = space101.matrix_of(enc)
        live = space101.live_vertices(m)
        lm = m * live[:, None] * live[None, :]
        ch = space101.position_channels(enc, x.shape[-1], self.out_channels)
        tensors, concat = {}, []
        for t in range(1, OUT):
            if not live[t]:
                continue
            srcs = [tensors[s][..., :ch[t]] for s in range(1, t) if lm[s, t]]
            interior = None
            for s in srcs:
                interior = s if interior is None else interior + s
            tensors[t] = Vertex(int(ch[t]), self.bn_mode, int(enc[space101.NUM_BITS + t - 1]), bool(lm[0, t]),
                                self.bn_momentum, name=f"vertex_{t}")(x, interior, mode)
            if lm[t, OUT]:
                concat.append(tensors[t])
        out = jnp.concatenate(concat, axis=-1) if len(concat) > 1 else (concat[0] if concat else None)
        if lm[0, OUT]:
            p = ConvBNReLU(self.out_channels, 1, self.bn_momentum, name="output_proj")(x, mode)
            out = p if out is None else out + p
        return out

    @nn.compact
    def __call__(self, x, encoding, mode: ForwardMode):
        if self.arch is not None:
            return self._standalone(x, mode)
        c = self.out_channels
        lm, live, ops, ch, offset = cell_structure(encoding, c)
        lanes = jnp.arange(c)
        shape = x.shape[:-1] + (c,)
        tensors = {}
        out = jnp.zeros(shape, jnp.float32)
        for t in range(1, OUT):
            mask = lanes < ch[t]
            m = mask.astype(jnp.float32)
            interior = jnp.zeros(shape, jnp.float32)
            for s in range(1, t):  # NB101's truncation = the mask of the narrower vertex
                interior = interior + jnp.where(lm[s, t] > 0, tensors[s] * m, 0.0)
            control = (mask, lm[0, t] > 0, ops[t - 1], live[t])
            tensors[t] = Vertex(c, self.bn_mode, bn_momentum=self.bn_momentum, name=f"vertex_{t}")(
                x, interior, mode, control)
            out = out + jnp.where(lm[t, OUT] > 0, jnp.roll(tensors[t], offset[t], axis=-1), 0.0)
        project = lm[0, OUT] > 0
        p = ConvBNReLU(c, 1, self.bn_momentum, name="output_proj")(x, mode, project)
        return out + jnp.where(project, p, 0.0)


class NB101Net(nn.Module):
    space: ClassVar[str] = "nb101"

    channels: int = 128  # stem width
    cells_per_stage: int = 3  # modules per stack
    num_classes: int = 10
    bn_mode: str = "fair"
    arch: tuple[int, ...] | None = None
    bn_momentum: float = 0.9
    num_stacks: int = 3

    @nn.compact
    def __call__(self, x, encoding=None, *, mode: ForwardMode = ForwardMode()):
        _check_bn_mode(self.bn_mode)
        if self.arch is None and encoding is None:
            raise ValueError(f"the supernet (arch=None) needs a cell `encoding` of shape ({space101.ENCODING_LEN},)")
        x = ConvBNReLU(self.channels, 3, self.bn_momentum, name="stem")(x, mode)
        c, cell = self.channels, 0
        for stack in range(self.num_stacks):
            if stack > 0:
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
                c *= 2
            for _ in range(self.cells_per_stage):
                x = Cell(c, self.bn_mode, self.arch, self.bn_momentum, name=f"cell_{cell}")(x, encoding, mode)
                cell += 1
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.lecun_normal(), name="classifier")(x)

    @property
    def num_cells(self) -> int:
        return self.num_stacks * self.cells_per_stage

    def cell_channels(self) -> list[tuple[int, int]]:
        """(input, output) channels of every module, in order."""
        out, c_in, c = [], self.channels, self.channels
        for stack in range(self.num_stacks):
            c = c * 2 if stack > 0 else c
            for _ in range(self.cells_per_stage):
                out.append((c_in, c))
                c_in = c
        return out


# --------------------------------------------------------------------------- the network contract

def build_network(model_config: Any = None, num_classes: int | None = None, *, channels: int = 128,
                  cells_per_stage: int = 3, bn_mode: str = "fair", arch: Sequence[int] | str | None = None,
                  bn_momentum: float = 0.9, num_stacks: int = 3) -> NB101Net:
    """Validated constructor; ``model_config`` (a :class:`fbnas_jax.config.ModelConfig`) overrides
    the keywords. ``arch``: None (supernet), an encoding or a cell string."""
    if model_config is not None:
        m = model_config
        channels, cells_per_stage, bn_mode, arch, bn_momentum = (
            m.channels, m.cells_per_stage, m.bn_mode, m.arch, m.bn_momentum)
    num_classes = 10 if num_classes is None else num_classes
    _check_bn_mode(bn_mode)
    if arch is not None:
        arch = tuple(int(a) for a in space101.SPACE.parse(arch))
    for name, value in (("channels", channels), ("cells_per_stage", cells_per_stage),
                        ("num_classes", num_classes), ("num_stacks", num_stacks)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    return NB101Net(int(channels), int(cells_per_stage), int(num_classes), bn_mode, arch, bn_momentum,
                    int(num_stacks))


def init_variables(net: NB101Net, key, input_shape) -> dict:
    """``{'params', 'batch_stats'}`` for inputs of shape ``input_shape`` (no batch); jit-compiled
    (an int ``key`` seeds the ``rbg`` PRNG, as for NB201)."""
    if isinstance(key, int):
        key = jax.random.key(key, impl="rbg")
    x = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
    enc = None if net.arch is not None else jnp.zeros((space101.ENCODING_LEN,), jnp.int32)
    return jax.jit(lambda k: net.init(k, x, enc))(key)


def cost_settings(net: NB101Net, input_size: int) -> dict:
    """Keyword arguments of :meth:`fbnas_jax.spaces.nb101.NB101Space.cost` describing ``net``."""
    return {"channels": net.channels, "cells_per_stage": net.cells_per_stage, "num_classes": net.num_classes,
            "input_size": int(input_size), "num_stacks": net.num_stacks}


def bn_scores(params, batch_stats, encodings, *, net: NB101Net, kind: str):
    """Gamma / trainability of each cell (see the module docstring); jit-able, vmapped over cells."""
    if kind not in ("gamma", "trainability"):
        raise ValueError(f"kind must be 'gamma' or 'trainability', got {kind!r}")
    tables = []  # per module: (5 vertices, 3 ops, c) per-channel statistic, 0 where an op has no BN
    for i, (_, c) in enumerate(net.cell_channels()):
        rows = []
        for t in range(1, OUT):
            p_v, s_v = params[f"cell_{i}"][f"vertex_{t}"], batch_stats[f"cell_{i}"][f"vertex_{t}"]
            ops = []
            for name in OP_MODULES:
                if name not in p_v:  # max-pool in bnnas: no BN
                    ops.append(jnp.zeros((c,), jnp.float32))
                    continue
                bn_p = p_v[name] if name == "maxpool_bn" else p_v[name]["bn"]
                bn_s = s_v[name] if name == "maxpool_bn" else s_v[name]["bn"]
                g = jnp.abs(jnp.asarray(bn_p["scale"], jnp.float32))
                if kind == "trainability":
                    g = g * jax.lax.rsqrt(jnp.asarray(bn_s["var"], jnp.float32) + BN_EPS)
                ops.append(g)
            rows.append(jnp.stack(ops))
        tables.append((c, jnp.stack(rows)))

    def one(encoding):
        total = jnp.zeros((), jnp.float32)
        for c, table in tables:
            _, live, ops, ch, _ = cell_structure(encoding, c)
            chosen = table[jnp.arange(OUT - 1), ops]  # (5, c)
            width = ch[1:OUT]
            mask = jnp.arange(c)[None, :] < width[:, None]
            mean = jnp.sum(chosen * mask, axis=1) / jnp.maximum(width, 1)
            total = total + jnp.sum(jnp.where(live[1:OUT], mean, 0.0))
        return total

    return jax.vmap(one)(jnp.asarray(encodings, jnp.int32))


# --------------------------------------------------------------------------- subnets

def subnet_variables(variables, encoding, net: NB101Net) -> dict:
    """The stand-alone network's ``{'params', 'batch_stats'}`` for ``encoding``: the supernet's
    weights of the cell's live vertices, chosen ops and projections, sliced to the cell's
    channels (leading slices). ``build_network(arch=encoding, ...)`` with the same sizes takes them."""
    enc = space101.SPACE.validate(encoding)
    m = space101.matrix_of(enc)
    live = space101.live_vertices(m)
    lm = m * live[:, None] * live[None, :]
    out = {}
    for col in ("params", "batch_stats"):
        src = variables[col]
        dst = {"stem": src["stem"], **({"classifier": src["classifier"]} if "classifier" in src else {})}
        for i, (c_in, c) in enumerate(net.cell_channels()):
            ch = space101.position_channels(enc, c_in, c)
            cell = {}
            for t in range(1, OUT):
                if not live[t]:
                    continue
                v_src, v = src[f"cell_{i}"][f"vertex_{t}"], {}
                if lm[0, t]:
                    v["proj"] = _slice(v_src["proj"], None, ch[t])
                name = OP_MODULES[int(enc[space101.NUM_BITS + t - 1])]
                if name in v_src:
                    v[name] = _slice(v_src[name], ch[t], ch[t])
                if v:
                    cell[f"vertex_{t}"] = v
            if lm[0, OUT]:
                cell["output_proj"] = src[f"cell_{i}"]["output_proj"]
            dst[f"cell_{i}"] = cell
        out[col] = dst
    return out


def _slice(tree, c_in, c_out):
    """Leading-channel slice of a module's variables: conv kernels ``[..., :c_in, :c_out]``
    (``c_in`` None: all inputs), every per-channel vector ``[:c_out]``."""
    def cut(path, x):
        if path[-1].key == "kernel":
            return x[..., :x.shape[-2] if c_in is None else c_in, :c_out]
        return x[:c_out]
    return jax.tree_util.tree_map_with_path(cut, tree)
