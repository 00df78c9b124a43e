"""The NAS-Bench-101 cell search space as data (pure NumPy), as google-research/nasbench defines it.

A cell is a DAG on at most 7 vertices given by an upper-triangular adjacency matrix: vertex 0
is the input, vertex 6 the output, interior vertices 1..5 are labelled ``conv3x3-bn-relu``,
``conv1x1-bn-relu`` or ``maxpool3x3``. Vertices that are not on some input-to-output path do
not compute anything and are *pruned* (``ModelSpec._prune``); a cell is valid when the input
still reaches the output and the pruned cell has at most 9 edges. Isomorphic cells are one
architecture, identified by the benchmark's MD5 hash (``graph_util.hash_module``: iterated
hashing of (out-degree, in-degree, label) over neighbourhoods), which this module recomputes
exactly, so ``nb101_hash`` of a benchmark table is the :meth:`NB101Space.key` of its row.
There are 423,624 distinct valid cells.

Encoding (fixed shape, so a supernet can take it as input and be vmapped): ``(26,)`` int32,

* ``enc[0:21]``: the 21 upper-triangular adjacency bits of the 7x7 matrix, row-major over the
  pairs ``(i, j), i < j``: (0,1), (0,2), ..., (0,6), (1,2), ..., (5,6) (:data:`PAIRS`);
* ``enc[21:26]``: the op of vertices 1..5, an index into :data:`OPS` (the benchmark's
  canonical op order, the one its hash labels use).

Vertices keep their position: an encoding with unused vertices denotes the same network as
its pruned form. A pruned cell of ``V < 7`` vertices is placed at positions ``0..V-2`` plus
the output at 6 (unused positions: no edges, op 0); that is :meth:`NB101Space.canonical`.

String form (the benchmark table's columns joined by a colon): the pruned matrix's bits
row-major, ``:``, the pruned ops joined by ``|``, e.g.
``0100110001000000010010000010000001000000010000000:input|conv3x3-bn-relu|maxpool3x3|...|output``.
Parsing accepts any valid spec of 2..7 vertices (pruned or not).
"""
from __future__ import annotations

import functools
import hashlib
from typing import Sequence

import numpy as np

from fbnas_jax.spaces.base import Cost, SearchSpace, SearchSpaceError, register

OPS: tuple[str, ...] = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
OP_INDEX = {name: i for i, name in enumerate(OPS)}
INPUT, OUTPUT = "input", "output"
NUM_VERTICES = 7
MAX_EDGES = 9
PAIRS: tuple[tuple[int, int], ...] = tuple((i, j) for i in range(NUM_VERTICES) for j in range(i + 1, NUM_VERTICES))
NUM_BITS = len(PAIRS)  # 21
NUM_INTERIOR = NUM_VERTICES - 2  # 5
ENCODING_LEN = NUM_BITS + NUM_INTERIOR  # 26
NUM_CELLS = 423_624  # distinct valid cells (Ying et al., 2019)
_ROWS, _COLS = (np.asarray(x) for x in zip(*PAIRS))


# ----------------------------------------------------------------------------- cell structure

def matrix_of(encoding: np.ndarray) -> np.ndarray:
    """The 7x7 int adjacency matrix of an encoding (no validation)."""
    m = np.zeros((NUM_VERTICES, NUM_VERTICES), np.int64)
    m[_ROWS, _COLS] = np.asarray(encoding)[:NUM_BITS]
    return m


def live_vertices(matrix: np.ndarray) -> np.ndarray:
    """Boolean mask of vertices on some input-to-output path (``ModelSpec._prune``)."""
    v = matrix.shape[0]
    m = np.asarray(matrix) != 0
    fwd = np.zeros(v, bool)
    fwd[0] = True
    for j in range(1, v):  # upper triangular: one pass in topological order
        fwd[j] = bool((fwd[:j] & m[:j, j]).any())
    bwd = np.zeros(v, bool)
    bwd[v - 1] = True
    for i in range(v - 2, -1, -1):
        bwd[i] = bool((bwd[i + 1:] & m[i, i + 1:]).any())
    return fwd & bwd


def prune(matrix: np.ndarray, ops: Sequence[str]) -> tuple[np.ndarray, list[str]] | None:
    """(pruned matrix, pruned ops), or None when the input does not reach the output."""
    keep = live_vertices(matrix)
    if not (keep[0] and keep[-1]):
        return None
    idx = np.flatnonzero(keep)
    return np.asarray(matrix)[np.ix_(idx, idx)].astype(np.int64), [ops[i] for i in idx]


def hash_module(matrix: np.ndarray, labeling: Sequence[int]) -> str:
    """The benchmark's isomorphism-invariant MD5 hash (``nasbench.lib.graph_util.hash_module``)."""
    vertices = np.shape(matrix)[0]
    in_edges = np.sum(matrix, axis=0).tolist()
    out_edges = np.sum(matrix, axis=1).tolist()
    hashes = [hashlib.md5(str(h).encode("utf-8")).hexdigest() for h in zip(out_edges, in_edges, labeling)]
    for _ in range(vertices):
        new_hashes = []
        for v in range(vertices):
            in_neighbors = [hashes[w] for w in range(vertices) if matrix[w, v]]
            out_neighbors = [hashes[w] for w in range(vertices) if matrix[v, w]]
            new_hashes.append(hashlib.md5(
                ("".join(sorted(in_neighbors)) + "|" + "".join(sorted(out_neighbors)) + "|" + hashes[v])
                .encode("utf-8")).hexdigest())
        hashes = new_hashes
    return hashlib.md5(str(sorted(hashes)).encode("utf-8")).hexdigest()


def compute_vertex_channels(input_channels: int, output_channels: int, matrix: np.ndarray) -> list[int]:
    """Channels of every vertex of a *pruned* cell (``nasbench.lib.model_builder``).

    The output's channels are split evenly among the vertices feeding it (the first
    ``output_channels % k`` of them get one more); every other interior vertex gets the
    maximum of its successors' channels; the input keeps ``input_channels``.
    """
    v = np.shape(matrix)[0]
    ch = [0] * v
    ch[0], ch[v - 1] = int(input_channels), int(output_channels)
    if v == 2:
        return ch
    in_degree = np.sum(np.asarray(matrix)[1:], axis=0)
    interior, correction = divmod(int(output_channels), int(in_degree[v - 1]))
    for t in range(1, v - 1):
        if matrix[t, v - 1]:
            ch[t] = interior + (1 if correction > 0 else 0)
            correction -= 1 if correction > 0 else 0
    for t in range(v - 3, 0, -1):
        if not matrix[t, v - 1]:
            for dst in range(t + 1, v - 1):
                if matrix[t, dst]:
                    ch[t] = max(ch[t], ch[dst])
    return ch


def position_channels(encoding: np.ndarray, input_channels: int, output_channels: int) -> np.ndarray:
    """``compute_vertex_channels`` of the pruned cell mapped back to the 7 positions (0 = unused)."""
    m = matrix_of(encoding)
    keep = live_vertices(m)
    idx = np.flatnonzero(keep)
    ch = compute_vertex_channels(input_channels, output_channels, m[np.ix_(idx, idx)])
    out = np.zeros(NUM_VERTICES, np.int64)
    out[idx] = ch
    return out


@functools.lru_cache(maxsize=None)
def full_dags(v: int) -> np.ndarray:
    """Every ``(v, v)`` upper-triangular matrix whose vertices all lie on input-output paths
    (``graph_util.is_full_dag``: only the output lacks out-edges, only the input lacks in-edges)
    with at most 9 edges, shape ``(count, v, v)``. Counts for v = 2..7: 1, 2, 10, 121, 1545, 4793."""
    pairs = [(i, j) for i in range(v) for j in range(i + 1, v)]
    codes = np.arange(2 ** len(pairs), dtype=np.uint32)
    ok = np.bitwise_count(codes) <= MAX_EDGES
    for vertex in range(v):
        out_mask = sum(1 << k for k, (i, _) in enumerate(pairs) if i == vertex)
        in_mask = sum(1 << k for k, (_, j) in enumerate(pairs) if j == vertex)
        if vertex < v - 1:
            ok &= (codes & np.uint32(out_mask)) != 0
        if vertex > 0:
            ok &= (codes & np.uint32(in_mask)) != 0
    codes = codes[ok]
    mats = np.zeros((len(codes), v, v), np.int64)
    for k, (i, j) in enumerate(pairs):
        mats[:, i, j] = (codes >> np.uint32(k)) & 1
    return mats


# ----------------------------------------------------------------------------- the space

def _op_names(encoding: np.ndarray) -> list[str]:
    return [INPUT] + [OPS[k] for k in np.asarray(encoding)[NUM_BITS:]] + [OUTPUT]


def _spec_error(matrix: np.ndarray) -> str | None:
    """Why a 7x7 upper-triangular matrix is not a valid cell, or None."""
    keep = live_vertices(matrix)
    if not (keep[0] and keep[-1]):
        return "the input does not reach the output"
    idx = np.flatnonzero(keep)
    edges = int(np.asarray(matrix)[np.ix_(idx, idx)].sum())
    if edges > MAX_EDGES:
        return f"the pruned cell has {edges} edges (at most {MAX_EDGES})"
    return None


class NB101Space(SearchSpace):
    """NAS-Bench-101 cells (see the module docstring). Not enumerated: sampled by rejection."""

    name = "nb101"
    encoding_shape = (ENCODING_LEN,)
    network_module = "fbnas_jax.models.nb101"
    size = NUM_CELLS
    string_name = "cell (adjacency:ops)"
    title = "NAS-Bench-101"
    table_columns = ("adjacency", "ops")
    cost_defaults = {"num_classes": 10, "channels": 128, "cells_per_stage": 3, "input_size": 32, "num_stacks": 3}

    # ------------------------------------------------------------------ representation

    def validate(self, encoding) -> np.ndarray:
        arr = np.asarray(encoding)
        if arr.shape != (ENCODING_LEN,):
            raise SearchSpaceError(
                f"an NB101 encoding has shape ({ENCODING_LEN},): {NUM_BITS} adjacency bits then "
                f"{NUM_INTERIOR} op indices; got shape {arr.shape}")
        if arr.dtype.kind not in "biuf" or (arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0)):
            raise SearchSpaceError(f"NB101 encoding entries must be integers, got {arr.tolist()}")
        arr = arr.astype(np.int32)
        bits, ops = arr[:NUM_BITS], arr[NUM_BITS:]
        if ((bits < 0) | (bits > 1)).any():
            raise SearchSpaceError(f"NB101 adjacency bits must be 0 or 1, got {bits.tolist()}")
        if ((ops < 0) | (ops >= len(OPS))).any():
            raise SearchSpaceError(f"NB101 op indices must lie in 0..{len(OPS) - 1} ({list(OPS)}), "
                                   f"got {ops.tolist()}")
        err = _spec_error(matrix_of(arr))
        if err:
            raise SearchSpaceError(f"invalid NB101 cell: {err} (encoding {arr.tolist()})")
        return arr

    def pruned(self, encoding) -> tuple[np.ndarray, list[str]]:
        """The benchmark's pruned (matrix, ops) of a valid encoding."""
        enc = self.validate(encoding)
        return prune(matrix_of(enc), _op_names(enc))

    def to_string(self, encoding) -> str:
        matrix, ops = self.pruned(encoding)
        return "".join(str(int(b)) for b in matrix.reshape(-1)) + ":" + "|".join(ops)

    def from_string(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise SearchSpaceError(f"an NB101 cell string must be str, got {type(text).__name__}")
        bits, sep, ops_text = text.strip().partition(":")
        if not sep:
            raise SearchSpaceError(f"malformed NB101 cell {text!r}: expected '<adjacency bits>:<op|op|...>'")
        ops = ops_text.split("|")
        v = len(ops)
        if not 2 <= v <= NUM_VERTICES:
            raise SearchSpaceError(f"malformed NB101 cell {text!r}: {v} vertices (2..{NUM_VERTICES} allowed)")
        if len(bits) != v * v or set(bits) - {"0", "1"}:
            raise SearchSpaceError(f"malformed NB101 cell {text!r}: the adjacency must be {v * v} characters "
                                   f"0/1 for {v} vertices, got {len(bits)}")
        if ops[0] != INPUT or ops[-1] != OUTPUT:
            raise SearchSpaceError(f"malformed NB101 cell {text!r}: ops must start with 'input' and end with 'output'")
        unknown = [o for o in ops[1:-1] if o not in OP_INDEX]
        if unknown:
            raise SearchSpaceError(f"unknown NB101 op(s) {unknown}; interior ops are {list(OPS)}")
        matrix = np.asarray([int(c) for c in bits]).reshape(v, v)
        if np.tril(matrix).any():
            raise SearchSpaceError(f"malformed NB101 cell {text!r}: the adjacency matrix must be strictly "
                                   "upper triangular")
        return self.from_spec(matrix, ops)

    def from_spec(self, matrix, ops: Sequence[str]) -> np.ndarray:
        """Encoding of a ``(V, V)`` matrix and ``V`` op labels, ``V <= 7``: vertices ``0..V-2``
        keep their positions and the output moves to position 6."""
        matrix = np.asarray(matrix)
        v = matrix.shape[0]
        pos = list(range(v - 1)) + [NUM_VERTICES - 1]
        full = np.zeros((NUM_VERTICES, NUM_VERTICES), np.int64)
        full[np.ix_(pos, pos)] = matrix
        op_ids = np.zeros(NUM_INTERIOR, np.int32)
        for i in range(1, v - 1):
            op_ids[pos[i] - 1] = OP_INDEX[ops[i]]
        return self.validate(np.concatenate([full[_ROWS, _COLS], op_ids]).astype(np.int32))

    def from_table_row(self, values: Sequence[str]) -> np.ndarray:
        adjacency, ops = values
        return self.from_string(f"{adjacency.strip()}:{ops.strip()}")

    def canonical(self, encoding) -> np.ndarray:
        matrix, ops = self.pruned(encoding)
        return self.from_spec(matrix, ops)

    def key(self, encoding) -> str:
        """The benchmark's hash (``ModelSpec.hash_spec``) of the pruned cell."""
        matrix, ops = self.pruned(encoding)
        labeling = [-1] + [OP_INDEX[o] for o in ops[1:-1]] + [-2]
        return hash_module(matrix, labeling)

    def describe(self, encoding) -> dict:
        enc = self.validate(encoding)
        matrix, ops = prune(matrix_of(enc), _op_names(enc))
        return {"space": self.name, "arch": self.to_string(enc), "encoding": enc.tolist(),
                "hash": self.key(enc), "num_vertices": int(len(ops)), "num_edges": int(matrix.sum()),
                "matrix": matrix.tolist(), "ops": ops}

    # ------------------------------------------------------------------ sampling and EA moves

    def _valid(self, enc: np.ndarray) -> bool:
        return _spec_error(matrix_of(enc)) is None

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` cells uniform over the benchmark's labelled cells, in canonical placement.

        A labelled cell is a pruned spec: ``V`` vertices all on input-output paths, at most 9
        edges (:func:`full_dags`: 6,472 such matrices for V = 2..7), any ops -- the set the
        benchmark's generator enumerated before merging isomorphic cells. ``V`` is drawn in
        proportion to its number of labelled cells, then a matrix and ops uniformly; so a
        distinct cell is drawn in proportion to its number of labelled forms: close to, not
        exactly, uniform over the 423,624 cells (90% of draws have 7 vertices; 84% of the
        benchmark's 1,001-cell subset do). ``nasbench``'s ``random_spec`` (random bits,
        rejected until valid) is far from uniform: 10% of its draws are the trivial
        input-output cell and 0.5% have 7 vertices.
        """
        sizes = np.arange(2, NUM_VERTICES + 1)
        weights = np.asarray([len(full_dags(v)) * len(OPS) ** (v - 2) for v in sizes], np.float64)
        out = np.zeros((n, ENCODING_LEN), np.int32)
        for row, v in enumerate(rng.choice(sizes, size=n, p=weights / weights.sum())):
            dags = full_dags(int(v))
            matrix = dags[rng.integers(len(dags))]
            ops = [INPUT] + [OPS[k] for k in rng.integers(0, len(OPS), int(v) - 2)] + [OUTPUT]
            out[row] = self.from_spec(matrix, ops)
        return out

    def fair_group(self, rng: np.random.Generator) -> np.ndarray:
        """FairNAS over the vertex ops: 3 cells sharing one random valid topology, the ops of
        each vertex a random permutation of the 3 ops, so every op of every vertex trains once
        per group. Edges get no such balance: a cell's validity couples them."""
        topology = self.sample(rng, 1)[0]
        perms = np.stack([rng.permutation(len(OPS)) for _ in range(NUM_INTERIOR)])  # (5, 3)
        group = np.repeat(topology[None], len(OPS), axis=0)
        group[:, NUM_BITS:] = perms.T
        return group.astype(np.int32)

    def mutate(self, rng: np.random.Generator, encoding, prob: float, tries: int = 100) -> np.ndarray:
        """Each bit / op re-drawn with probability ``prob`` (may equal the parent's); redrawn until
        the child is a valid cell (at most ``tries`` times, else the parent is returned)."""
        parent = self.validate(encoding)
        for _ in range(tries):
            flip = rng.random(ENCODING_LEN) < prob
            fresh = np.concatenate([rng.integers(0, 2, NUM_BITS), rng.integers(0, len(OPS), NUM_INTERIOR)])
            child = np.where(flip, fresh, parent).astype(np.int32)
            if self._valid(child):
                return child
        return parent.copy()

    def crossover(self, rng: np.random.Generator, a, b, tries: int = 100) -> np.ndarray:
        """Uniform crossover of bits and ops, redrawn until valid (at most ``tries``, else ``a``)."""
        a, b = self.validate(a), self.validate(b)
        for _ in range(tries):
            child = np.where(rng.random(ENCODING_LEN) < 0.5, a, b).astype(np.int32)
            if self._valid(child):
                return child
        return a.copy()

    # ------------------------------------------------------------------ cost

    def cost(self, encoding, *, channels: int = 128, cells_per_stage: int = 3, num_classes: int = 10,
             input_size: int = 32, num_stacks: int = 3) -> Cost:
        """Parameters and FLOPs (millions) of the benchmark's network for this cell.

        Network (``model_builder.build_model_fn``): stem conv3x3-BN-ReLU to ``channels`` (128);
        ``num_stacks`` stacks of ``cells_per_stage`` modules, a 2x2 max-pool and channel doubling
        before every stack but the first; global average pool; dense to ``num_classes``.

        **Parameters**, as the benchmark's ``trainable_parameters``: convolution kernels (no
        bias), BatchNorm scale and shift (2 per channel; running statistics are not trainable),
        the dense layer's weight and bias. Per module with ``c_in`` input and ``c`` output
        channels and vertex channels ``c_t`` (:func:`compute_vertex_channels` of the pruned
        cell): a 1x1 projection conv-BN-ReLU ``c_in -> c_t`` for every vertex fed by the input,
        the vertex op (conv kxk-BN-ReLU ``c_t -> c_t``, max-pool free) and, when the input
        feeds the output, a projection ``c_in -> c``.

        **FLOPs**, the NAS-Bench-201 convention (:mod:`fbnas_jax.spaces.cost`): multiply-
        accumulates per image of convolutions (``k*k*c_in*c_out*H*W``) and the dense layer
        (``in*out + out``); BatchNorm, ReLU, pooling, additions, truncation and concatenation
        cost nothing. The benchmark publishes no FLOPs, so these are ours.
        """
        matrix, ops = self.pruned(encoding)
        for name, value, lo in (("channels", channels, 1), ("cells_per_stage", cells_per_stage, 0),
                                ("num_classes", num_classes, 1), ("input_size", input_size, 1),
                                ("num_stacks", num_stacks, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
        v = len(ops)
        size = int(input_size)
        params = 9 * 3 * channels + 2 * channels
        flops = 9 * 3 * channels * size * size
        c_in = c_out = int(channels)
        for stack in range(num_stacks):
            if stack > 0:
                size = -(-size // 2)  # 2x2 max-pool, stride 2, 'same' padding
                c_out *= 2
            for _ in range(cells_per_stage):
                ch = compute_vertex_channels(c_in, c_out, matrix)
                hw = size * size
                for t in range(1, v - 1):
                    if matrix[0, t]:
                        params += c_in * ch[t] + 2 * ch[t]
                        flops += c_in * ch[t] * hw
                    k = {"conv3x3-bn-relu": 3, "conv1x1-bn-relu": 1}.get(ops[t])
                    if k:
                        params += k * k * ch[t] * ch[t] + 2 * ch[t]
                        flops += k * k * ch[t] * ch[t] * hw
                if matrix[0, v - 1]:
                    params += c_in * c_out + 2 * c_out
                    flops += c_in * c_out * hw
                c_in = c_out
        params += c_out * num_classes + num_classes
        flops += c_out * num_classes + num_classes
        return Cost(params / 1e6, flops / 1e6)


SPACE = register(NB101Space())
