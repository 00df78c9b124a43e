"""How well indicator scores rank architectures: Kendall tau, Spearman rho, top-k precision.

Inputs are plain arrays, row-aligned (row ``i`` of every score and truth array is the same
architecture), or CSV files joined by architecture::

    table = correlate_files("scores.csv", "nb201_cifar10_accuracy.csv", ["cifar10_test_200ep"])
    print(format_table(table))

* **Kendall tau** (``scipy.stats.kendalltau``, tau-b) and **Spearman rho**
  (``scipy.stats.spearmanr``) of indicator vs ground-truth column.
* **Top-10 % precision**: with ``k = max(1, round(0.1 * n))``, the fraction of the
  indicator's ``k`` highest-scoring architectures that are among the ``k`` most accurate
  (ties broken by row order, the same rule on both sides).
* Rows where the score is NaN are excluded, with a :class:`NaNScoreWarning` naming how many
  and which architectures; rows where the ground truth is NaN likewise (``MissingTruthWarning``).
  ``n`` in each result row is the number of architectures actually used.

A scores CSV has a header row, an ``arch`` column of the space's architecture strings (NB201
cell strings by default; ``space=`` names another) and one numeric column per indicator
(empty / ``nan`` cells read as NaN); ground truth is any CSV that
:func:`fbnas_jax.groundtruth.load_ground_truth` reads for that space.
"""
from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Mapping, Sequence

import numpy as np

from fbnas_jax.groundtruth import GroundTruth, GroundTruthError, load_ground_truth

__all__ = [
    "BenchError", "NaNScoreWarning", "MissingTruthWarning", "ConstantColumnWarning", "ScoresTable", "CorrelationRow",
    "read_scores_csv", "align_scores_truth", "correlate", "correlate_files", "top_precision",
    "format_table",
]

ARCH_COLUMN = "arch"
_SHOW = 10  # architectures named in a warning


class BenchError(ValueError):
    """Inputs that cannot be compared (unknown names, no common architectures, bad CSV)."""


class NaNScoreWarning(UserWarning):
    """Some architectures have NaN scores; they are excluded from the correlation."""


class MissingTruthWarning(UserWarning):
    """Some architectures have no ground-truth value; they are excluded."""


class ConstantColumnWarning(UserWarning):
    """A score or truth column is constant: rank correlations with it are undefined (NaN)."""


@dataclasses.dataclass(frozen=True)
class ScoresTable:
    archs: list[str]  # canonical architecture strings
    encodings: np.ndarray  # (n, *encoding_shape) int32
    columns: dict[str, np.ndarray]  # indicator -> (n,) float64
    source: str = ""
    text_columns: dict[str, str] = dataclasses.field(default_factory=dict)  # left out: which rows

    def __len__(self) -> int:
        return len(self.archs)


@dataclasses.dataclass(frozen=True)
class CorrelationRow:
    indicator: str
    column: str
    n: int
    n_excluded: int
    kendall_tau: float
    kendall_p: float
    spearman_rho: float
    spearman_p: float
    top_precision: float
    top_fraction: float

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in dataclasses.asdict(self).items()}


def read_scores_csv(path: str | os.PathLike, space="nb201") -> ScoresTable:
    """Read a scores CSV (``arch`` + numeric indicator columns).

    A scores CSV has the shape of a ground-truth CSV, so :func:`load_ground_truth` reads it
    (same validation: malformed or repeated architectures, ragged rows); text columns and an
    ``index`` column are dropped.
    """
    if not os.path.isfile(os.fspath(path)):
        raise FileNotFoundError(f"scores CSV not found: {os.fspath(path)!r}")
    try:
        table = load_ground_truth(path, space=space)
    except GroundTruthError as err:
        raise BenchError(str(err)) from None
    cols = {n: v for n, v in table.columns.items() if n.lower() != "index"}
    return ScoresTable(table.archs, table.encodings, cols, table.source, dict(table.text_columns))


def _select(names: Sequence[str] | None, available: Sequence[str], what: str, source: str,
            text_columns: Mapping[str, str] | None = None) -> list[str]:
    """Resolve requested column names (``gamma`` matches a lone ``gamma@tag``, see
    :func:`fbnas_jax.scores_io.resolve_column`); a left-out text column says which rows."""
    from fbnas_jax.scores_io import ScoresColumnError, resolve_column

    if names is None:
        return list(available)
    names = list(names)
    if not names:
        raise BenchError(f"no {what} selected")
    out = []
    for n in names:
        if text_columns and n in text_columns:
            raise BenchError(f"{what} {n!r} of {source} is not numeric: {text_columns[n]}")
        try:
            out.append(resolve_column(n, available, source=source, what=what))
        except ScoresColumnError as err:
            raise BenchError(str(err)) from None
    return out


def align_scores_truth(scores: ScoresTable, truth: GroundTruth):
    """Join by architecture. Returns ``(archs, scores_dict, truth_dict)`` over common archs."""
    i_truth, i_scores = truth.align(scores.encodings)
    if len(i_scores) == 0:
        raise BenchError(
            f"scores ({scores.source or 'scores'}, {len(scores)} architectures) and ground truth "
            f"({truth.source or 'truth'}, {len(truth)} architectures) have no architectures in common")
    archs = [scores.archs[i] for i in i_scores]
    s = {k: v[i_scores] for k, v in scores.columns.items()}
    t = {k: v[i_truth] for k, v in truth.columns.items()}
    return archs, s, t


def top_precision(score: np.ndarray, truth: np.ndarray, fraction: float = 0.1) -> float:
    """Fraction of the score's top ``fraction`` that are in the truth's top ``fraction``."""
    score, truth = np.asarray(score, np.float64), np.asarray(truth, np.float64)
    n = len(score)
    if n == 0:
        return math.nan
    if not 0 < fraction <= 1:
        raise BenchError(f"top fraction must lie in (0, 1], got {fraction}")
    k = max(1, int(round(fraction * n)))
    top_s = np.argsort(-score, kind="stable")[:k]
    top_t = np.argsort(-truth, kind="stable")[:k]
    return len(np.intersect1d(top_s, top_t)) / k


def _describe(archs: Sequence[str] | None, idx: np.ndarray) -> str:
    if archs is None:
        names = [f"row {int(i)}" for i in idx[:_SHOW]]
    else:
        names = [archs[int(i)] for i in idx[:_SHOW]]
    more = f" and {len(idx) - _SHOW} more" if len(idx) > _SHOW else ""
    return ", ".join(names) + more


def _warn_if_constant(values: np.ndarray, what: str) -> None:
    v = values[~np.isnan(values)]
    if len(v) >= 2 and np.all(v == v[0]):
        warnings.warn(ConstantColumnWarning(
            f"{what} is constant ({v[0]:g} for all {len(v)} architectures): its Kendall tau and "
            "Spearman rho are undefined (nan) -- was it scored on the right network?"), stacklevel=3)


def correlate(
    scores: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    *,
    archs: Sequence[str] | None = None,
    indicators: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    top_fraction: float = 0.1,
) -> list[CorrelationRow]:
    """One :class:`CorrelationRow` per (indicator, column); arrays are row-aligned.

    ``archs`` (cell strings, same order) names the architectures in NaN warnings.
    """
    from scipy.stats import kendalltau, spearmanr

    inds = _select(indicators, list(scores), "indicator", "the scores")
    cols = _select(columns, list(truth), "ground-truth column", "the ground truth")
    lengths = {len(np.asarray(scores[i])) for i in inds} | {len(np.asarray(truth[c])) for c in cols}
    if archs is not None:
        lengths.add(len(archs))
    if len(lengths) != 1:
        raise BenchError(f"scores and truth arrays must be row-aligned; got lengths {sorted(lengths)}")
    n_all = lengths.pop()
    if n_all == 0:
        raise BenchError("no architectures to correlate")
    rows = []
    for c in cols:
        t = np.asarray(truth[c], np.float64)
        bad_t = np.flatnonzero(np.isnan(t))
        if len(bad_t):
            warnings.warn(MissingTruthWarning(
                f"ground-truth column {c!r} is NaN for {len(bad_t)} of {n_all} architectures, "
                f"excluded: {_describe(archs, bad_t)}"), stacklevel=2)
        _warn_if_constant(t, f"ground-truth column {c!r}")
    for ind in inds:
        s = np.asarray(scores[ind], np.float64)
        bad_s = np.flatnonzero(np.isnan(s))
        if len(bad_s):
            warnings.warn(NaNScoreWarning(
                f"indicator {ind!r} has NaN scores for {len(bad_s)} of {n_all} architectures, "
                f"excluded (never ranked): {_describe(archs, bad_s)}"), stacklevel=2)
        _warn_if_constant(s, f"indicator {ind!r}")
        for c in cols:
            t = np.asarray(truth[c], np.float64)
            ok = ~np.isnan(s) & ~np.isnan(t)
            n = int(ok.sum())
            if n >= 2:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # constant input -> nan, reported as such
                    kt = kendalltau(s[ok], t[ok])
                    sr = spearmanr(s[ok], t[ok])
                tau, tp = float(kt.statistic), float(kt.pvalue)
                rho, rp = float(sr.statistic), float(sr.pvalue)
            else:
                tau = tp = rho = rp = math.nan
            prec = top_precision(s[ok], t[ok], top_fraction) if n else math.nan
            rows.append(CorrelationRow(ind, c, n, n_all - n, tau, tp, rho, rp, prec, top_fraction))
    return rows


def correlate_files(
    scores_path: str | os.PathLike,
    truth_path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    indicators: Sequence[str] | None = None,
    top_fraction: float = 0.1,
    space="nb201",
):
    """Read both CSVs (architectures of ``space``), join by architecture and :func:`correlate`.

    Returns ``(rows, archs, scores_dict, truth_dict)`` (the joined data, for plots).
    ``columns=None``: every numeric ground-truth column except ``index``.
    """
    table = read_scores_csv(scores_path, space=space)
    gt = load_ground_truth(truth_path, space=space)
    if not table.columns:
        raise BenchError(f"{table.source}: no numeric indicator columns besides 'arch'")
    inds = _select(indicators, list(table.columns), "indicator", table.source, table.text_columns)
    avail = [c for c in gt.column_names if c.lower() != "index"]
    cols = _select(columns, gt.column_names if columns is not None else avail,
                   "ground-truth column", gt.source, gt.text_columns)
    archs, s, t = align_scores_truth(table, gt)
    rows = correlate(s, t, archs=archs, indicators=inds, columns=cols, top_fraction=top_fraction)
    return rows, archs, s, t


def format_table(rows: Sequence[CorrelationRow]) -> str:
    """Plain-text table, one line per (indicator, column)."""
    def f(x, spec="+.4f"):
        return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)

    pct = f"top{100 * rows[0].top_fraction:g}%" if rows else "top%"
    head = ["indicator", "column", "n", "kendall_tau", "spearman_rho", pct]
    body = [[r.indicator, r.column, str(r.n), f(r.kendall_tau), f(r.spearman_rho),
             f(r.top_precision, ".4f")] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)
