"""Rank statistics shared by indicators, search and benchmarks (pure NumPy)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def rank_average(scores: np.ndarray) -> np.ndarray:
    """Ranks 1..n (higher score -> higher rank), ties averaged; NaN stays NaN."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, np.float64)
    out = np.full(scores.shape, np.nan)
    ok = np.isfinite(scores)
    out[ok] = rankdata(scores[ok], method="average")
    return out


def reference_cpi(candidate_scores: Mapping[str, np.ndarray], reference_scores: Mapping[str, np.ndarray],
                  components: Sequence[str] | None = None) -> np.ndarray:
    """Rank-based score (e.g. FBN-NAS CPI) of candidates relative to a fixed reference set, in [0, 1].

    For each component, the candidate's mid-rank empirical-CDF position in the reference
    scores, ``(#{ref < x} + 0.5 #{ref == x}) / n_ref``; averaged over ``components`` (default:
    every key of ``reference_scores``). Unlike
    :func:`fbnas_jax.indicators.supernet.cpi_from_scores` a candidate's value does not depend on which other candidates
    are scored, so it can drive a search (e.g. the reference = a random sample of the
    space). Within the reference set itself it equals ``(rank - 0.5) / n``, a monotone map of
    the set's CPI. NaN components (in candidates) give NaN; NaN reference entries are dropped.
    """
    components = tuple(reference_scores) if components is None else tuple(components)
    out = None
    for c in components:
        ref = np.asarray(reference_scores[c], np.float64)
        ref = ref[~np.isnan(ref) & ~np.isposinf(ref)]
        if ref.size == 0:
            raise ValueError(f"reference scores of {c!r} are all NaN or empty")
        x = np.asarray(candidate_scores[c], np.float64)
        # -inf (degenerate) sits below every finite value, tied with the reference's -inf
        finite = np.concatenate([ref[np.isfinite(ref)], x[np.isfinite(x)]])
        floor = (finite.min() if finite.size else 0.0) - 1.0
        ref = np.sort(np.where(np.isneginf(ref), floor, ref))
        x = np.where(np.isneginf(x), floor, x)
        below = np.searchsorted(ref, x, side="left")
        at_or_below = np.searchsorted(ref, x, side="right")
        pos = (below + 0.5 * (at_or_below - below)) / ref.size
        pos = np.where(np.isnan(x), np.nan, pos)
        out = pos if out is None else out + pos
    return out / len(components)
