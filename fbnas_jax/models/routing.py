"""Host-side chunking for routed execution: which architectures share one launch (pure NumPy).

Routed execution (:mod:`fbnas_jax.models.nb201_routed`, ``execution="route"`` of the engine)
runs a chunk of K architectures in one program in which every op of every edge is computed
only for the architectures that chose it: the ``n_k`` architectures that chose op ``k`` on
an edge are gathered into a fixed number of slots, the *capacity* ``cap`` (a static shape),
run through the op as one batch and scattered back. A chunk is valid when on every edge no
op is chosen by more than ``cap`` of its architectures; padding rows (``-1`` on every edge)
choose nothing. Every function here is pure NumPy and decides on the host, before a launch.

Perfect balance: NB201's encodings are vectors of Z_5^6 (op index per edge). A subgroup H of
size K = 5^d whose projection on every coordinate is onto Z_5 cuts the space into 5^(6-d)
cosets of K architectures in which each op is chosen by exactly K/5 architectures on every
edge: chunks with ``cap = K/5`` and no empty slot. We take ``H_d = span{(1,1,1,1,1,1), e_1,
..., e_{d-1}}`` (the all-ones vector makes every projection onto); in the basis
``{(1,...,1), e_1, ..., e_5}`` an encoding has coordinates ``c_0 = x_0``, ``c_i = x_i - x_0``,
and its coset of ``H_d`` is ``(c_d, ..., c_5)``. The subgroups are nested (H_1 < H_2 < ...), so
a coset of 125 is 5 cosets of 25, and sorting by ``(c_5, ..., c_1)`` makes the cosets of
every size contiguous.

Arbitrary lists (a random sample, a search's population): :func:`pack_chunks` sorts the
architectures by coset (whole cosets present in the list then fill chunks exactly) and packs
them first-fit into chunks under the capacity; what is left goes into a last, padded chunk.
Overflow is impossible by construction, and :func:`check_chunk` asserts it before a launch.
"""
from __future__ import annotations

import math

import numpy as np

NUM_EDGES = 6
NUM_OPS = 5
#: padding row of a chunk: chooses no op on any edge (its outputs are discarded)
PAD = -1


def coset_dim(chunk: int, num_ops: int = NUM_OPS) -> int | None:
    """``d`` with ``num_ops**d == chunk`` (a chunk that a coset fills), else None."""
    d = round(math.log(chunk, num_ops)) if chunk >= 1 else -1
    return d if d >= 0 and num_ops ** d == chunk and d <= NUM_EDGES else None


def coset_keys(encodings, d: int) -> np.ndarray:
    """Coset of each encoding under ``H_d`` (size 5^d, module doc): an int per row, equal within
    a coset. ``d=0``: every architecture its own coset; ``d=6``: one coset, the space."""
    if not 0 <= d <= NUM_EDGES:
        raise ValueError(f"subgroup dimension must be in 0..{NUM_EDGES}, got {d}")
    enc = np.asarray(encodings, np.int64)
    coords = np.concatenate([(enc[:, 1:] - enc[:, :1]) % NUM_OPS, enc[:, :1]], axis=1)  # c_1..c_5, c_0
    tail = coords[:, d - 1:NUM_EDGES - 1] if d >= 1 else coords[:, [NUM_EDGES - 1] + list(range(NUM_EDGES - 1))]
    return tail @ (NUM_OPS ** np.arange(tail.shape[1], dtype=np.int64))


def space_cosets(d: int) -> np.ndarray:
    """The whole NB201 space as ``(5**(6-d), 5**d, 6)``: one perfectly balanced chunk per coset."""
    grid = np.stack(np.meshgrid(*[np.arange(NUM_OPS)] * NUM_EDGES, indexing="ij"), -1).reshape(-1, NUM_EDGES)
    order = np.argsort(coset_keys(grid, d), kind="stable")
    return grid[order].reshape(NUM_OPS ** (NUM_EDGES - d), NUM_OPS ** d, NUM_EDGES).astype(np.int32)


def op_counts(chunk_enc) -> np.ndarray:
    """``counts[edge, op]``: architectures of the chunk choosing ``op`` on ``edge`` (pads ignored)."""
    enc = np.asarray(chunk_enc, np.int64)
    counts = np.zeros((enc.shape[1], NUM_OPS), np.int64)
    for e in range(enc.shape[1]):
        col = enc[:, e]
        counts[e] = np.bincount(col[col >= 0], minlength=NUM_OPS)[:NUM_OPS]
    return counts


def default_capacity(chunk: int, slack: float = 1.2) -> int:
    """Slots per (edge, op) for chunks of arbitrary architectures: ``slack`` times the mean
    ``chunk / 5``, rounded up to a multiple of 4 (at most ``chunk``)."""
    return int(min(chunk, 4 * math.ceil(slack * chunk / NUM_OPS / 4)))


def balanced_capacity(encodings, chunk: int) -> int | None:
    """``chunk / 5`` when ``encodings`` are whole cosets of chunk size (e.g. the whole space, chunk
    125): every chunk is then perfectly balanced. None otherwise."""
    d = coset_dim(chunk)
    enc = np.asarray(encodings)
    if d is None or d == 0 or len(enc) == 0 or len(enc) % chunk:
        return None
    if len(np.unique(enc, axis=0)) != len(enc):
        return None
    _, counts = np.unique(coset_keys(enc, d), return_counts=True)
    return chunk // NUM_OPS if np.all(counts == chunk) else None


def check_chunk(chunk_enc, cap: int) -> None:
    """Raise ``ValueError`` if an op of an edge is chosen by more than ``cap`` architectures
    of the chunk (routed execution would drop them), or an entry is not an op index or PAD."""
    enc = np.asarray(chunk_enc)
    if enc.ndim != 2 or enc.shape[1] != NUM_EDGES:
        raise ValueError(f"a routed chunk is (K, {NUM_EDGES}) encodings, got shape {enc.shape}")
    if enc.size and (enc.min() < PAD or enc.max() >= NUM_OPS):
        raise ValueError(f"routed chunk entries must be op indices 0..{NUM_OPS - 1} or {PAD} (padding)")
    counts = op_counts(enc)
    if counts.max(initial=0) > cap:
        e, k = np.unravel_index(np.argmax(counts), counts.shape)
        raise ValueError(f"routed chunk overflows its capacity: op {k} of edge {e} is chosen by {counts[e, k]} "
                         f"architectures but each op has {cap} slots; pack chunks with "
                         "fbnas_jax.models.routing.pack_chunks (or raise the capacity)")


def pack_chunks(encodings, chunk: int, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """``(chunks, order)``: ``encodings`` (n, 6) packed into ``(m, chunk, 6)`` chunks in which no
    op of an edge is chosen more than ``cap`` times; ``order`` ``(m * chunk,)`` gives each slot's
    row of ``encodings`` (``PAD`` = -1 for padding rows, whose encoding is all ``PAD``).

    Every architecture lands exactly once. The architectures are sorted by coset (whole cosets
    of ``chunk`` = 5^d architectures then fill chunks exactly) and placed first-fit: into the
    first open chunk with room and free slots for all six of its ops.
    """
    enc = np.asarray(encodings, np.int64)
    n = len(enc)
    if chunk < 1 or cap < 1:
        raise ValueError(f"chunk and cap must be >= 1, got chunk={chunk}, cap={cap}")
    if n == 0:
        return np.zeros((0, chunk, NUM_EDGES), np.int32), np.zeros(0, np.int64)
    if enc.min() < 0 or enc.max() >= NUM_OPS:
        raise ValueError(f"encodings must be op indices 0..{NUM_OPS - 1}")
    order = np.argsort(coset_keys(enc, 1), kind="stable")  # cosets of every size contiguous (module doc)
    max_chunks = n  # never more chunks than architectures
    counts = np.zeros((max_chunks, NUM_EDGES, NUM_OPS), np.int64)
    sizes = np.zeros(max_chunks, np.int64)
    slots = np.full((max_chunks, chunk), PAD, np.int64)
    used, first_open = 0, 0
    edges = np.arange(NUM_EDGES)
    for i in order:
        ops = enc[i]
        cand = slice(first_open, used)
        fits = (sizes[cand] < chunk) & np.all(counts[cand, edges, ops] < cap, axis=1)
        hit = np.flatnonzero(fits)
        b = first_open + int(hit[0]) if hit.size else used
        if b == used:
            used += 1
        slots[b, sizes[b]] = i
        sizes[b] += 1
        counts[b, edges, ops] += 1
        while first_open < used and sizes[first_open] == chunk:
            first_open += 1
    slots = slots[:used]
    chunks = np.where(slots[..., None] >= 0, enc[np.maximum(slots, 0)], PAD).astype(np.int32)
    return chunks, slots.reshape(-1)


def unpack(values: np.ndarray, order: np.ndarray, n: int) -> np.ndarray:
    """Per-architecture values back in the original order: ``values`` (m * chunk, ...) of the
    chunk slots, ``order`` from :func:`pack_chunks`; padding slots dropped."""
    values = np.asarray(values)
    out = np.empty((n,) + values.shape[1:], values.dtype)
    keep = order >= 0
    out[order[keep]] = values[keep]
    return out
