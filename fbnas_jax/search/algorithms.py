"""Architecture search in any search space, driven by any objective (pure NumPy).

The objective is any callable ``score_fn(encodings) -> scores``: int32 encodings of shape
``(n, *encoding_shape)`` of the space in, ``n`` floats out, **higher is better**. A NaN score
marks an architecture as invalid: it is counted as evaluated but never selected (as parent or
as result). The search never calls ``score_fn`` twice for the same architecture (scores are
memoised by architecture: :meth:`SearchSpace.key`, so isomorphic NB101 cells count once) and
calls it with whole batches (one call per generation), so a jit-compiled, chunked scoring
engine can sit behind it.

* :func:`random_search`: ``n_samples`` distinct architectures drawn uniformly from those
  meeting the constraints; the best one wins.
* :func:`evolutionary_search`: the evolutionary search of SPOS (Guo et al., 2020) used by
  BN-NAS: a random initial population; each generation keeps the ``top_k`` best
  architectures seen so far, makes ``mutations`` children by the space's mutation and
  ``crossovers`` children by its crossover of top-k parents, and fills up to ``population``
  with random architectures. Children that violate the constraints or that were already
  evaluated (or already made this generation) are rejected and retried, at most
  ``10 * count`` tries per kind (as SPOS). ``generations`` counts *evaluated* generations,
  the initial one included, so the defaults score ``20 * 50 = 1000`` architectures.
* :class:`ReferenceRankObjective`: turns a rank-based indicator such as FBN-NAS's CPI (mean
  of ranks of several component scores over the scored set) into a per-architecture
  objective by ranking candidates against a fixed reference set.

Where architectures come from (the *universe*): an enumerable space (NB201, 15,625 cells)
or a given ``candidates`` set (e.g. the 1,001 NB101 cells with ground truth) is enumerated:
the constraints are evaluated once over it and random architectures are drawn from its
feasible, unseen members; an EA child outside ``candidates`` counts as infeasible. Otherwise
(NB101's 423,624 cells) random architectures are drawn with :meth:`SearchSpace.sample` and
rejected until feasible and new (at most ``100 * count`` draws).

Constraints ``max_params`` / ``max_flops`` (millions, :meth:`SearchSpace.costs` with
``cost_kwargs``) are inclusive.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Hashable, Mapping

import numpy as np

from fbnas_jax.ranking import reference_cpi
from fbnas_jax.spaces import SearchSpace
from fbnas_jax.spaces import get as get_space

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
            "encoding": np.asarray(self.encoding).astype(int).tolist(),
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


def _check_limits(max_params, max_flops) -> None:
    for name, val in (("max_params", max_params), ("max_flops", max_flops)):
        if val is not None and not (np.isfinite(val) and val > 0):
            raise SearchError(f"{name} must be a positive number of millions, got {val!r}")


def _meets(space: SearchSpace, encodings: np.ndarray, max_params, max_flops, cost_kwargs) -> np.ndarray:
    mask = np.ones(len(encodings), bool)
    if max_params is None and max_flops is None:
        return mask
    params, flops = space.costs(encodings, **cost_kwargs)
    if max_params is not None:
        mask &= params <= max_params
    if max_flops is not None:
        mask &= flops <= max_flops
    return mask


def feasible_mask(max_params: float | None = None, max_flops: float | None = None, *,
                  space: SearchSpace | str = "nb201", candidates=None, **cost_kwargs) -> np.ndarray:
    """Boolean mask over ``space.all_encodings()`` (or ``candidates``): meets both limits (inclusive)."""
    _check_limits(max_params, max_flops)
    space = get_space(space)
    if candidates is None:
        if not space.enumerable:
            raise SearchError(f"the {space.name} space is not enumerated: pass candidates")
        enc = space.all_encodings()
    else:
        enc = space.validate_batch(candidates)
    mask = _meets(space, enc, max_params, max_flops, cost_kwargs)
    if not mask.any():
        params, flops = space.costs(enc, **cost_kwargs)
        raise SearchError(
            f"no {space.name.upper()} architecture meets max_params={max_params}, max_flops={max_flops} "
            f"(smallest: {params.min():.4f} M params, {flops.min():.4f} M FLOPs)")
    return mask


# ----------------------------------------------------------------------------- universes

class _Enumerated:
    """Architectures = rows of ``encodings``; ids are row numbers."""

    def __init__(self, space: SearchSpace, encodings: np.ndarray, feasible: np.ndarray, full_space: bool):
        self.space, self.encodings, self.feasible = space, encodings, feasible
        self.seen_mask = np.zeros(len(encodings), bool)
        self._row = None if full_space else {space.key(e): i for i, e in enumerate(encodings)}

    def rows(self, encodings: np.ndarray) -> np.ndarray:
        if self._row is None:
            return self.space.index(encodings)
        return np.asarray([self._row.get(self.space.key(e), -1) for e in encodings], np.int64)

    def ids_of(self, encodings: np.ndarray) -> list[Hashable]:
        rows = self.rows(encodings)
        if (rows < 0).any():
            bad = self.space.to_string(encodings[int(np.flatnonzero(rows < 0)[0])])
            raise SearchError(f"architecture {bad} is not among the search's candidates")
        return [int(r) for r in rows]

    def encoding(self, ident: int) -> np.ndarray:
        return self.encodings[ident]

    def mark_seen(self, ident: int) -> None:
        self.seen_mask[ident] = True

    def draw(self, rng: np.random.Generator, count: int, taken: set) -> list[int]:
        """``count`` distinct random feasible unseen ids (fewer when the universe runs out)."""
        if count <= 0:
            return []
        free = self.feasible & ~self.seen_mask
        if taken:
            free[list(taken)] = False
        pool = np.flatnonzero(free)
        if len(pool) == 0:
            return []
        return [int(f) for f in rng.choice(pool, size=min(count, len(pool)), replace=False)]

    def accept(self, child: np.ndarray, is_new: Callable[[Hashable], bool]):
        f = int(self.rows(child[None])[0])
        if f < 0 or not self.feasible[f] or not is_new(f):
            return None
        return f

    def size_feasible(self) -> int:
        return int(self.feasible.sum())


class _Open:
    """Architectures drawn from the space by rejection; ids are :meth:`SearchSpace.key`."""

    TRIES = 100  # draws per wanted architecture before giving up

    def __init__(self, space: SearchSpace, limits: tuple, cost_kwargs: Mapping[str, Any]):
        self.space, self.limits, self.cost_kwargs = space, limits, dict(cost_kwargs)
        self.known: dict[str, np.ndarray] = {}
        self.seen: set[str] = set()

    def _feasible(self, enc: np.ndarray) -> bool:
        return bool(_meets(self.space, enc[None], *self.limits, self.cost_kwargs)[0])

    def ids_of(self, encodings: np.ndarray) -> list[Hashable]:
        out = []
        for e in encodings:
            k = self.space.key(e)
            self.known.setdefault(k, np.asarray(e, np.int32))
            out.append(k)
        return out

    def encoding(self, ident: str) -> np.ndarray:
        return self.known[ident]

    def mark_seen(self, ident: str) -> None:
        self.seen.add(ident)

    def draw(self, rng: np.random.Generator, count: int, taken: set) -> list[str]:
        out: list[str] = []
        for _ in range(self.TRIES * max(count, 0)):
            if len(out) >= count:
                break
            e = self.space.sample(rng, 1)[0]
            k = self.space.key(e)
            if k in self.seen or k in taken or k in out or not self._feasible(e):
                continue
            self.known.setdefault(k, e)
            out.append(k)
        return out

    def accept(self, child: np.ndarray, is_new: Callable[[Hashable], bool]):
        k = self.space.key(child)
        if not is_new(k) or not self._feasible(child):
            return None
        self.known.setdefault(k, np.asarray(child, np.int32))
        return k

    def size_feasible(self) -> int | None:
        return None


def _universe(space: SearchSpace, candidates, max_params, max_flops, cost_kwargs):
    _check_limits(max_params, max_flops)
    if candidates is not None or space.enumerable:
        enc = space.all_encodings() if candidates is None else space.validate_batch(candidates)
        if len(enc) == 0:
            raise SearchError("the candidate set is empty")
        mask = feasible_mask(max_params, max_flops, space=space, candidates=enc, **cost_kwargs)
        if candidates is not None:  # isomorphic duplicates are one architecture: keep the first
            keys = [space.key(e) for e in enc]
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            dup = np.ones(len(enc), bool)
            dup[list(first.values())] = False
            mask = mask & ~dup
        return _Enumerated(space, enc, mask, full_space=candidates is None)
    return _Open(space, (max_params, max_flops), cost_kwargs)


class _Evaluator:
    """Memoised, batched calls of the objective; keeps the evaluation log."""

    def __init__(self, score_fn: ScoreFn, universe):
        if not callable(score_fn):
            raise SearchError(f"score_fn must be callable, got {type(score_fn).__name__}")
        self.score_fn, self.universe = score_fn, universe
        self.cache: dict[Hashable, float] = {}
        self.order: list[Hashable] = []

    def seen(self, ident: Hashable) -> bool:
        return ident in self.cache

    def evaluate_ids(self, ids: list[Hashable]) -> np.ndarray:
        uniq = [i for i in dict.fromkeys(ids) if i not in self.cache]  # de-duplicate the batch too
        if uniq:
            enc = np.stack([self.universe.encoding(i) for i in uniq])
            raw = self.score_fn(enc)
            scores = np.asarray(raw, dtype=np.float64).reshape(-1) if raw is not None else None
            if scores is None or scores.shape != (len(uniq),):
                got = None if scores is None else scores.shape
                raise SearchError(
                    f"score_fn returned shape {got} for {len(uniq)} architectures; it must return "
                    f"one score per architecture")
            for i, s in zip(uniq, scores.tolist()):
                self.cache[i] = float(s)
                self.order.append(i)
                self.universe.mark_seen(i)
        return np.asarray([self.cache[i] for i in ids], dtype=np.float64)

    def log(self) -> tuple[np.ndarray, np.ndarray]:
        shape = tuple(self.universe.space.encoding_shape)
        enc = (np.stack([self.universe.encoding(i) for i in self.order]) if self.order
               else np.zeros((0,) + shape, np.int32))
        return enc, np.asarray([self.cache[i] for i in self.order], dtype=np.float64)


def _as_rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _best_so_far(ev: _Evaluator) -> float:
    vals = np.asarray([ev.cache[f] for f in ev.order], dtype=np.float64)
    vals = vals[~np.isnan(vals)]
    return float(vals.max()) if len(vals) else float("nan")


def _finish(algo, space, ev: _Evaluator, history, sizes, t0, settings, cost_kwargs) -> SearchResult:
    enc, scores = ev.log()
    ok = ~np.isnan(scores)
    if not ok.any():
        raise SearchError(
            f"{algo}: the objective returned NaN for all {len(scores)} evaluated architectures; "
            f"nothing can be chosen")
    cand = np.flatnonzero(ok)
    best = int(cand[np.argmax(scores[cand])])  # first evaluated among ties
    params, flops = space.costs(enc[best:best + 1], **cost_kwargs)
    return SearchResult(
        algo=algo, encoding=enc[best].copy(), arch=space.to_string(enc[best]),
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
    space: SearchSpace | str = "nb201",
    candidates=None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> SearchResult:
    """Score ``n_samples`` distinct feasible architectures drawn uniformly; return the best.

    If fewer than ``n_samples`` architectures meet the constraints, all of them are scored.
    ``rng``: a ``np.random.Generator`` or a seed. ``cost_kwargs`` go to ``space.costs``
    (NB201: ``num_classes``, ``channels``, ...). ``candidates``: restrict the search to these
    encodings (see the module docstring).
    """
    t0 = time.perf_counter()
    n_samples = int(n_samples)
    if n_samples < 1:
        raise SearchError(f"n_samples must be >= 1, got {n_samples}")
    rng = _as_rng(rng)
    space = get_space(space)
    cost_kwargs = dict(cost_kwargs or {})
    universe = _universe(space, candidates, max_params, max_flops, cost_kwargs)
    ev = _Evaluator(score_fn, universe)
    chosen = universe.draw(rng, n_samples, set())
    if not chosen:
        raise SearchError(f"random search found no feasible {space.name} architecture "
                          f"(max_params={max_params}, max_flops={max_flops})")
    ev.evaluate_ids(chosen)
    if progress is not None:
        progress({"generation": 1, "generations": 1, "evaluated": len(chosen), "best": _best_so_far(ev)})
    settings = dict(n_samples=n_samples, max_params=max_params, max_flops=max_flops)
    return _finish("random", space, ev, [_best_so_far(ev)], [len(chosen)], t0, settings, cost_kwargs)


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
    space: SearchSpace | str = "nb201",
    candidates=None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> SearchResult:
    """SPOS / BN-NAS evolutionary search (see the module docstring).

    Generation 0 scores ``population`` distinct random feasible architectures. Each later
    generation takes the ``top_k`` best non-NaN architectures evaluated so far as parents,
    makes up to ``mutations`` children (:meth:`SearchSpace.mutate` with ``mutation_prob``: NB201
    replaces each gene by a uniformly random op with that probability, the new op may equal
    the old one, as in SPOS) and up to ``crossovers`` children (:meth:`SearchSpace.crossover` of
    two distinct random parents), rejecting infeasible and already-seen children (at most
    ``10 * count`` tries each), then fills with random unseen feasible architectures up to
    ``population``. Only new architectures are scored, in one ``score_fn`` call per
    generation. Stops early when every feasible architecture has been scored.
    ``progress(info)``, if given, is called after each generation with ``generation``,
    ``generations``, ``evaluated`` and ``best``.
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
    space = get_space(space)
    cost_kwargs = dict(cost_kwargs or {})
    universe = _universe(space, candidates, max_params, max_flops, cost_kwargs)
    ev = _Evaluator(score_fn, universe)
    history: list[float] = []
    sizes: list[int] = []

    batch = universe.draw(rng, population, set())
    for gen in range(generations):
        if not batch:
            break  # feasible space exhausted
        ev.evaluate_ids(batch)
        sizes.append(len(batch))
        history.append(_best_so_far(ev))
        if progress is not None:
            progress({"generation": gen + 1, "generations": generations, "evaluated": len(ev.order),
                      "best": history[-1]})
        if gen == generations - 1:
            break
        # parents: top-k of everything evaluated so far, NaN never selected
        enc_log, score_log = ev.log()
        ok = np.flatnonzero(~np.isnan(score_log))
        order = ok[np.argsort(-score_log[ok], kind="stable")]
        parents = enc_log[order[:top_k]]
        taken: set = set()
        children: list = []
        is_new = lambda f: not ev.seen(f) and f not in taken  # noqa: E731
        if len(parents):
            made, tries = 0, 0
            while made < mutations and tries < 10 * mutations:
                tries += 1
                p = parents[rng.integers(len(parents))]
                f = universe.accept(space.mutate(rng, p, mutation_prob), is_new)
                if f is not None:
                    taken.add(f)
                    children.append(f)
                    made += 1
            made, tries = 0, 0
            while made < crossovers and tries < 10 * crossovers and len(parents) >= 2:
                tries += 1
                i, j = rng.choice(len(parents), size=2, replace=False)
                f = universe.accept(space.crossover(rng, parents[i], parents[j]), is_new)
                if f is not None:
                    taken.add(f)
                    children.append(f)
                    made += 1
        children += universe.draw(rng, population - len(children), taken)
        batch = children
    settings = dict(population=population, top_k=top_k, mutations=mutations,
                    mutation_prob=mutation_prob, crossovers=crossovers, generations=generations,
                    max_params=max_params, max_flops=max_flops)
    return _finish("ea", space, ev, history, sizes, t0, settings, cost_kwargs)


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

    ``component_fns``: name -> ``fn(encodings (n, *encoding_shape)) -> (n,)``, higher better.
    """

    def __init__(self, component_fns: Mapping[str, ScoreFn], reference_encodings,
                 space: SearchSpace | str = "nb201"):
        if not component_fns:
            raise SearchError("ReferenceRankObjective needs at least one component")
        self.space = get_space(space)
        self.component_fns = dict(component_fns)
        self.reference_encodings = self.space.validate_batch(reference_encodings)
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
        enc = self.space.validate_batch(encodings)
        ref = self.reference_scores()
        candidates = {name: self._component(name, enc) for name in ref}
        return reference_cpi(candidates, ref)
