"""Inputs and outputs of scoring runs: which architectures, which data, the scores CSV.

Kept apart from :mod:`fbnas_jax.scoring` (the compiled engine) so that the command line,
the search and the benchmarks share one reader of ``--archs`` specs and one writer of
scores CSVs (``arch`` = the space's architecture string, then one column per indicator).
"""
from __future__ import annotations

import csv
from pathlib import Path


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
