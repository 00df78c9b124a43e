"""The DARTS network in Flax: supernet (encoding as input) and stand-alone (genotype) nets.

Macro skeleton as the DARTS code's ``NetworkCIFAR`` / ``NetworkImageNet`` (without the
auxiliary head and drop-path, which only regularise long stand-alone training): a stem,
``layers`` cells with reduction cells at 1/3 and 2/3 of the depth (channels doubled), global
average pool, linear classifier. Each cell preprocesses its two inputs to ``C`` channels
(``ReLUConvBN`` 1x1, or ``FactorizedReduce`` after a reduction cell), computes 4 nodes and
concatenates them.

Node ``i`` (state ``i + 2``) has one *edge* module per possible input ``j`` (``edge_{i}_{j}``),
holding the candidate ops as sub-modules named after the op (edges from the cell inputs of a
reduction cell have stride 2).

* ``arch=None``, the **supernet**: the encoding ``(2, 8, 2)`` is an input. Every edge computes
  every op; edge ``(i, j)`` selects the op of whichever of node ``i``'s two chosen
  ``(op, input)`` pairs has input ``j`` (none if neither), so the forward compiles once and
  ``jax.vmap`` runs many architectures. Unchosen ops get zero gradient and keep their BN
  statistics (``active`` masks).
* ``arch=<genotype>``: a **stand-alone** net with the 8 chosen edges per cell under the
  *same* names, so its parameters are a sub-tree of the supernet's.

``bn_mode``: ``"bnnas"`` keeps BN where the DARTS ops have it; ``"fair"`` adds one after the
pools and the stride-1 ``skip_connect`` (:mod:`fbnas_jax.models.darts_ops`).
"""
from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fbnas_jax.models.darts_ops import FactorizedReduce, ReLUConvBN, _conv, apply_op, last_bn_path, max_pool_3x3
from fbnas_jax.models.init import cut_subnet, init_from_shapes, paste_subnet
from fbnas_jax.models.layers import BatchNorm, ForwardMode, ReLU, choose_op
from fbnas_jax.spaces.darts import (
    CONCAT, ENCODING_SHAPE, NONE, NUM_NODES, NUM_OPS, OPS, SETTINGS, DartsSpace, reduction_cells,
)

BN_MODES = ("bnnas", "fair")
BN_EPS = 1e-5
STEMS = ("cifar", "imagenet")


def check_bn_mode(bn_mode: str) -> str:
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
    return bn_mode


class Edge(nn.Module):
    """Edge ``input j -> node``: every op (supernet, ``choice`` an op index, 0 = none) or only
    ``fixed``. Supernet execution as :class:`fbnas_jax.models.mobilenet.ChoiceLayer`: with
    ``single_path`` the chosen op runs alone under ``nn.switch`` (a select of all ops under
    ``jax.vmap``); NASWOT codes and initialisation compute every op and keep the chosen one."""

    features: int
    stride: int
    bn_mode: str
    fixed: int | None = None
    bn_momentum: float = 0.9
    single_path: bool = True

    @nn.compact
    def __call__(self, x, choice, mode: ForwardMode):
        if self.fixed is not None:
            return _edge_op(self, self.fixed, x, mode, None)
        # `none` gets a real branch (not choose_op's `None`): on a reduction edge its zeros
        # have the strided shape, not the input's
        branches = [(lambda mdl, x, active, k=k: _edge_op(self, k, x, mode, active)) for k in range(NUM_OPS)]
        strategy = "switch" if self.single_path and not mode.relu_kernel else "select"
        return choose_op(self, choice, branches, x, strategy=strategy)


def _edge_op(edge: Edge, k: int, x, mode, active):
    """A free function: its modules belong to the current module (the edge or its lifted copy)."""
    return apply_op(OPS[k], x, features=edge.features, stride=edge.stride, bn_mode=edge.bn_mode, mode=mode,
                    active=active, bn_momentum=edge.bn_momentum)


#: The 14 edges ``(node i, input j)`` of a cell, node-major (the supernet's summation order).
EDGES: tuple[tuple[int, int], ...] = tuple((i, j) for i in range(NUM_NODES) for j in range(i + 2))


def edge_groups(reduction: bool) -> dict[str, tuple[tuple[int, int], ...]]:
    """The supernet's stacked edge groups of a cell: ``{group name: edges, in stacking order}``.

    A normal cell stacks its 14 edges (all stride 1) in one group ``edges``; a reduction cell
    stacks the 8 stride-2 edges from its inputs in ``strided_edges`` and the 6 stride-1 edges
    between its nodes in ``edges`` (different shapes cannot share a stack)."""
    if not reduction:
        return {"edges": EDGES}
    return {"strided_edges": tuple(e for e in EDGES if e[1] < 2), "edges": tuple(e for e in EDGES if e[1] >= 2)}


def edge_position(reduction: bool, i: int, j: int) -> tuple[str, int]:
    """``(group, index)`` of edge ``(i, j)`` in the supernet's stacked parameters."""
    for group, edges in edge_groups(reduction).items():
        if (i, j) in edges:
            return group, edges.index((i, j))
    raise ValueError(f"no edge from state {j} to node {i} (nodes 0..{NUM_NODES - 1} take states 0..i+1)")


class EdgeStep(nn.Module):
    """One step of a cell's scan over its stacked edges: ``buf[write] += edge(src[read])``.

    The step's parameters are one edge's (every op, named after the op, exactly as a
    stand-alone :class:`Edge`); ``nn.scan`` stacks them over the edges of the group, so XLA
    compiles the 8 candidate ops once per group instead of once per edge. ``src`` is the
    buffer read from (the carried ``buf`` itself when ``read_carry``: a normal cell's nodes read
    earlier nodes). Execution of the chosen op as :class:`Edge` (``nn.switch`` when
    ``single_path``, a masked select under ``relu_kernel`` / initialisation / ``jax.vmap``)."""

    features: int
    stride: int
    bn_mode: str
    mode: ForwardMode
    read_carry: bool
    bn_momentum: float = 0.9
    single_path: bool = True

    @nn.compact
    def __call__(self, buf, xs, src):
        read, write, choice = xs
        x = jax.lax.dynamic_index_in_dim(buf if self.read_carry else src, read, keepdims=False)
        branches = [(lambda mdl, x, active, k=k: _edge_op(self, k, x, self.mode, active)) for k in range(NUM_OPS)]
        strategy = "switch" if self.single_path and not self.mode.relu_kernel else "select"
        y = choose_op(self, choice, branches, x, strategy=strategy)
        total = jax.lax.dynamic_index_in_dim(buf, write, keepdims=False) + y
        return jax.lax.dynamic_update_index_in_dim(buf, total, write, 0), None


_ScanEdges = nn.scan(EdgeStep, variable_axes={"params": 0, "batch_stats": 0, "relu_kernel": 0},
                     split_rngs={"params": True}, in_axes=(0, nn.broadcast))


class Cell(nn.Module):
    """A DARTS cell. Stand-alone (``genes`` given): its 8 edges unrolled, ``edge_{i}_{j}``.
    Supernet: the edges of each :func:`edge_groups` group run as one ``nn.scan`` whose step
    computes edge ``(i, j)`` (the op chosen for it, ``none`` if node ``i`` does not take input
    ``j``) and adds it to node ``i``: node-major, inputs ascending -- the stand-alone net's
    summation order, so a subnet gives the stand-alone values."""

    features: int
    reduction: bool
    reduction_prev: bool
    bn_mode: str
    genes: tuple[tuple[int, int], ...] | None = None  # stand-alone: 8 (op, input) pairs
    bn_momentum: float = 0.9
    single_path: bool = True

    @nn.compact
    def __call__(self, s0, s1, genes, mode: ForwardMode):
        """``genes``: (8, 2) int array (op, input) of this cell kind (supernet), else None."""
        c, m = self.features, self.bn_momentum
        if self.reduction_prev:
            s0 = FactorizedReduce(c, m, name="preprocess0")(s0, mode)
        else:
            s0 = ReLUConvBN(c, 1, 1, m, name="preprocess0")(s0, mode)
        s1 = ReLUConvBN(c, 1, 1, m, name="preprocess1")(s1, mode)
        if self.genes is None:
            return self._supernet_nodes(s0, s1, genes, mode)
        states = [s0, s1]
        for i in range(NUM_NODES):
            total = None
            for op, j in self.genes[2 * i: 2 * i + 2]:
                stride = 2 if self.reduction and j < 2 else 1
                y = Edge(c, stride, self.bn_mode, op, m, name=f"edge_{i}_{j}")(states[j], None, mode)
                total = y if total is None else total + y
            states.append(total)
        return jnp.concatenate([states[k] for k in CONCAT], axis=-1)

    def _supernet_nodes(self, s0, s1, genes, mode):
        c, m = self.features, self.bn_momentum
        ops, inputs = genes[:, 0], genes[:, 1]
        groups = edge_groups(self.reduction)

        def scan(name, stride, buf, src, read_offset, write_offset, read_carry):
            edges = groups[name]
            node = np.asarray([i for i, _ in edges])
            j = np.asarray([j for _, j in edges])
            # op of edge (i, j): node i's first or second chosen op if it takes input j, else none
            choice = jnp.where(inputs[2 * node] == j, ops[2 * node],
                               jnp.where(inputs[2 * node + 1] == j, ops[2 * node + 1], NONE)).astype(jnp.int32)
            xs = (jnp.asarray(j - read_offset, jnp.int32), jnp.asarray(node + write_offset, jnp.int32), choice)
            step = _ScanEdges(c, stride, self.bn_mode, mode, read_carry, m, self.single_path, name=name)
            return step(buf, xs, src)[0]

        if not self.reduction:  # states 0..5 in one buffer; nodes start at zero
            zeros = jnp.zeros((NUM_NODES,) + s1.shape, s1.dtype)
            buf = jnp.concatenate([jnp.stack([s0, s1]), zeros])
            buf = scan("edges", 1, buf, jnp.zeros((), s1.dtype), 0, 2, True)
            nodes = [buf[k] for k in CONCAT]
        else:  # strided edges from the two inputs first, then node -> node edges (stride 1)
            inputs_buf = jnp.stack([s0, s1])
            probe = jax.eval_shape(lambda x: max_pool_3x3(x, 2), s1)
            buf = jnp.zeros((NUM_NODES,) + probe.shape[:-1] + (c,), s1.dtype)
            buf = scan("strided_edges", 2, buf, inputs_buf, 0, 0, False)
            buf = scan("edges", 1, buf, jnp.zeros((), s1.dtype), 2, 0, True)
            nodes = [buf[k - 2] for k in CONCAT]
        return jnp.concatenate(nodes, axis=-1)


class DartsNet(nn.Module):
    space: ClassVar[str] = "darts"

    channels: int = 36
    layers: int = 20
    num_classes: int = 10
    stem: str = "cifar"
    bn_mode: str = "fair"
    arch: tuple | None = None  # ((8 (op, input)), (8 (op, input))) for normal, reduce
    bn_momentum: float = 0.9
    single_path: bool = True  # supernet: run only the chosen op of each edge (see Edge)

    @nn.compact
    def __call__(self, x, encoding=None, *, mode: ForwardMode = ForwardMode()):
        check_bn_mode(self.bn_mode)
        if self.arch is None and encoding is None:
            raise ValueError(f"the supernet (arch=None) needs an `encoding` of shape {ENCODING_SHAPE}")
        c, m = self.channels, self.bn_momentum
        if self.stem == "cifar":
            x = _conv(3 * c, 3, name="stem_conv")(x)
            s0 = s1 = BatchNorm(m, name="stem_bn")(x, mode)
            reduction_prev = False
        else:
            x = _conv(c // 2, 3, 2, name="stem0_a_conv")(x)
            x = BatchNorm(m, name="stem0_a_bn")(x, mode)
            x = ReLU(name="stem0_relu")(x, mode)
            x = _conv(c, 3, 2, name="stem0_b_conv")(x)
            s0 = BatchNorm(m, name="stem0_b_bn")(x, mode)
            s1 = ReLUConvBN(c, 3, 2, m, name="stem1")(s0, mode)
            reduction_prev = True
        reductions = reduction_cells(self.layers)
        c_cur = c
        for i in range(self.layers):
            reduction = i in reductions
            c_cur = 2 * c_cur if reduction else c_cur
            kind = int(reduction)
            genes = None if self.arch is not None else encoding[kind]
            fixed = None if self.arch is None else self.arch[kind]
            s0, s1 = s1, Cell(c_cur, reduction, reduction_prev, self.bn_mode, fixed, m, self.single_path,
                              name=f"cell_{i}")(s0, s1, genes, mode)
            reduction_prev = reduction
        x = jnp.mean(s1, axis=(-3, -2))
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.lecun_normal(), name="classifier")(x)


# ---------------------------------------------------------------------- construction

def make_network(*, setting: str = "cifar", channels: int | None = None, layers: int | None = None,
                 num_classes: int | None = None, bn_mode: str = "fair", arch=None,
                 bn_momentum: float = 0.9) -> DartsNet:
    """Validated constructor. ``setting`` gives the stem and the defaults (``cifar``: C=36,
    20 cells; ``imagenet``: C=48, 14 cells, three stride-2 stem convs); ``arch`` None
    (supernet), a genotype string or a ``(2, 8, 2)`` encoding."""
    check_bn_mode(bn_mode)
    if setting not in SETTINGS:
        raise ValueError(f"DARTS setting (model.skeleton) must be one of {tuple(SETTINGS)}, got {setting!r}")
    s = SETTINGS[setting]
    channels = s.channels if channels is None else int(channels)
    layers = s.layers if layers is None else int(layers)
    num_classes = s.num_classes if num_classes is None else int(num_classes)
    if channels < 2 or channels % 2 or layers < 3 or num_classes < 1:
        raise ValueError(f"DARTS needs even channels >= 2, layers >= 3, classes >= 1; got {channels}, {layers}, "
                         f"{num_classes}")
    if arch is not None:
        enc = DartsSpace().parse(arch)
        arch = tuple(tuple((int(op), int(src)) for op, src in enc[kind]) for kind in range(2))
    return DartsNet(channels, layers, num_classes, s.stem, bn_mode, arch, bn_momentum)


def build_network(model_config, num_classes: int) -> DartsNet:
    """The network contract: ``model.channels`` = C, ``model.cells_per_stage`` = N normal cells
    per stage (``3N + 2`` cells), ``model.skeleton`` = ``cifar`` (default) or ``imagenet`` stem."""
    m = model_config
    if int(m.cells_per_stage) < 1:
        raise ValueError(f"model.cells_per_stage (normal cells per stage) must be >= 1, got {m.cells_per_stage}")
    return make_network(setting=m.skeleton or "cifar", channels=m.channels, layers=3 * int(m.cells_per_stage) + 2,
                        num_classes=num_classes, bn_mode=m.bn_mode, arch=m.arch, bn_momentum=m.bn_momentum)


def cost_settings(net: DartsNet, input_size: int) -> dict:
    """Keyword arguments of :meth:`DartsSpace.cost` describing ``net`` on ``input_size`` images."""
    return {"setting": net.stem, "channels": net.channels, "layers": net.layers, "num_classes": net.num_classes,
            "input_size": int(input_size)}


def init_variables(net: DartsNet, key, input_shape) -> dict:
    """``{'params', 'batch_stats'}`` for inputs ``input_shape`` (no batch), drawn without
    compiling the forward (:func:`fbnas_jax.models.init.init_from_shapes`)."""
    x = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
    enc = None if net.arch is not None else jnp.asarray(DartsSpace().parse("DARTS_V2"))
    return init_from_shapes(net, key, x, enc)


# ---------------------------------------------------------------------- BN indicators

def bn_table(params, batch_stats, *, net: DartsNet, kind: str = "gamma"):
    """``T[cell kind, node, input, op]`` (``(2, 4, 5, 8)`` float32): mean |gamma| (``"gamma"``)
    or mean |gamma| / sqrt(var + eps) (``"trainability"``) of each op's last BN, summed over
    the cells of that kind (they share the genotype); 0 for ops without a BN. Reads the
    supernet's stacked edge groups (:func:`edge_groups`)."""
    if kind not in ("gamma", "trainability"):
        raise ValueError(f"kind must be 'gamma' or 'trainability', got {kind!r}")
    reductions = reduction_cells(net.layers)
    table = jnp.zeros((2, NUM_NODES, NUM_NODES + 1, NUM_OPS), jnp.float32)
    for cell in range(net.layers):
        reduction = cell in reductions
        for group, edges in edge_groups(reduction).items():
            stride = 2 if group == "strided_edges" else 1
            node_idx = np.asarray([i for i, _ in edges])
            input_idx = np.asarray([j for _, j in edges])
            for k, op in enumerate(OPS):
                path = last_bn_path(op, stride, net.bn_mode)
                if path is None:
                    continue
                node_p, node_s = params[f"cell_{cell}"][group], batch_stats[f"cell_{cell}"][group]
                for key in path:
                    node_p, node_s = node_p[key], node_s[key]
                g = jnp.abs(node_p["scale"].astype(jnp.float32))  # (edges, C)
                if kind == "trainability":
                    g = g * jax.lax.rsqrt(node_s["var"].astype(jnp.float32) + BN_EPS)
                table = table.at[int(reduction), node_idx, input_idx, k].add(jnp.mean(g, axis=-1))
    return table


def bn_scores(params, batch_stats, encodings, *, net: DartsNet, kind: str = "gamma"):
    """``(n,)`` BN-NAS ``gamma`` / FBN-NAS ``trainability``: the sum over both cell kinds and
    all 8 edges of the table entry of the chosen ``(op, input)``."""
    table = bn_table(params, batch_stats, net=net, kind=kind)
    enc = jnp.asarray(encodings, jnp.int32)  # (n, 2, 8, 2)
    kinds = jnp.arange(2)[None, :, None]
    nodes = (jnp.arange(8) // 2)[None, None, :]
    return jnp.sum(table[kinds, nodes, enc[..., 1], enc[..., 0]], axis=(1, 2))


# ---------------------------------------------------------------------- parameter layout

def _supernet_path(path: tuple, reductions) -> tuple[tuple, int | None]:
    """Supernet path and stack index of a stand-alone variable path (``[collection/]cell_c/edge_i_j/...``)."""
    for at in (0, 1):  # a variables tree starts with the collection, a params tree with the cell
        if len(path) > at + 1 and path[at].startswith("cell_") and path[at + 1].startswith("edge_"):
            i, j = (int(v) for v in path[at + 1].split("_")[1:])
            group, index = edge_position(int(path[at].split("_")[1]) in reductions, i, j)
            return tuple(path[:at + 1]) + (group,) + tuple(path[at + 2:]), index
    return tuple(path), None


def subnet_variables(supernet_variables: dict, standalone_variables: dict, *, layers: int) -> dict:
    """The stand-alone net's variables cut out of the supernet's (same structure as
    ``standalone_variables``, values from the supernet).

    Layout: a stand-alone cell keeps one sub-tree per chosen edge, ``cell_c/edge_{i}_{j}/<op>/...``;
    the supernet stacks its edges, ``cell_c/<group>/<op>/...`` with a leading axis over the
    edges of the group in :func:`edge_groups` order (:func:`edge_position` maps ``(i, j)``);
    everything else (stems, preprocessing, classifier) has the same path in both."""
    reductions = reduction_cells(layers)
    return cut_subnet(supernet_variables, standalone_variables, lambda path: _supernet_path(path, reductions))


def merge_subnet_variables(supernet_variables: dict, standalone_variables: dict, *, layers: int) -> dict:
    """The supernet's variables with the stand-alone net's written over its sub-tree (the
    inverse of :func:`subnet_variables`): e.g. BNs trained stand-alone, read by :func:`bn_table`."""
    reductions = reduction_cells(layers)
    return paste_subnet(supernet_variables, standalone_variables, lambda path: _supernet_path(path, reductions))


def genotype_of(net: DartsNet) -> str:
    """The genotype string of a stand-alone net."""
    import numpy as np

    return DartsSpace().to_string(np.asarray(net.arch, np.int32))

