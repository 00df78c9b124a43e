"""TE-NAS supernet pruning (Chen et al. 2021) and TEG pruning (TEG-NAS), over op masks (pure NumPy).

A *pruned supernet* is a 0/1 mask of shape ``(num_edges, num_ops)``: edge ``e`` outputs the sum
of its live ops (``mask[e, k] == 1``); the NB201 supernet takes it as its architecture input
(:func:`fbnas_jax.models.execution.mix_ops`). The search is TE-NAS's ``prune_func_rank``:

1. start from the full supernet (every op live on every edge) and drop ``none`` (TE-NAS sets
   its architecture weight to -INF before the first round);
2. each round, for every live op ``(e, k)`` of every edge with more than one live op, build the
   mask without it and measure every indicator on the current mask and on each candidate,
   with ``R`` repeats (fresh initialisations and batches, shared by the current mask and the
   candidates of a repeat, as TE-NAS copies the same weights into both networks);
3. the *gain* of removing ``(e, k)`` under an indicator oriented higher = better (the
   registry's convention) is the relative change averaged over repeats,
   ``mean_r (s_r(without) - s_r(with)) / |s_r(with)|``. For TE-NAS's two indicators this is
   exactly its ``(ntk_origin - ntk) / ntk_origin`` (condition number, sorted descending) and
   ``-(lr_origin - lr) / lr_origin`` (regions, sorted ascending);
4. each indicator ranks all candidates by gain, highest first, with TE-NAS's dense ranks
   (equal gains share a rank, the next distinct gain gets the next integer); per edge the
   candidate with the lowest rank sum is pruned (ties: the first in the order of the first
   indicator's ranking, as TE-NAS's stable sort) -- one op per edge per round;
5. until every edge has one live op: that is the architecture.

The indicators are behind ``measure(masks) -> {name: scores (R, n)}``
(:func:`fbnas_jax.search.mask_measure.indicator_measure` builds one from registered
indicators: TE-NAS = ``ntk_cond`` + ``linear_regions``, TEG = the three TEG indicators); the
loop never sees a network, so the bookkeeping is tested with closed-form fake indicators.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "PruneRound", "PruneResult", "full_mask", "live_ops", "removal_candidates", "candidate_masks",
    "removal_gains", "dense_ranks", "choose_prunes", "prune_round", "prune_search", "format_mask",
]

#: ``measure(masks float32 (n, E, K)) -> {indicator: scores (R, n)}``, higher = better
Measure = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@dataclasses.dataclass
class PruneRound:
    """One round: ``candidates[i] = (edge, op)`` removed; per-indicator gains and ranks; what was pruned."""

    candidates: np.ndarray  # (n, 2) int
    gains: dict[str, np.ndarray]  # name -> (n,)
    ranks: dict[str, np.ndarray]  # name -> (n,) int, 0 = most favourable removal
    rank_sum: np.ndarray  # (n,)
    pruned: np.ndarray  # (m, 2) int: one (edge, op) per edge that had >1 live op
    mask: np.ndarray  # (E, K) after the round
    base_scores: dict[str, list[float]]  # name -> R scores of the mask before the round
    seconds: float

    def to_dict(self, op_names: Sequence[str] | None = None) -> dict[str, Any]:
        name = (lambda k: op_names[k]) if op_names else int
        return {
            "candidates": [[int(e), name(k)] for e, k in self.candidates],
            "gains": {n: [float(g) for g in v] for n, v in self.gains.items()},
            "ranks": {n: [int(r) for r in v] for n, v in self.ranks.items()},
            "rank_sum": [int(r) for r in self.rank_sum],
            "pruned": [[int(e), name(k)] for e, k in self.pruned],
            "surviving": [[name(k) for k in ops] for ops in live_ops(self.mask)],
            "base_scores": self.base_scores,
            "seconds": float(self.seconds),
        }


@dataclasses.dataclass
class PruneResult:
    """Outcome of :func:`prune_search`: the one-op-per-edge ``encoding`` and the rounds."""

    encoding: np.ndarray
    rounds: list[PruneRound]
    n_evaluated: int  # masks measured (each with every indicator and repeat)
    wall_s: float
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self, op_names: Sequence[str] | None = None) -> dict[str, Any]:
        return {"algo": "prune", "encoding": [int(x) for x in self.encoding], "n_evaluated": int(self.n_evaluated),
                "wall_s": float(self.wall_s), "settings": dict(self.settings),
                "rounds": [r.to_dict(op_names) for r in self.rounds]}


# ----------------------------------------------------------------------------- masks


def full_mask(num_edges: int, num_ops: int) -> np.ndarray:
    """The unpruned supernet: every op live on every edge, float32 ``(num_edges, num_ops)``."""
    if num_edges < 1 or num_ops < 1:
        raise ValueError(f"a mask needs >= 1 edge and op, got ({num_edges}, {num_ops})")
    return np.ones((num_edges, num_ops), np.float32)


def _check_mask(mask) -> np.ndarray:
    m = np.asarray(mask, np.float32)
    if m.ndim != 2 or not np.all((m == 0) | (m == 1)):
        raise ValueError(f"an op mask is a 0/1 array of shape (num_edges, num_ops), got shape {m.shape}")
    if np.any(m.sum(axis=1) < 1):
        raise ValueError(f"every edge needs at least one live op; edges {np.flatnonzero(m.sum(1) < 1).tolist()} "
                         "have none")
    return m


def live_ops(mask) -> list[list[int]]:
    """Live op indices of each edge."""
    return [np.flatnonzero(row).tolist() for row in np.asarray(mask)]


def removal_candidates(mask) -> np.ndarray:
    """``(n, 2)`` int ``(edge, op)``: every live op of every edge that has more than one (edge-major)."""
    m = _check_mask(mask)
    out = [(e, k) for e, ops in enumerate(live_ops(m)) if len(ops) > 1 for k in ops]
    return np.asarray(out, np.int64).reshape(-1, 2)


def candidate_masks(mask, candidates) -> np.ndarray:
    """``(n, E, K)`` float32: ``mask`` with candidate ``i``'s op removed."""
    m = _check_mask(mask)
    cands = np.asarray(candidates, np.int64).reshape(-1, 2)
    out = np.repeat(m[None], len(cands), axis=0)
    out[np.arange(len(cands)), cands[:, 0], cands[:, 1]] = 0.0
    return out


def format_mask(mask, op_names: Sequence[str] | None = None) -> str:
    """One line per edge: ``edge 0: skip_connect, nor_conv_3x3``."""
    name = (lambda k: op_names[k]) if op_names else str
    return "\n".join(f"  edge {e}: {', '.join(name(k) for k in ops)}" for e, ops in enumerate(live_ops(mask)))


# ----------------------------------------------------------------------------- ranking


def removal_gains(base, without) -> np.ndarray:
    """``mean_r (without[r, i] - base[r]) / |base[r]|`` -- higher = removing candidate ``i`` helps.

    ``base``: ``(R,)`` scores of the current mask; ``without``: ``(R, n)`` of the candidates.
    Scores are oriented higher = better. A non-finite gain (an ill-conditioned NTK gives a
    ``-inf`` score; a zero base) becomes ``-inf``: such a removal is ranked last, never preferred.
    """
    base = np.asarray(base, np.float64).reshape(-1)
    without = np.asarray(without, np.float64)
    if without.ndim != 2 or without.shape[0] != base.shape[0]:
        raise ValueError(f"scores without each op must be (R={base.shape[0]}, n), got {without.shape}")
    with np.errstate(all="ignore"):
        rel = (without - base[:, None]) / np.abs(base[:, None])
        gain = rel.mean(axis=0)
    return np.where(np.isfinite(gain), gain, -np.inf)


def dense_ranks(values) -> np.ndarray:
    """TE-NAS's ranks: sorted descending, rank 0 first, equal values share a rank, the next
    distinct value gets the previous rank + 1 (``[0.3, 0.1, 0.3, 0.2] -> [0, 2, 0, 1]``)."""
    v = np.asarray(values, np.float64)
    order = np.argsort(-v, kind="stable")
    ranks = np.empty(len(v), np.int64)
    r = 0
    for pos, i in enumerate(order):
        if pos > 0 and v[i] != v[order[pos - 1]]:
            r += 1
        ranks[i] = r
    return ranks


def choose_prunes(candidates, gains: Mapping[str, np.ndarray]):
    """``(ranks, rank_sum, pruned)``: per edge, the candidate with the lowest sum of dense ranks.

    Ties in the sum go to the candidate ranked first by the first indicator (TE-NAS sorts
    the sums stably in the order of its NTK ranking). ``pruned``: ``(m, 2)`` ``(edge, op)``
    sorted by edge.
    """
    cands = np.asarray(candidates, np.int64).reshape(-1, 2)
    if not gains:
        raise ValueError("pruning needs at least one indicator")
    names = list(gains)
    ranks = {n: dense_ranks(gains[n]) for n in names}
    for n in names:
        if ranks[n].shape != (len(cands),):
            raise ValueError(f"indicator {n!r}: {ranks[n].shape[0]} gains for {len(cands)} candidates")
    total = sum(ranks[n] for n in names)
    first = np.argsort(-np.asarray(gains[names[0]], np.float64), kind="stable")
    order = first[np.argsort(total[first], kind="stable")]
    chosen: dict[int, int] = {}
    for i in order:
        chosen.setdefault(int(cands[i, 0]), int(cands[i, 1]))
    pruned = np.asarray(sorted(chosen.items()), np.int64).reshape(-1, 2)
    return ranks, total, pruned


# ----------------------------------------------------------------------------- driver


def _measure_all(measure: Measure, masks: np.ndarray, chunk_size: int, bar=None) -> dict[str, np.ndarray]:
    """``measure`` over ``masks`` in chunks of exactly ``chunk_size`` (the last padded with copies
    of the first mask, so every call has one shape: one compilation for the whole search)."""
    n = len(masks)
    parts: dict[str, list[np.ndarray]] = {}
    for lo in range(0, n, chunk_size):
        chunk = masks[lo:lo + chunk_size]
        real = len(chunk)
        if real < chunk_size:
            chunk = np.concatenate([chunk, np.repeat(masks[:1], chunk_size - real, axis=0)])
        out = measure(chunk)
        for name, v in out.items():
            v = np.asarray(v, np.float64)
            if v.ndim != 2 or v.shape[1] != chunk_size:
                raise ValueError(f"measure returned {v.shape} for indicator {name!r}; expected (R, {chunk_size})")
            parts.setdefault(name, []).append(v[:, :real])
        if bar is not None:
            bar.update(real)
    return {name: np.concatenate(v, axis=1) for name, v in parts.items()}


def prune_round(mask, measure: Measure, *, chunk_size: int = 8, bar=None) -> PruneRound:
    """One TE-NAS round on ``mask`` (see the module docstring)."""
    t0 = time.perf_counter()
    m = _check_mask(mask)
    cands = removal_candidates(m)
    if len(cands) == 0:
        raise ValueError("nothing to prune: every edge has one live op")
    masks = np.concatenate([m[None], candidate_masks(m, cands)])
    scores = _measure_all(measure, masks, int(chunk_size), bar)
    gains = {name: removal_gains(s[:, 0], s[:, 1:]) for name, s in scores.items()}
    ranks, total, pruned = choose_prunes(cands, gains)
    new = m.copy()
    new[pruned[:, 0], pruned[:, 1]] = 0.0
    return PruneRound(cands, gains, ranks, total, pruned, new,
                      {name: [float(x) for x in s[:, 0]] for name, s in scores.items()}, time.perf_counter() - t0)


def prune_search(measure: Measure, num_edges: int, num_ops: int, *, drop_first: Sequence[int] = (0,),
                 op_names: Sequence[str] | None = None, chunk_size: int = 8, progress: bool = True,
                 log: Callable[[str], None] | None = print, settings: Mapping[str, Any] | None = None) -> PruneResult:
    """Prune the full supernet one op per edge per round until one op per edge is left.

    ``drop_first``: op indices removed from every edge before the first round, unmeasured
    (TE-NAS drops ``none``, index 0 in NB201). ``chunk_size``: masks per ``measure`` call
    (fixed: one compilation). ``progress``: a tqdm bar per round (masks measured); ``log``:
    after each round, the surviving ops per edge (None: silent).
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    mask = full_mask(num_edges, num_ops)
    for k in drop_first:
        if not 0 <= int(k) < num_ops:
            raise ValueError(f"drop_first op {k} is not among the {num_ops} ops")
        mask[:, int(k)] = 0.0
    mask = _check_mask(mask)
    if log is not None:
        log(f"start: {int(mask.sum())} live ops" + (f" (dropped {[op_names[k] if op_names else k for k in drop_first]})"
                                                    if len(drop_first) else ""))
    rounds: list[PruneRound] = []
    n_eval = 0
    while (mask.sum(axis=1) > 1).any():
        n = len(removal_candidates(mask)) + 1
        bar = tqdm(total=n, desc=f"prune round {len(rounds) + 1}", unit="mask", disable=not progress, leave=False)
        try:
            rnd = prune_round(mask, measure, chunk_size=chunk_size, bar=bar)
        finally:
            bar.close()
        rounds.append(rnd)
        n_eval += n
        mask = rnd.mask
        if log is not None:
            name = (lambda k: op_names[k]) if op_names else str
            log(f"round {len(rounds)} ({rnd.seconds:.1f} s, {n} masks): pruned "
                + ", ".join(f"e{e}:{name(k)}" for e, k in rnd.pruned) + "; surviving:\n" + format_mask(mask, op_names))
    encoding = np.argmax(mask, axis=1).astype(np.int32)
    st = dict(settings or {})
    st.update(drop_first=[int(k) for k in drop_first], chunk_size=int(chunk_size))
    return PruneResult(encoding, rounds, n_eval, time.perf_counter() - t0, st)
