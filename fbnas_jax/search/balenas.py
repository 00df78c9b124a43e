"""Reading an architecture off a differentiable search: argmax, BaLeNAS-TF, zero-cost control.

* :func:`argmax_encoding`: the strongest op per edge of ``alpha`` (DARTS) or of ``mu``
  (BaLeNAS: the mean of ``q``).
* :func:`sample_encodings`: BaLeNAS-TF's candidates: ``n`` draws ``alpha ~ q(alpha | mu,
  sigma^2)``, each read off by argmax per edge.
* :func:`select_by_score`: the best-scoring of the first ``k`` candidates for each ``k`` of
  ``sizes`` (nested draws: TF(10) is the first 10 of TF(100)); duplicates are scored once.
* :func:`indicator_scorer`: any registered per-architecture indicator (synflow by default)
  through the scoring engine (:mod:`fbnas_jax.scoring`), on a freshly initialised supernet
  of the searched network's sizes, as zero-cost proxies are meant to be used.
* The zero-cost NAS control of BaLeNAS's Table 2 is :func:`select_by_score` on uniformly
  random architectures (``space.sample``) with the same scorer.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np

from fbnas_jax.spaces import nb201


def argmax_encoding(arch) -> np.ndarray:
    """Op index per edge, ``argmax`` of ``arch`` (shape (6, 5)) over ops."""
    return nb201.weights_to_encodings(np.asarray(arch))


def sample_encodings(key, vadam, mu, vadam_state, n: int) -> np.ndarray:
    """``n`` architectures from ``q``: argmax per edge of ``n`` draws ``mu + sigma * eps``."""
    draws = vadam.sample(key, mu, vadam_state, num=n)
    return argmax_encoding(np.asarray(draws))


def select_by_score(score_fn: Callable[[np.ndarray], np.ndarray], candidates: np.ndarray,
                    sizes: Sequence[int]) -> dict[int, dict]:
    """For each ``k`` in ``sizes``: the best of ``candidates[:k]`` by ``score_fn`` (higher wins;
    NaN never wins). Returns ``{k: {"encoding", "score", "unique"}}``."""
    candidates = np.asarray(candidates, np.int32)
    sizes = sorted(int(k) for k in sizes)
    if not sizes or sizes[-1] > len(candidates):
        raise ValueError(f"sizes {sizes} need at least {sizes[-1] if sizes else 1} candidates, got {len(candidates)}")
    _, first, inverse = np.unique(candidates, axis=0, return_index=True, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    unique = candidates[np.sort(first)]
    order = {tuple(u): i for i, u in enumerate(unique)}
    scores_u = np.asarray(score_fn(unique), np.float64)
    scores = np.array([scores_u[order[tuple(c)]] for c in candidates])
    out = {}
    for k in sizes:
        s = np.where(np.isnan(scores[:k]), -np.inf, scores[:k])
        i = int(np.argmax(s))
        out[k] = {"encoding": candidates[i], "score": float(scores[i]),
                  "unique": int(len({tuple(c) for c in candidates[:k]}))}
    return out


def indicator_scorer(net, dataset, indicator: str = "synflow", *, seed: int = 0, chunk_size: int = 16,
                     log=None) -> Callable[[np.ndarray], np.ndarray]:
    """``score(encodings) -> scores`` of a registered per-architecture indicator on a freshly
    initialised supernet ``net`` (the scoring engine compiles once, then reuses)."""
    from fbnas_jax import scoring
    from fbnas_jax.indicators import base as ind_base
    from fbnas_jax.training.loop import LoadedRun

    ind = ind_base.get(indicator)  # UnknownIndicatorError names the registered ones
    if ind.family == "composite":
        raise ValueError(f"--select-indicator {indicator!r} is rank-based; give a per-architecture indicator "
                         "such as synflow, snip, naswot")
    run = LoadedRun(config=None, net=net, variables=None, num_classes=dataset.num_classes,
                    input_shape=tuple(dataset.image_shape), step=0)
    n_eval = min(64, dataset.num_train)
    ctx = scoring.make_context(run, dataset, eval_batch_size=n_eval, mc_samples=1, mc_batch_size=min(8, n_eval),
                               seed=seed, fresh_init=True)
    scorer = scoring.Scorer(ctx, chunk_size=chunk_size if jax.default_backend() == "cpu" else 256, log=log)
    return lambda enc: scorer(indicator, enc)


def read_off(run, *, log=None) -> dict[str, dict]:
    """Every pick of a finished search (:class:`fbnas_jax.search.differentiable.SearchRun`):

    ``argmax`` (of alpha or mu); for BaLeNAS also ``tf<k>`` (BaLeNAS-TF: best of the first k of
    ``max(sizes)`` draws from q by ``search.select_indicator``) and ``zero_cost<k>`` (the same on
    ``search.control_samples`` uniformly random architectures). Each pick: ``encoding`` and,
    when scored, ``score`` and ``unique`` (distinct architectures among the k). Draws are keyed
    by ``train.seed``.
    """
    acfg, seed = run.arch_config, run.config.train.seed
    picks = {"argmax": {"encoding": argmax_encoding(run.state.arch)}}
    if acfg.algo != "balenas":
        return picks
    sizes = acfg.sample_sizes()
    score = indicator_scorer(run.net, run.dataset, acfg.select_indicator, seed=seed, log=log)
    key = jax.random.fold_in(jax.random.key(seed), 0x7F)
    cands = sample_encodings(key, run.arch_opt, run.state.arch, run.state.arch_opt_state, max(sizes))
    if log is not None:
        log(f"BaLeNAS-TF: {len(np.unique(cands, axis=0))} distinct of {len(cands)} architectures sampled from q; "
            f"scoring them with {acfg.select_indicator}")
    for k, v in select_by_score(score, cands, sizes).items():
        picks[f"tf{k}"] = v
    if acfg.control_samples:
        rand = run.space.sample(np.random.default_rng([seed, 0xC0]), acfg.control_samples)
        sizes_c = sorted({k for k in sizes if k <= acfg.control_samples} | {acfg.control_samples})
        for k, v in select_by_score(score, rand, sizes_c).items():
            picks[f"zero_cost{k}"] = v
    return picks
