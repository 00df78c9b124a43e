"""Inputs and outputs of scoring runs: which architectures, which data, the scores CSV.

Kept apart from :mod:`fbnas_jax.scoring` (the compiled engine) so that the command line,
the search and the benchmarks share one reader of ``--archs`` specs and one writer of
scores CSVs (``arch`` = the space's architecture string, then one column per indicator).

**Column names.** A scores column is the registered indicator name, optionally suffixed
``@<tag>`` naming the supernet / network it was computed on: ``gamma@bnnas``,
``gamma@fair``, ``naswot``. Every reader (``bench correlation``, ``search --scores``,
plots) accepts exactly these names, and a bare name matches the one ``name@tag`` column
of that indicator (:func:`resolve_column`; several -> an error listing them).
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Sequence

TAG_SEPARATOR = "@"
_TAG_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")


class ScoresColumnError(KeyError, ValueError):
    """A column name that names no column, or several (a bare name with several tags)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def check_tag(tag: str | None) -> str | None:
    """``tag`` if usable in a column name (letters, digits, ``_ . + -``), else an error."""
    if tag is None or tag == "":
        return None
    if not _TAG_RE.match(tag):
        raise ScoresColumnError(f"tag {tag!r} may hold only letters, digits and _ . + - (e.g. 'fair', 'bnnas')")
    return tag


def column_name(indicator: str, tag: str | None = None) -> str:
    """``gamma`` + ``fair`` -> ``gamma@fair``; no tag -> ``gamma``."""
    tag = check_tag(tag)
    return indicator if tag is None else f"{indicator}{TAG_SEPARATOR}{tag}"


def split_column(column: str) -> tuple[str, str | None]:
    """``gamma@fair`` -> ``("gamma", "fair")``; ``naswot`` -> ``("naswot", None)``."""
    name, sep, tag = column.partition(TAG_SEPARATOR)
    return name, (tag if sep else None)


def resolve_column(name: str, columns: Sequence[str], source: str = "the scores", what: str = "column") -> str:
    """The column ``name`` denotes: itself, or for a bare indicator name its only tagged column.
    ``what`` names the kind of column in messages ("indicator", "ground-truth column")."""
    columns = list(columns)
    if name in columns:
        return name
    if TAG_SEPARATOR not in name:
        candidates = [c for c in columns if split_column(c)[0] == name]
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            raise ScoresColumnError(f"{what} {name!r} is ambiguous in {source}: it matches {candidates}; "
                                    "name one of them")
    raise ScoresColumnError(f"unknown {what} {name!r} in {source}; available: {columns}")


def load_archs(spec: str, seed: int, space="nb201"):
    """Encodings ``(n, *encoding_shape)`` of ``space``: ``"all"`` (enumerable spaces: NB201's
    15,625), ``"N"`` (N distinct random architectures drawn with ``seed``) or a file with one
    architecture string (or comma-separated encoding) per line."""
    import numpy as np

    from fbnas_jax.spaces import get

    space = get(space)
    if spec == "all":
        if not space.enumerable:
            raise ValueError(f"--archs all: the {space.name} space is not enumerated; give N or a file")
        return space.all_encodings()
    if spec.isdigit():
        n = int(spec)
        if space.enumerable:
            if not 1 <= n <= space.size:
                raise ValueError(f"--archs N must be in 1..{space.size}, got {n}")
            idx = np.sort(np.random.default_rng(seed).choice(space.size, n, replace=False))
            return space.all_encodings()[idx]
        if n < 1:
            raise ValueError(f"--archs N must be >= 1, got {n}")
        rng, found = np.random.default_rng(seed), {}
        while len(found) < n:  # distinct architectures (by key)
            for e in space.sample(rng, n):
                if len(found) < n:
                    found.setdefault(space.key(e), e)
        return np.stack(list(found.values()))
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--archs: {spec!r} is neither 'all', an integer, nor an existing file")
    items = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line == "arch":
            continue
        # an architecture string, maybe followed by CSV columns; or a bare comma-separated encoding
        items.append(line.split(",")[0] if not line[0].isdigit() or ":" in line else line)
    return space.parse_many(items)


def load_scoring_data(run, source: str | None):
    """The dataset for scoring: ``source`` or the run's; synthetic matches the run's image size."""
    from fbnas_jax import data as fdata

    d = run.config.data
    source = d.source if source is None else source
    if source.lower() in ("synthetic", "embedded"):
        return fdata.make_synthetic(image_size=int(run.input_shape[0]), seed=0)
    if source == d.source:
        from fbnas_jax.training.loop import load_data

        return load_data(run.config)
    return fdata.load_dataset(source, cache_dir=d.cache_dir)


def write_scores_csv(path: str | Path, encodings, scores: dict, space="nb201") -> None:
    """``arch`` (``space``'s string form) + one column per entry of ``scores`` (float arrays
    aligned with ``encodings``)."""
    from fbnas_jax.spaces import get

    space = get(space)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(scores)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch"] + names)
        for i, e in enumerate(encodings):
            w.writerow([space.to_string(e)] + [repr(float(scores[n][i])) for n in names])


def needs(indicators: Sequence[str] | None) -> set[str]:
    """The :class:`~fbnas_jax.indicators.base.ScoringContext` fields that scoring ``indicators``
    (None = all registered) needs, composites' components included; an unknown name raises
    :class:`~fbnas_jax.indicators.base.UnknownIndicatorError` listing the known ones."""
    from fbnas_jax import indicators as _registered  # noqa: F401  (registers every indicator)
    from fbnas_jax.indicators import base

    names = list(base.REGISTRY) if indicators is None else list(indicators)
    out: set[str] = set()
    for name in names:
        ind = base.get(name)
        for leaf in (ind.components if ind.family == "composite" else (name,)):
            out.update(base.get(leaf).needs)
    return out
