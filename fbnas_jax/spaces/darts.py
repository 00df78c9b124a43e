"""The DARTS cell search space as data (pure NumPy, no networks).

A network stacks ``layers`` cells; those at 1/3 and 2/3 of the depth are *reduction* cells
(stride 2, channels doubled), all others *normal* cells, and every normal (resp. reduction)
cell shares one genotype. A cell has two inputs (the outputs of the two previous cells,
states 0 and 1, preprocessed to ``C`` channels) and 4 intermediate nodes (states 2..5);
node ``i`` sums two edges, each ``(op, input)`` with ``input`` an earlier state (0..i+1,
the two distinct) and ``op`` one of the 8 DARTS primitives :data:`OPS`. The cell output
concatenates the 4 intermediate nodes (``concat = [2, 3, 4, 5]``).

Representations, convertible both ways:

* **encoding**: ``int32`` of shape ``(2, 8, 2)``: ``[cell, edge] = (op index, input)``
  with cell 0 = normal, 1 = reduce, and edges ``2k, 2k+1`` feeding node ``k + 2``;
* **genotype** (the DARTS code's notation)::

    Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
             reduce=[('max_pool_3x3', 0), ...], reduce_concat=[2, 3, 4, 5])

  (``range(2, 6)`` is accepted for the concats; the names ``DARTS_V1`` / ``DARTS_V2`` too).

The two edges of a node are summed, so their order does not matter: :meth:`DartsSpace.key`
sorts them (and gives a ``none`` edge the smallest input it could have).

Cost model (:func:`cost_counts`), as the DARTS code builds ``NetworkCIFAR`` /
``NetworkImageNet`` without the auxiliary head:

* **params** = every parameter but the auxiliary head's (``utils.count_parameters_in_MB``):
  conv kernels (no bias), 2 per BN channel (all BNs affine in the evaluation network), the
  classifier's weight and bias. DARTS_V2 on CIFAR-10 (C=36, 20 cells) = 3,349,342 (test);
* **FLOPs** = multiply-adds of every convolution (depthwise ``C * k * k * H_out * W_out``,
  pointwise/full ``C_in/groups * C_out * k * k * H_out * W_out``) plus the classifier's
  weights; pooling, BN, ReLU, the ``none`` op and additions are free. DARTS_V2 comes out at
  528.36 M on CIFAR-10 (the figure usually quoted) and 529.91 M in the ImageNet mobile setting
  (C=48, 14 cells, 224x224); the DARTS paper lists 574 M for the latter, which this standard
  count does not reproduce (its counting rule is not published).

Ops (as the DARTS ``operations.py``): ``sep_conv_kxk`` = twice ReLU-dwconv(k)-conv1x1-BN
(stride on the first); ``dil_conv_kxk`` = ReLU-dwconv(k, dilation 2)-conv1x1-BN; pools are
3x3 with padding 1; ``skip_connect`` is the identity, or ``FactorizedReduce`` (ReLU, two
strided 1x1 convs to C/2 each on offset grids, concat, BN) at stride 2. A reduction cell
applies stride 2 to edges from its inputs (states 0, 1). Cell inputs are preprocessed by
ReLU-conv1x1-BN, or FactorizedReduce for state 0 after a reduction cell.
"""
from __future__ import annotations

import ast
import functools
from typing import Any, NamedTuple

import numpy as np

from fbnas_jax.spaces.base import Cost, SearchSpace, SearchSpaceError, SpaceOption, register

OPS: tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                        "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
OP_INDEX = {name: i for i, name in enumerate(OPS)}
NUM_OPS = len(OPS)
NONE = OP_INDEX["none"]
NUM_NODES = 4
EDGES_PER_CELL = 2 * NUM_NODES
CONCAT = (2, 3, 4, 5)
CELL_KINDS = ("normal", "reduce")
ENCODING_SHAPE = (2, EDGES_PER_CELL, 2)
#: input choices of edge e: states 0 .. e // 2 + 1
NUM_INPUTS = np.asarray([e // 2 + 2 for e in range(EDGES_PER_CELL)])

#: The DARTS paper's cells (``genotypes.py`` of the DARTS code).
GENOTYPES: dict[str, str] = {
    "DARTS_V1": ("Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), "
                 "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
                 "('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
                 "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
                 "('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"),
    "DARTS_V2": ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
                 "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
                 "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
                 "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
                 "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"),
}
GENOTYPES["DARTS"] = GENOTYPES["DARTS_V2"]


class Setting(NamedTuple):
    """Macro network of the evaluation setting."""

    channels: int  # C of the first cells
    layers: int  # number of cells
    num_classes: int
    input_size: int
    stem: str  # "cifar" (one 3x3 conv to 3C) | "imagenet" (three stride-2 3x3 convs)


SETTINGS: dict[str, Setting] = {
    "cifar": Setting(36, 20, 10, 32, "cifar"),
    "imagenet": Setting(48, 14, 1000, 224, "imagenet"),
}


def reduction_cells(layers: int) -> tuple[int, ...]:
    """Indices of the reduction cells (``layers // 3`` and ``2 * layers // 3``, as DARTS)."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


# ---------------------------------------------------------------------- cost model

def _pool_out(size: int, stride: int) -> int:
    return (size + 2 - 3) // stride + 1


def op_counts(op: str, c: int, stride: int, size_in: int) -> tuple[int, int]:
    """(params, multiply-adds) of one DARTS op on ``c`` channels."""
    size = _pool_out(size_in, stride)  # every op keeps 'same' geometry: out = ceil(in / stride)
    if op in ("none", "max_pool_3x3", "avg_pool_3x3"):
        return 0, 0
    if op == "skip_connect":
        if stride == 1:
            return 0, 0
        return factorized_reduce_counts(c, c, size)
    k = int(op[-1])
    unit_p = c * k * k + c * c + 2 * c  # dwconv + conv1x1 + BN
    unit_f = (c * k * k + c * c) * size * size
    if op.startswith("sep_conv"):
        return 2 * unit_p, 2 * unit_f
    return unit_p, unit_f  # dil_conv


def factorized_reduce_counts(c_in: int, c_out: int, size_out: int) -> tuple[int, int]:
    """Two 1x1 stride-2 convs ``c_in -> c_out / 2`` (concatenated) + BN."""
    if c_out % 2:
        raise SearchSpaceError(f"FactorizedReduce needs an even number of channels, got {c_out}")
    return c_in * c_out + 2 * c_out, c_in * c_out * size_out * size_out


class CostTable(NamedTuple):
    """``cost = base + sum_{cell kind, edge} op_table[kind, op, from_cell_input]`` (integers),
    summed over all cells of that kind; ``from_cell_input`` matters only in reduction cells."""

    base_params: int
    base_flops: int
    op_params: np.ndarray  # (2, NUM_OPS, 2) int64: [kind, op, input < 2]
    op_flops: np.ndarray


@functools.lru_cache(maxsize=32)
def cost_table(channels: int, layers: int, num_classes: int, input_size: int, stem: str) -> CostTable:
    for name, value, low in (("channels", channels, 1), ("layers", layers, 3), ("num_classes", num_classes, 1),
                             ("input_size", input_size, 8)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise SearchSpaceError(f"DARTS {name} must be an integer >= {low}, got {value!r}")
    if stem not in ("cifar", "imagenet"):
        raise SearchSpaceError(f"DARTS stem must be 'cifar' or 'imagenet', got {stem!r}")
    c = int(channels)
    params = flops = 0
    if stem == "cifar":
        size = input_size
        c_stem = 3 * c
        params += 3 * c_stem * 9 + 2 * c_stem
        flops += 3 * c_stem * 9 * size * size
        c_pp, c_p, size_pp, size_p, reduction_prev = c_stem, c_stem, size, size, False
    else:
        if c % 2:
            raise SearchSpaceError(f"the ImageNet stem needs even channels, got {c}")
        s1 = _pool_out(input_size, 2)
        s2 = _pool_out(s1, 2)
        s3 = _pool_out(s2, 2)
        params += 3 * (c // 2) * 9 + c + (c // 2) * c * 9 + 2 * c  # stem0: conv-BN-ReLU-conv-BN
        flops += 3 * (c // 2) * 9 * s1 * s1 + (c // 2) * c * 9 * s2 * s2
        params += c * c * 9 + 2 * c  # stem1: ReLU-conv-BN
        flops += c * c * 9 * s3 * s3
        c_pp, c_p, size_pp, size_p, reduction_prev = c, c, s2, s3, True
    op_p = np.zeros((2, NUM_OPS, 2), np.int64)
    op_f = np.zeros((2, NUM_OPS, 2), np.int64)
    reductions = reduction_cells(layers)
    c_cur = c
    for i in range(layers):
        reduction = i in reductions
        if reduction:
            c_cur *= 2
        # preprocess0 / preprocess1 (on inputs of size size_pp / size_p, output size_p)
        if reduction_prev:
            p, f = factorized_reduce_counts(c_pp, c_cur, size_p)
        else:
            p, f = c_pp * c_cur + 2 * c_cur, c_pp * c_cur * size_p * size_p
        params, flops = params + p, flops + f
        params += c_p * c_cur + 2 * c_cur
        flops += c_p * c_cur * size_p * size_p
        kind = int(reduction)
        size_out = _pool_out(size_p, 2) if reduction else size_p
        for k, op in enumerate(OPS):
            # edges from the cell inputs run at size_p (stride 2 in a reduction cell), edges
            # from intermediate nodes at the cell's output size
            p, f = op_counts(op, c_cur, 2 if reduction else 1, size_p)
            op_p[kind, k, 1] += p
            op_f[kind, k, 1] += f
            p, f = op_counts(op, c_cur, 1, size_out)
            op_p[kind, k, 0] += p
            op_f[kind, k, 0] += f
        c_pp, c_p = c_p, len(CONCAT) * c_cur
        size_pp, size_p = size_p, size_out
        reduction_prev = reduction
    params += c_p * num_classes + num_classes
    flops += c_p * num_classes
    return CostTable(int(params), int(flops), op_p, op_f)


# ---------------------------------------------------------------------- genotype strings

def _literal(node: ast.AST, what: str) -> Any:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        try:
            return list(range(*[ast.literal_eval(a) for a in node.args]))
        except (ValueError, TypeError):
            raise SearchSpaceError(f"{what}: cannot read {ast.unparse(node)!r}") from None
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        raise SearchSpaceError(f"{what}: cannot read {ast.unparse(node)!r} (want a list of ('op', input) pairs)") from None


def parse_genotype(text: str) -> dict[str, Any]:
    """``Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)`` -> dict."""
    fields = ("normal", "normal_concat", "reduce", "reduce_concat")
    stripped = text.strip()
    if stripped in GENOTYPES:
        stripped = GENOTYPES[stripped]
    try:
        tree = ast.parse(stripped, mode="eval").body
    except SyntaxError:
        raise SearchSpaceError(f"malformed genotype {text!r}: not a Genotype(...) expression") from None
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "Genotype"):
        known = ", ".join(GENOTYPES)
        raise SearchSpaceError(f"a DARTS genotype looks like Genotype(normal=[('sep_conv_3x3', 0), ...], "
                               f"normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5]) "
                               f"or is one of {known}; got {text!r}")
    if len(tree.args) > len(fields):
        raise SearchSpaceError(f"malformed genotype: at most {len(fields)} positional fields")
    out = {name: _literal(arg, name) for name, arg in zip(fields, tree.args)}
    for kw in tree.keywords:
        if kw.arg not in fields:
            raise SearchSpaceError(f"malformed genotype: unknown field {kw.arg!r} (fields: {', '.join(fields)})")
        if kw.arg in out:
            raise SearchSpaceError(f"malformed genotype: field {kw.arg!r} given twice")
        out[kw.arg] = _literal(kw.value, kw.arg)
    missing = [f for f in ("normal", "reduce") if f not in out]
    if missing:
        raise SearchSpaceError(f"malformed genotype: missing {', '.join(missing)}")
    return out


class DartsSpace(SearchSpace):
    """Normal + reduction cell of 4 nodes, two (op, input) edges each, 8 ops."""

    name = "darts"
    title = "DARTS"
    encoding_shape = ENCODING_SHAPE
    #: the setting fixes C, cells, classes and input size (``--setting``)
    cost_defaults: dict = {}
    network_module = "fbnas_jax.models.darts"
    string_name = "genotype"
    options = (SpaceOption("setting", "evaluation network: cifar (C=36, 20 cells, 32x32, 10 classes) | "
                           "imagenet (C=48, 14 cells, 224x224, 1000 classes)", "cifar", tuple(SETTINGS)),)

    def __init__(self, setting: str = "cifar"):
        if setting not in SETTINGS:
            raise SearchSpaceError(f"unknown DARTS setting {setting!r}; choose from {', '.join(SETTINGS)}")
        self.setting_name = setting
        self.setting = SETTINGS[setting]
        # distinct canonical nodes with n inputs: two real edges C(n, 2) * 7^2, one real edge
        # and a `none` n * 7, two `none` 1; cells multiply, two cell kinds
        per_cell = 1
        for node in range(NUM_NODES):
            n_in, real = node + 2, NUM_OPS - 1
            per_cell *= n_in * (n_in - 1) // 2 * real**2 + n_in * real + 1
        self.size = per_cell**2

    def configure(self, setting: str | None = None, **rest: Any) -> "DartsSpace":
        given = {k: v for k, v in rest.items() if v is not None}
        if given:
            raise SearchSpaceError(f"unknown darts option(s) {sorted(given)}; options: setting")
        return self if setting is None or setting == self.setting_name else DartsSpace(setting)

    # ---------------------------------------------------------- representation
    def validate(self, encoding: Any) -> np.ndarray:
        arr = np.asarray(encoding)
        if arr.dtype.kind not in "biuf":
            raise SearchSpaceError(f"a DARTS encoding must be numeric, got dtype {arr.dtype}")
        if arr.shape != ENCODING_SHAPE:
            raise SearchSpaceError(f"a DARTS encoding has shape {ENCODING_SHAPE} ([cell, edge] = (op, input)); "
                                   f"got shape {arr.shape}")
        if arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
            raise SearchSpaceError("DARTS encoding entries must be integers")
        enc = arr.astype(np.int32)
        for cell in range(2):
            kind = CELL_KINDS[cell]
            for e in range(EDGES_PER_CELL):
                op, src = int(enc[cell, e, 0]), int(enc[cell, e, 1])
                node = e // 2 + 2
                if not 0 <= op < NUM_OPS:
                    raise SearchSpaceError(f"{kind} edge {e}: op index {op} not in 0..{NUM_OPS - 1} ({', '.join(OPS)})")
                if not 0 <= src < node:
                    raise SearchSpaceError(f"{kind} edge {e}: node {node} can take inputs 0..{node - 1}, got {src}")
            for node in range(NUM_NODES):
                if enc[cell, 2 * node, 1] == enc[cell, 2 * node + 1, 1]:
                    raise SearchSpaceError(f"{kind} node {node + 2}: its two edges both come from state "
                                           f"{int(enc[cell, 2 * node, 1])}; DARTS nodes take two distinct inputs")
        return enc

    def validate_batch(self, encodings: Any) -> np.ndarray:
        arr = np.asarray(encodings)
        if arr.ndim != 4 or arr.shape[1:] != ENCODING_SHAPE:
            raise SearchSpaceError(f"expected DARTS encodings of shape (n, 2, 8, 2); got {arr.shape}")
        if arr.shape[0] == 0:
            return arr.astype(np.int32)
        enc = arr.astype(np.int32)
        ops, src = enc[..., 0], enc[..., 1]
        ok = ((ops >= 0) & (ops < NUM_OPS) & (src >= 0) & (src < NUM_INPUTS)).all(axis=(1, 2))
        ok &= (src[:, :, 0::2] != src[:, :, 1::2]).all(axis=(1, 2))
        ok &= np.all(np.mod(arr, 1) == 0, axis=(1, 2, 3)) if arr.dtype.kind == "f" else True
        if not ok.all():
            self.validate(arr[int(np.flatnonzero(~ok)[0])])  # raises with the precise message
        return enc

    def to_string(self, encoding: Any) -> str:
        enc = self.validate(encoding)
        cells = [", ".join(f"('{OPS[op]}', {src})" for op, src in enc[c]) for c in range(2)]
        concat = ", ".join(map(str, CONCAT))
        return (f"Genotype(normal=[{cells[0]}], normal_concat=[{concat}], "
                f"reduce=[{cells[1]}], reduce_concat=[{concat}])")

    def from_string(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise SearchSpaceError(f"a genotype must be a string, got {type(text).__name__}")
        g = parse_genotype(text)
        enc = np.zeros(ENCODING_SHAPE, np.int32)
        for cell, kind in enumerate(CELL_KINDS):
            edges = g[kind]
            if not isinstance(edges, (list, tuple)) or len(edges) != EDGES_PER_CELL:
                raise SearchSpaceError(f"genotype {kind}: want {EDGES_PER_CELL} ('op', input) pairs "
                                       f"(two per node, 4 nodes), got {edges!r}")
            for e, item in enumerate(edges):
                if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
                        and isinstance(item[1], int) and not isinstance(item[1], bool)):
                    raise SearchSpaceError(f"genotype {kind} edge {e}: want ('op', input), got {item!r}")
                if item[0] not in OP_INDEX:
                    raise SearchSpaceError(f"genotype {kind} edge {e}: unknown op {item[0]!r}; "
                                           f"DARTS ops are {', '.join(OPS)}")
                enc[cell, e] = (OP_INDEX[item[0]], item[1])
            concat = g.get(f"{kind}_concat", list(CONCAT))
            if list(concat) != list(CONCAT):
                raise SearchSpaceError(f"genotype {kind}_concat must be {list(CONCAT)} (all intermediate "
                                       f"nodes, as in this space); got {list(concat)}")
        return self.validate(enc)

    def canonical(self, encoding: Any) -> np.ndarray:
        """Edges of a node sorted by input; a ``none`` edge takes the smallest input left free."""
        enc = self.validate(encoding).copy()
        for cell in range(2):
            for node in range(NUM_NODES):
                pair = enc[cell, 2 * node: 2 * node + 2].copy()
                nones = pair[:, 0] == NONE
                if nones.all():
                    pair[:, 1] = (0, 1)
                elif nones.any():
                    other = int(pair[~nones][0, 1])
                    pair[nones, 1] = 0 if other != 0 else 1
                order = np.lexsort((pair[:, 0], pair[:, 1]))
                enc[cell, 2 * node: 2 * node + 2] = pair[order]
        return enc

    def describe(self, encoding: Any) -> dict[str, Any]:
        out = super().describe(encoding)
        out["setting"] = self.setting_name
        return out

    # ---------------------------------------------------------- sampling and EA moves
    def _sample_inputs(self, rng: np.random.Generator, n: int) -> np.ndarray:
        src = np.empty((n, 2, EDGES_PER_CELL), np.int32)
        for node in range(NUM_NODES):
            n_in = node + 2
            first = rng.integers(0, n_in, size=(n, 2))
            second = rng.integers(0, n_in - 1, size=(n, 2))
            second = second + (second >= first)  # uniform over inputs != first
            src[:, :, 2 * node], src[:, :, 2 * node + 1] = first, second
        return src

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        n = int(n)
        out = np.empty((n,) + ENCODING_SHAPE, np.int32)
        out[..., 0] = rng.integers(0, NUM_OPS, size=(n, 2, EDGES_PER_CELL))
        out[..., 1] = self._sample_inputs(rng, n)
        return out

    def fair_group(self, rng: np.random.Generator) -> np.ndarray:
        """FairNAS strict fairness over the *ops*: 8 architectures in which every edge position
        of both cells runs each of the 8 ops exactly once. Inputs are drawn uniformly per
        architecture: input choices differ per node (2..5) and must be distinct, so no strict
        fairness exists for them; with fair BN every op -- not every input -- owns the BNs."""
        out = np.empty((NUM_OPS,) + ENCODING_SHAPE, np.int32)
        for cell in range(2):
            for e in range(EDGES_PER_CELL):
                out[:, cell, e, 0] = rng.permutation(NUM_OPS)
        out[..., 1] = self._sample_inputs(rng, NUM_OPS)
        return out

    def mutate(self, rng: np.random.Generator, encoding: Any, prob: float) -> np.ndarray:
        """Each op and each input re-drawn with probability ``prob`` (inputs stay distinct)."""
        child = self.validate(encoding).copy()
        for cell in range(2):
            for e in range(EDGES_PER_CELL):
                if rng.random() < prob:
                    child[cell, e, 0] = rng.integers(0, NUM_OPS)
                if rng.random() < prob:
                    n_in = e // 2 + 2
                    other = child[cell, e ^ 1, 1]
                    pick = rng.integers(0, n_in - 1)
                    child[cell, e, 1] = pick + (pick >= other)
        return child

    def crossover(self, rng: np.random.Generator, a: Any, b: Any) -> np.ndarray:
        """Uniform crossover over nodes (a node's two edges travel together, so inputs stay distinct)."""
        a, b = self.validate(a), self.validate(b)
        take_a = rng.random((2, NUM_NODES)) < 0.5
        mask = np.repeat(take_a, 2, axis=1)[:, :, None]
        return np.where(mask, a, b).astype(np.int32)

    # ---------------------------------------------------------- cost
    def network_setting(self, **network: Any) -> Setting:
        unknown = sorted(set(network) - {"setting", "channels", "layers", "num_classes", "input_size"})
        if unknown:
            raise SearchSpaceError(f"unknown DARTS cost setting(s) {unknown}; valid: setting, channels, layers, "
                                   f"num_classes, input_size")
        base = self.configure(network.get("setting")).setting
        changes = {k: network[k] for k in ("channels", "layers", "num_classes", "input_size")
                   if network.get(k) is not None}
        return base._replace(**changes)

    def cost(self, encoding: Any, **network: Any) -> Cost:
        """Params / multiply-adds (millions) of the evaluation network (module docstring)."""
        params, flops = self.costs(np.asarray(encoding)[None], **network)
        return Cost(float(params[0]), float(flops[0]))

    def costs(self, encodings: Any, **network: Any) -> tuple[np.ndarray, np.ndarray]:
        params, flops = self.exact_costs(encodings, **network)
        return params / 1e6, flops / 1e6

    def exact_costs(self, encodings: Any, **network: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(params, multiply-adds)`` as int64 arrays."""
        enc = self.validate_batch(encodings)
        table = cost_table(*self.network_setting(**network))
        kind = np.arange(2)[None, :, None]
        from_input = (enc[..., 1] < 2).astype(np.int64)
        params = table.base_params + table.op_params[kind, enc[..., 0], from_input].sum(axis=(1, 2))
        flops = table.base_flops + table.op_flops[kind, enc[..., 0], from_input].sum(axis=(1, 2))
        return params, flops


SPACE = register(DartsSpace())
