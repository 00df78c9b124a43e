"""The NAS-Bench-201 cell search space as data (pure NumPy, no networks).

A cell is a DAG on 4 nodes; node ``i`` sums one operation applied to every earlier node
``j < i``, giving 6 edges. Each edge picks one of 5 operations, so the space holds
5**6 = 15,625 cells. The whole network repeats one cell 15 times, so an architecture is
just the cell.

Two representations, convertible both ways:

* **encoding**: ``np.ndarray`` of shape ``(6,)``, dtype int, ``encoding[e]`` is the index
  into :data:`OPS` of the operation on edge ``EDGES[e]``;
* **cell string** (the benchmark's own): ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` where
  ``op~j`` is the operation on the edge from node ``j`` into the node of that group.

Edge order follows the cell string: (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2).

:data:`SPACE` (registered as ``"nb201"``) is the :class:`~fbnas_jax.spaces.base.SearchSpace`
view of this module; the module-level functions below are what it is made of. Costs live in
:mod:`fbnas_jax.spaces.cost` (NB201's counting convention).
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

from fbnas_jax.spaces.base import Cost, SearchSpace, SearchSpaceError, register

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
OP_INDEX: dict[str, int] = {name: i for i, name in enumerate(OPS)}
NUM_OPS = len(OPS)

#: (to_node, from_node) for each of the 6 edges, in cell-string order.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NUM_EDGES = len(EDGES)
NUM_NODES = 4
NUM_ARCHS = NUM_OPS**NUM_EDGES

_NODE_RE = re.compile(r"^([a-z0-9_]+)~(\d+)$")


def validate_encoding(encoding: Sequence[int] | np.ndarray) -> np.ndarray:
    """Return ``encoding`` as an int32 array of shape ``(6,)`` or raise :class:`SearchSpaceError`."""
    arr = np.asarray(encoding)
    if arr.shape != (NUM_EDGES,):
        raise SearchSpaceError(
            f"an NB201 encoding has shape ({NUM_EDGES},), one op index per edge; got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise SearchSpaceError(f"encoding entries must be integers, got {arr.tolist()}")
    arr = arr.astype(np.int32)
    bad = (arr < 0) | (arr >= NUM_OPS)
    if bad.any():
        raise SearchSpaceError(
            f"encoding entries must lie in 0..{NUM_OPS - 1} (ops {list(OPS)}); got {arr.tolist()}"
        )
    return arr


def validate_encodings(encodings: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """Validate a batch of encodings, shape ``(n, 6)``; returns int32."""
    arr = np.asarray(encodings)
    if arr.ndim != 2 or arr.shape[1] != NUM_EDGES:
        raise SearchSpaceError(f"expected encodings of shape (n, {NUM_EDGES}); got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= NUM_OPS):
        raise SearchSpaceError(f"encoding entries must lie in 0..{NUM_OPS - 1}")
    return arr.astype(np.int32)


def op_index(name: str) -> int:
    try:
        return OP_INDEX[name]
    except KeyError:
        raise SearchSpaceError(f"unknown op {name!r}; NB201 ops are {list(OPS)}") from None


def encoding_to_string(encoding: Sequence[int] | np.ndarray) -> str:
    """``[3,3,4,0,3,4] -> '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|...|'``."""
    enc = validate_encoding(encoding)
    groups, e = [], 0
    for node in range(1, NUM_NODES):
        items = []
        for j in range(node):
            items.append(f"{OPS[enc[e]]}~{j}")
            e += 1
        groups.append("|" + "|".join(items) + "|")
    return "+".join(groups)


def string_to_encoding(cell: str) -> np.ndarray:
    """Parse an NB201 cell string; raises :class:`SearchSpaceError` on any malformation."""
    if not isinstance(cell, str):
        raise SearchSpaceError(f"a cell string must be str, got {type(cell).__name__}")
    text = cell.strip()
    groups = text.split("+")
    if len(groups) != NUM_NODES - 1:
        raise SearchSpaceError(
            f"malformed cell string {cell!r}: expected {NUM_NODES - 1} '+'-separated node groups, "
            f"got {len(groups)}"
        )
    enc = []
    for node, group in enumerate(groups, start=1):
        if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
            raise SearchSpaceError(f"malformed cell string {cell!r}: group {group!r} must be '|...|'")
        items = group[1:-1].split("|")
        if len(items) != node:
            raise SearchSpaceError(
                f"malformed cell string {cell!r}: node {node} needs {node} inputs, got {len(items)}"
            )
        for j, item in enumerate(items):
            m = _NODE_RE.match(item)
            if m is None:
                raise SearchSpaceError(f"malformed cell string {cell!r}: bad edge {item!r} (want 'op~j')")
            name, src = m.group(1), int(m.group(2))
            if src != j:
                raise SearchSpaceError(
                    f"malformed cell string {cell!r}: edge {item!r} of node {node} must come from node {j}"
                )
            enc.append(op_index(name))
    return np.asarray(enc, dtype=np.int32)


def encoding_to_index(encodings: np.ndarray) -> np.ndarray:
    """Position in :func:`all_encodings` (base-5 number, edge 0 most significant)."""
    enc = np.asarray(encodings, dtype=np.int64)
    weights = NUM_OPS ** np.arange(NUM_EDGES - 1, -1, -1)
    return enc @ weights


def all_encodings() -> np.ndarray:
    """All 15,625 encodings, shape ``(15625, 6)``, in base-5 (lexicographic) order.

    This is *not* the benchmark's own index order; ground-truth files are joined by cell
    string (see :mod:`fbnas_jax.groundtruth`).
    """
    grid = np.indices((NUM_OPS,) * NUM_EDGES).reshape(NUM_EDGES, -1).T
    return np.ascontiguousarray(grid, dtype=np.int32)


def all_strings() -> list[str]:
    return [encoding_to_string(e) for e in all_encodings()]


def sample_encodings(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` encodings drawn uniformly (with replacement)."""
    return rng.integers(0, NUM_OPS, size=(n, NUM_EDGES), dtype=np.int32)


def encodings_to_weights(encodings) -> np.ndarray:
    """One-hot op weights, shape ``(..., 6, 5)`` float32, of encodings of shape ``(..., 6)``:
    the mixed-edge form of a subnet (:func:`fbnas_jax.models.execution.mix_ops`)."""
    enc = np.asarray(encodings)
    validate_encodings(enc.reshape(-1, NUM_EDGES))
    return np.eye(NUM_OPS, dtype=np.float32)[enc]


def weights_to_encodings(weights) -> np.ndarray:
    """The strongest op per edge (``argmax`` over the last axis) of op weights ``(..., 6, 5)``:
    how DARTS, BaLeNAS and TE-NAS pruning read a subnet off a mixed supernet."""
    w = np.asarray(weights)
    if w.shape[-2:] != (NUM_EDGES, NUM_OPS):
        raise ValueError(f"op weights must end in shape ({NUM_EDGES}, {NUM_OPS}), got {w.shape}")
    return np.argmax(w, axis=-1).astype(np.int32)


def op_counts(encodings: np.ndarray) -> np.ndarray:
    """Count of each op per architecture, shape ``(n, NUM_OPS)``."""
    enc = validate_encodings(encodings)
    return np.stack([(enc == k).sum(axis=1) for k in range(NUM_OPS)], axis=1)


def parse_archs(items: Iterable[str | Sequence[int]]) -> np.ndarray:
    """Cell strings or encodings (mixed) -> ``(n, 6)`` int32 encodings."""
    out = []
    for item in items:
        out.append(string_to_encoding(item) if isinstance(item, str) else validate_encoding(item))
    if not out:
        return np.zeros((0, NUM_EDGES), np.int32)
    return np.stack(out)


class NB201Space(SearchSpace):
    """NAS-Bench-201 as a :class:`SearchSpace`: a product space of 6 edges x 5 ops, enumerable.

    Its sampling and EA moves consume a ``numpy.random.Generator`` exactly as fbnas-jax's
    NB201-only search did (so seeded searches pick the same architectures as before).
    """

    name = "nb201"
    encoding_shape = (NUM_EDGES,)
    network_module = "fbnas_jax.models.nb201"
    size = NUM_ARCHS
    string_name = "cell string"
    title = "NAS-Bench-201"
    choices = (NUM_OPS,) * NUM_EDGES
    cost_defaults = {"num_classes": 10, "channels": 16, "cells_per_stage": 5, "input_size": 32}

    def validate(self, encoding) -> np.ndarray:
        return validate_encoding(encoding)

    def validate_batch(self, encodings) -> np.ndarray:
        arr = np.asarray(encodings)
        if arr.size == 0:
            arr = arr.reshape(0, NUM_EDGES)
        if arr.dtype.kind == "f" and arr.size and not np.all(np.mod(arr, 1) == 0):
            raise SearchSpaceError("encoding entries must be integers")
        return validate_encodings(arr)

    def to_string(self, encoding) -> str:
        return encoding_to_string(encoding)

    def from_string(self, text: str) -> np.ndarray:
        return string_to_encoding(text)

    def key(self, encoding) -> str:
        return encoding_to_string(encoding)

    def describe(self, encoding) -> dict:
        enc = validate_encoding(encoding)
        return {"arch": encoding_to_string(enc), "encoding": enc.tolist(), "ops": [OPS[k] for k in enc]}

    def all_encodings(self) -> np.ndarray:
        return all_encodings()

    def index(self, encodings) -> np.ndarray:
        return encoding_to_index(self.validate_batch(encodings))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return sample_encodings(rng, n)

    def fair_group(self, rng: np.random.Generator) -> np.ndarray:
        """5 architectures; per edge an independent permutation of the 5 ops (FairNAS)."""
        perms = np.stack([rng.permutation(NUM_OPS) for _ in range(NUM_EDGES)])  # (6, 5)
        return np.ascontiguousarray(perms.T, dtype=np.int32)

    def mutate(self, rng: np.random.Generator, encoding, prob: float) -> np.ndarray:
        parent = validate_encoding(encoding)
        flip = rng.random(NUM_EDGES) < prob
        return np.where(flip, rng.integers(0, NUM_OPS, NUM_EDGES), parent).astype(np.int32)

    def crossover(self, rng: np.random.Generator, a, b) -> np.ndarray:
        pick = rng.random(NUM_EDGES) < 0.5
        return np.where(pick, validate_encoding(a), validate_encoding(b)).astype(np.int32)

    def cost(self, encoding, **network) -> Cost:
        """Params / FLOPs as the benchmark counts them (:func:`fbnas_jax.spaces.cost.nb201_cost`;
        ``network``: ``num_classes``, ``channels``, ``cells_per_stage``, ``input_size``)."""
        from fbnas_jax.spaces.cost import nb201_cost  # cost.py imports this module

        return nb201_cost(encoding, **network)

    def costs(self, encodings, **network) -> tuple[np.ndarray, np.ndarray]:
        from fbnas_jax.spaces.cost import nb201_costs

        return nb201_costs(encodings, **network)


SPACE = register(NB201Space())
