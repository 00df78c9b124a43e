"""Architecture search on NAS-Bench-201 driven by any objective (pure NumPy).

The objective is any callable ``score_fn(encodings) -> scores``: int32 encodings of shape
``(n, 6)`` in, ``n`` floats out, **higher is better**. A NaN score marks an architecture
as invalid: it is counted as evaluated but never selected (as parent or as result). The
search never calls ``score_fn`` twice for the same architecture (scores are memoised by
encoding) and calls it with whole batches (one call per generation), so a jit-compiled,
chunked scoring engine can sit behind it.

* :func:`random_search`: ``n_samples`` distinct architectures drawn uniformly from those
  meeting the constraints; the best one wins.
* :func:`evolutionary_search`: the evolutionary search of SPOS (Guo et al., 2020) used by
  BN-NAS: a random initial population; each generation keeps the ``top_k`` best
  architectures seen so far, makes ``mutations`` children by per-gene mutation and
  ``crossovers`` children by uniform crossover of top-k parents, and fills up to
  ``population`` with random architectures. Children that violate the constraints or that
  were already evaluated (or already made this generation) are rejected and retried, at most
  ``10 * count`` tries per kind (as SPOS). ``generations`` counts *evaluated* generations,
  the initial one included, so the defaults score ``20 * 50 = 1000`` architectures.
* :class:`ReferenceRankObjective`: turns a rank-based indicator such as FBN-NAS's CPI (mean
  of ranks of several component scores over the scored set) into a per-architecture
  objective by ranking candidates against a fixed reference set.

Constraints ``max_params`` / ``max_flops`` (millions, as :func:`fbnas_jax.spaces.cost.nb201_costs`)
are inclusive. The feasible set is computed once over the whole space (15,625 cells, about
a millisecond), so only feasible architectures are ever scored.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping

import numpy as np

from fbnas_jax.ranking import reference_cpi
from fbnas_jax.spaces.cost import nb201_costs
from fbnas_jax.spaces.nb201 import (
    NUM_ARCHS,
    NUM_EDGES,
    NUM_OPS,
    all_encodings,
    encoding_to_index,
    encoding_to_string,
    validate_encodings,
)

__all__ = [
    "SearchError",
    "SearchResult",
    "ReferenceRankObjective",
    "random_search",
    "evolutionary_search",
    "feasible_mask",
]

ScoreFn = Callable[[np.ndarray], Any]


class SearchError(ValueError):
    """A search that cannot run or cannot pick anything (bad settings, no valid architecture)."""


@dataclasses.dataclass
class SearchResult:
    """Outcome of a search.

    ``history[g]`` is the best (non-NaN) score seen up to and including generation ``g``
    (random search: one entry). ``evaluated`` / ``evaluated_scores`` hold every scored
    architecture in evaluation order (distinct), ``generation_sizes`` how many were new per
    generation.
    """

    algo: str
    encoding: np.ndarray
    arch: str
    score: float
    params_m: float
    flops_m: float
    n_evaluated: int
    history: list[float]
    wall_s: float
    evaluated: np.ndarray
    evaluated_scores: np.ndarray
    generation_sizes: list[int]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the full evaluation log)."""
        return {
            "algo": self.algo,
            "arch": self.arch,
            "encoding": [int(x) for x in self.encoding],
            "score": float(self.score),
            "params_m": float(self.params_m),
            "flops_m": float(self.flops_m),
            "n_evaluated": int(self.n_evaluated),
            "n_invalid": int(np.isnan(self.evaluated_scores).sum()),
            "history": [float(h) for h in self.history],
            "generation_sizes": [int(g) for g in self.generation_sizes],
            "wall_s": float(self.wall_s),
            "settings": dict(self.settings),
        }


def feasible_mask(max_params: float | None = None, max_flops: float | None = None,
                  **cost_kwargs) -> np.ndarray:
    """Boolean ``(15625,)`` over :func:`all_encodings` order: meets both limits (inclusive)."""
    for name, val in (("max_params", max_params), ("max_flops", max_flops)):
        if val is not None and not (np.isfinite(val) and val > 0):
            raise SearchError(f"{name} must be a positive number of millions, got {val!r}")
    mask = np.ones(NUM_ARCHS, bool)
    if max_params is None and max_flops is None:
        return mask
    params, flops = nb201_costs(all_encodings(), **cost_kwargs)
    if max_params is not None:
        mask &= params <= max_params
    if max_flops is not None:
        mask &= flops <= max_flops
    if not mask.any():
        raise SearchError(
            f"no NB201 architecture meets max_params={max_params}, max_flops={max_flops} "
            f"(smallest: {params.min():.4f} M params, {flops.min():.4f} M FLOPs)")
    return mask


class _Evaluator:
    """Memoised, batched calls of the objective; keeps the evaluation log."""

    def __init__(self, score_fn: ScoreFn):
        if not callable(score_fn):
            raise SearchError(f"score_fn must be callable, got {type(score_fn).__name__}")
        self.score_fn = score_fn
        self.cache: dict[int, float] = {}
        self.order: list[int] = []
        self.seen_mask = np.zeros(NUM_ARCHS, bool)

    def seen(self, flat: int) -> bool:
        return flat in self.cache

    def evaluate(self, encodings: np.ndarray) -> np.ndarray:
        enc = validate_encodings(np.asarray(encodings).reshape(-1, NUM_EDGES))
        flat = encoding_to_index(enc)
        new = [i for i, f in enumerate(flat.tolist()) if f not in self.cache]
        # de-duplicate inside the batch too
        uniq: dict[int, int] = {}
        for i in new:
            uniq.setdefault(int(flat[i]), i)
        if uniq:
            idx = list(uniq.values())
            raw = self.score_fn(enc[idx])
            scores = np.asarray(raw, dtype=np.float64).reshape(-1) if raw is not None else None
            if scores is None or scores.shape != (len(idx),):
                got = None if scores is None else scores.shape
                raise SearchError(
                    f"score_fn returned shape {got} for {len(idx)} architectures; it must return "
                    f"one score per architecture")
            for f, s in zip(uniq.keys(), scores.tolist()):
                self.cache[f] = float(s)
                self.order.append(f)
                self.seen_mask[f] = True
        return np.asarray([self.cache[f] for f in flat.tolist()], dtype=np.float64)

    def log(self) -> tuple[np.ndarray, np.ndarray]:
        flat = np.asarray(self.order, dtype=np.int64)
        enc = all_encodings()[flat] if len(flat) else np.zeros((0, NUM_EDGES), np.int32)
        return enc, np.asarray([self.cache[f] for f in self.order], dtype=np.float64)


def _domain_mask(domain) -> np.ndarray:
    if domain is None:
        return np.ones(NUM_ARCHS, bool)
    mask = np.asarray(domain)
    if mask.dtype != bool or mask.shape != (NUM_ARCHS,):
        raise SearchError(f"domain must be a boolean mask of shape ({NUM_ARCHS},), got {mask.dtype} {mask.shape}")
    if not mask.any():
        raise SearchError("domain is empty: no architecture may be proposed")
    return mask


def _as_rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _best_so_far(ev: _Evaluator) -> float:
    vals = np.asarray([ev.cache[f] for f in ev.order], dtype=np.float64)
    vals = vals[~np.isnan(vals)]
    return float(vals.max()) if len(vals) else float("nan")


def _finish(algo, ev: _Evaluator, history, sizes, t0, settings, cost_kwargs) -> SearchResult:
    enc, scores = ev.log()
    ok = ~np.isnan(scores)
    if not ok.any():
        raise SearchError(
            f"{algo}: the objective returned NaN for all {len(scores)} evaluated architectures; "
            f"nothing can be chosen")
    cand = np.flatnonzero(ok)
    best = int(cand[np.argmax(scores[cand])])  # first evaluated among ties
    params, flops = nb201_costs(enc[best:best + 1], **cost_kwargs)
    return SearchResult(
        algo=algo, encoding=enc[best].copy(), arch=encoding_to_string(enc[best]),
        score=float(scores[best]), params_m=float(params[0]), flops_m=float(flops[0]),
        n_evaluated=len(scores), history=list(history), wall_s=time.perf_counter() - t0,
        evaluated=enc, evaluated_scores=scores, generation_sizes=list(sizes), settings=settings)


def random_search(
    score_fn: ScoreFn,
    n_samples: int,
    rng,
    *,
    max_params: float | None = None,
    max_flops: float | None = None,
    cost_kwargs: Mapping[str, Any] | None = None,
) -> SearchResult:
    """Score ``n_samples`` distinct feasible architectures drawn uniformly; return the best.

    If fewer than ``n_samples`` architectures meet the constraints, all of them are scored.
    ``rng``: a ``np.random.Generator`` or a seed. ``cost_kwargs`` go to ``nb201_costs``
    (``num_classes``, ``channels``, ...).
    """
    t0 = time.perf_counter()
    n_samples = int(n_samples)
    if n_samples < 1:
        raise SearchError(f"n_samples must be >= 1, got {n_samples}")
    rng = _as_rng(rng)
    cost_kwargs = dict(cost_kwargs or {})
    feasible = np.flatnonzero(feasible_mask(max_params, max_flops, **cost_kwargs))
    n = min(n_samples, len(feasible))
    chosen = rng.choice(feasible, size=n, replace=False)
    ev = _Evaluator(score_fn)
    ev.evaluate(all_encodings()[chosen])
    settings = dict(n_samples=n_samples, max_params=max_params, max_flops=max_flops)
    return _finish("random", ev, [_best_so_far(ev)], [n], t0, settings, cost_kwargs)


def evolutionary_search(
    score_fn: ScoreFn,
    rng,
    *,
    population: int = 50,
    top_k: int = 10,
    mutations: int = 25,
    mutation_prob: float = 0.1,
    crossovers: int = 25,
    generations: int = 20,
    max_params: float | None = None,
    max_flops: float | None = None,
    cost_kwargs: Mapping[str, Any] | None = None,
    domain: np.ndarray | None = None,
) -> SearchResult:
    """SPOS / BN-NAS evolutionary search (see the module docstring).

    ``domain``: optional boolean mask over :func:`all_encodings` (15,625,) of the architectures
    the search may propose, combined with the constraints like one more constraint (e.g. the
    pool a benchmark has scored: children outside it are rejected and retried, not scored).

    Generation 0 scores ``population`` distinct random feasible architectures. Each later
    generation takes the ``top_k`` best non-NaN architectures evaluated so far as parents,
    makes up to ``mutations`` children (each gene replaced by a uniformly random op with
    probability ``mutation_prob``; the new op may equal the old one, as in SPOS) and up to
    ``crossovers`` children (each gene from one of two distinct random parents with
    probability 1/2), rejecting infeasible and already-seen children (at most ``10 * count``
    tries each), then fills with random unseen feasible architectures up to ``population``.
    Only new architectures are scored, in one ``score_fn`` call per generation. Stops early
    when every feasible architecture has been scored.
    """
    t0 = time.perf_counter()
    for name, val, lo in (("population", population, 1), ("top_k", top_k, 1),
                          ("mutations", mutations, 0), ("crossovers", crossovers, 0),
                          ("generations", generations, 1)):
        if int(val) != val or val < lo:
            raise SearchError(f"{name} must be an integer >= {lo}, got {val!r}")
    if not 0.0 <= float(mutation_prob) <= 1.0:
        raise SearchError(f"mutation_prob must lie in [0, 1], got {mutation_prob!r}")
    rng = _as_rng(rng)
    cost_kwargs = dict(cost_kwargs or {})
    feasible = feasible_mask(max_params, max_flops, **cost_kwargs) & _domain_mask(domain)
    weights = NUM_OPS ** np.arange(NUM_EDGES - 1, -1, -1)
    all_enc = all_encodings()
    ev = _Evaluator(score_fn)
    history: list[float] = []
    sizes: list[int] = []

    def random_new(count: int, taken: set[int]) -> list[int]:
        if count <= 0:
            return []
        free = feasible & ~ev.seen_mask
        if taken:
            free[list(taken)] = False
        pool = np.flatnonzero(free)
        if len(pool) == 0:
            return []
        return [int(f) for f in rng.choice(pool, size=min(count, len(pool)), replace=False)]

    def accept(child: np.ndarray, taken: set[int]) -> int | None:
        f = int(child @ weights)
        if not feasible[f] or ev.seen(f) or f in taken:
            return None
        return f

    batch = random_new(population, set())
    for gen in range(generations):
        if not batch:
            break  # feasible space exhausted
        ev.evaluate(all_enc[batch])
        sizes.append(len(batch))
        history.append(_best_so_far(ev))
        if gen == generations - 1:
            break
        # parents: top-k of everything evaluated so far, NaN never selected
        enc_log, score_log = ev.log()
        ok = np.flatnonzero(~np.isnan(score_log))
        order = ok[np.argsort(-score_log[ok], kind="stable")]
        parents = enc_log[order[:top_k]]
        taken: set[int] = set()
        children: list[int] = []
        if len(parents):
            made, tries = 0, 0
            while made < mutations and tries < 10 * mutations:
                tries += 1
                p = parents[rng.integers(len(parents))]
                flip = rng.random(NUM_EDGES) < mutation_prob
                child = np.where(flip, rng.integers(0, NUM_OPS, NUM_EDGES), p)
                f = accept(child, taken)
                if f is not None:
                    taken.add(f)
                    children.append(f)
                    made += 1
            made, tries = 0, 0
            while made < crossovers and tries < 10 * crossovers and len(parents) >= 2:
                tries += 1
                i, j = rng.choice(len(parents), size=2, replace=False)
                pick = rng.random(NUM_EDGES) < 0.5
                child = np.where(pick, parents[i], parents[j])
                f = accept(child, taken)
                if f is not None:
                    taken.add(f)
                    children.append(f)
                    made += 1
        children += random_new(population - len(children), taken)
        batch = children
    settings = dict(population=population, top_k=top_k, mutations=mutations,
                    mutation_prob=mutation_prob, crossovers=crossovers, generations=generations,
                    max_params=max_params, max_flops=max_flops,
                    domain_size=None if domain is None else int(np.sum(domain)))
    return _finish("ea", ev, history, sizes, t0, settings, cost_kwargs)


class ReferenceRankObjective:
    """A per-architecture objective from a rank-based indicator such as FBN-NAS's CPI.

    CPI is the mean, over components (expressivity, trainability, uncertainty), of an
    architecture's rank within the *scored set*, so it is not a function of one architecture
    and would change as a search adds candidates. This objective fixes the set: each
    component is scored once on ``reference_encodings`` (lazily, on first use, NaNs dropped
    per component); a candidate's score is then the mean over components of its empirical-CDF
    position in the reference,

        pos_c(x) = (#{r : s_c(r) < s_c(x)} + 0.5 * #{r : s_c(r) == s_c(x)}) / n_c,

    in [0, 1] (ties averaged). For a candidate that is itself in the reference, ``n_c * pos_c``
    equals its tie-averaged rank minus 1/2, so with a NaN-free reference the objective is an
    increasing affine function of CPI on that set (the whole space as reference reproduces
    CPI's ordering exactly). A NaN component score gives NaN (invalid).

    ``component_fns``: name -> ``fn(encodings (n, 6)) -> (n,)``, higher better.
    """

    def __init__(self, component_fns: Mapping[str, ScoreFn], reference_encodings):
        if not component_fns:
            raise SearchError("ReferenceRankObjective needs at least one component")
        self.component_fns = dict(component_fns)
        self.reference_encodings = validate_encodings(reference_encodings)
        if len(self.reference_encodings) == 0:
            raise SearchError("the reference set is empty")
        self._ref: dict[str, np.ndarray] | None = None

    def _component(self, name: str, enc: np.ndarray) -> np.ndarray:
        out = np.asarray(self.component_fns[name](enc), dtype=np.float64).reshape(-1)
        if out.shape != (len(enc),):
            raise SearchError(f"component {name!r} returned {out.shape} for {len(enc)} architectures")
        return out

    def reference_scores(self) -> dict[str, np.ndarray]:
        """Sorted, NaN-free reference scores per component (computed once)."""
        if self._ref is None:
            ref = {}
            for name in self.component_fns:
                s = self._component(name, self.reference_encodings)
                s = np.sort(s[~np.isnan(s)])
                if len(s) == 0:
                    raise SearchError(f"component {name!r} is NaN on the whole reference set")
                ref[name] = s
            self._ref = ref
        return self._ref

    def __call__(self, encodings) -> np.ndarray:
        enc = validate_encodings(encodings)
        ref = self.reference_scores()
        candidates = {name: self._component(name, enc) for name in ref}
        return reference_cpi(candidates, ref)
