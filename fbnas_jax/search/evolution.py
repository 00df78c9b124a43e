"""TEG evolution: regularized evolution whose parent is the lowest sum of per-indicator ranks (pure NumPy).

TEG-NAS (Sec. 5.2.2) plugs its three indicators into the regularized (aging) evolution of
Real et al. (2019):

* a population of ``population`` random architectures (TEG-NAS: 256);
* each step draws ``sample`` members of the population at random (TEG-NAS: 64), ranks them
  *within that sample* by every indicator, and takes as parent the one with the lowest
  ``rank^kappa + rank^R + rank^MSE`` (:func:`rank_sum`); its mutant joins the population and
  the oldest member leaves;
* after ``steps`` steps (TEG-NAS: 1,000), the pick is the best member of the final population
  by the same rank sum, ranked over the population.

With one indicator this is plain regularized evolution on that indicator. Architectures come
from the space interface only: the initial population is drawn like
:func:`fbnas_jax.search.evolutionary_search`'s (feasible, distinct; a ``candidates`` set
restricts the universe), and a child is :meth:`SearchSpace.mutate` of the parent with
``mutation_prob`` per position, redrawn until it differs from the parent (Real et al.
mutate exactly one position; a product space with ``mutation_prob = 1 / positions``
changes one position on average; the redraw rules out a copy of the parent). Scores are
memoised by :meth:`SearchSpace.key`: an architecture is scored once however often it recurs.

The objective is ``objective(encodings (n, *shape)) -> {indicator: scores (n,)}``, every
indicator oriented higher = better; a NaN score ranks last.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Hashable, Mapping

import numpy as np
from scipy.stats import rankdata

from fbnas_jax.search.algorithms import SearchError, _as_rng, _universe
from fbnas_jax.spaces import SearchSpace
from fbnas_jax.spaces import get as get_space

__all__ = ["EvolutionResult", "rank_sum", "select_parent", "rank_sum_evolution"]

Objective = Callable[[np.ndarray], Mapping[str, np.ndarray]]


def rank_sum(scores: Mapping[str, np.ndarray]) -> np.ndarray:
    """Sum over indicators of each architecture's rank among the given ones, 1 = best.

    Higher scores are better; ties share their average rank; NaN ranks after every number
    (worst). Lower sum = better (TEG-NAS's ``rank^kappa + rank^R + rank^MSE``).
    """
    if not scores:
        raise SearchError("rank_sum needs at least one indicator")
    total = None
    for name, s in scores.items():
        s = np.asarray(s, np.float64).reshape(-1)
        key = np.where(np.isnan(s), np.inf, -s)  # ascending key: best first, NaN last
        r = rankdata(key, method="average")
        total = r if total is None else total + r
        if total.shape != r.shape:
            raise SearchError(f"indicator {name!r} has {r.shape[0]} scores, the others {total.shape[0]}")
    return total


def select_parent(scores: Mapping[str, np.ndarray]) -> int:
    """Index of the lowest :func:`rank_sum` (the first among ties)."""
    return int(np.argmin(rank_sum(scores)))


@dataclasses.dataclass
class EvolutionResult:
    algo: str
    encoding: np.ndarray
    arch: str
    rank_sum: float  # of the pick, ranked over the final population
    scores: dict[str, float]  # the pick's indicator scores
    n_evaluated: int  # distinct architectures scored
    wall_s: float
    history: list[str]  # the parent of every step (string form)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"algo": self.algo, "arch": self.arch, "encoding": np.asarray(self.encoding).astype(int).tolist(),
                "rank_sum": float(self.rank_sum), "scores": {k: float(v) for k, v in self.scores.items()},
                "n_evaluated": int(self.n_evaluated), "wall_s": float(self.wall_s), "settings": dict(self.settings)}


def rank_sum_evolution(objective: Objective, rng, *, population: int = 256, sample: int = 64, steps: int = 1000,
                       mutation_prob: float | None = None, space: SearchSpace | str = "nb201", candidates=None,
                       progress: Callable[[dict[str, Any]], None] | None = None) -> EvolutionResult:
    """Regularized evolution with the rank-sum parent rule (see the module docstring).

    ``mutation_prob`` defaults to ``1 / positions`` of the encoding. ``progress(info)`` is
    called after the initial population and after every step (``step``, ``steps``,
    ``evaluated``).
    """
    t0 = time.perf_counter()
    for name, val, lo in (("population", population, 2), ("sample", sample, 1), ("steps", steps, 0)):
        if int(val) != val or val < lo:
            raise SearchError(f"{name} must be an integer >= {lo}, got {val!r}")
    if sample > population:
        raise SearchError(f"sample ({sample}) cannot exceed population ({population})")
    space = get_space(space)
    size = int(np.prod(space.encoding_shape))
    prob = 1.0 / size if mutation_prob is None else float(mutation_prob)
    if not 0.0 < prob <= 1.0:
        raise SearchError(f"mutation_prob must lie in (0, 1], got {mutation_prob!r}")
    rng = _as_rng(rng)
    universe = _universe(space, candidates, None, None, {})
    cache: dict[Hashable, dict[str, float]] = {}
    names: list[str] = []

    def evaluate(idents: list) -> None:
        new = [i for i in dict.fromkeys(idents) if i not in cache]
        if not new:
            return
        out = objective(np.stack([universe.encoding(i) for i in new]))
        if not out:
            raise SearchError("the objective returned no indicator")
        for name, vals in out.items():
            vals = np.asarray(vals, np.float64).reshape(-1)
            if vals.shape != (len(new),):
                raise SearchError(f"indicator {name!r} returned {vals.shape} for {len(new)} architectures")
            if name not in names:
                names.append(name)
            for i, v in zip(new, vals.tolist()):
                cache.setdefault(i, {})[name] = float(v)

    def table(idents: list) -> dict[str, np.ndarray]:
        return {n: np.asarray([cache[i].get(n, np.nan) for i in idents]) for n in names}

    pop = universe.draw(rng, int(population), set())
    if len(pop) < 2:
        raise SearchError(f"the {space.name} universe holds {len(pop)} architecture(s); evolution needs 2")
    if len(pop) < sample:
        raise SearchError(f"only {len(pop)} architectures to populate with; sample ({sample}) is larger")
    evaluate(pop)
    if progress is not None:
        progress({"step": 0, "steps": int(steps), "evaluated": len(cache)})
    history: list[str] = []
    for step in range(int(steps)):
        picked = rng.choice(len(pop), size=int(sample), replace=False)
        parent_id = pop[int(picked[select_parent(table([pop[i] for i in picked]))])]
        parent = universe.encoding(parent_id)
        history.append(space.to_string(parent))
        child_id = None
        for _ in range(100):
            child = space.mutate(rng, parent, prob)
            if space.key(child) == space.key(parent):
                continue
            child_id = universe.accept(child, lambda f: True)
            if child_id is not None:
                break
        if child_id is None:
            raise SearchError(f"no valid mutant of {space.to_string(parent)} in 100 tries")
        evaluate([child_id])
        pop = pop[1:] + [child_id]  # aging: the oldest leaves
        if progress is not None:
            progress({"step": step + 1, "steps": int(steps), "evaluated": len(cache)})
    final = table(pop)
    sums = rank_sum(final)
    best = int(np.argmin(sums))
    enc = universe.encoding(pop[best])
    settings = dict(population=int(population), sample=int(sample), steps=int(steps), mutation_prob=prob,
                    indicators=list(names))
    return EvolutionResult("teg-ea" if len(names) > 1 else "rea", np.asarray(enc, np.int32), space.to_string(enc),
                           float(sums[best]), {n: float(final[n][best]) for n in names}, len(cache),
                           time.perf_counter() - t0, history, settings)
