"""Inputs and outputs of scoring runs: which architectures, which data, the scores CSV.

Kept apart from :mod:`fbnas_jax.scoring` (the compiled engine) so that the command line,
the search and the benchmarks share one reader of ``--archs`` specs and one writer of
scores CSVs (``arch`` = NB201 cell string, then one column per indicator).
"""
from __future__ import annotations

import csv
from pathlib import Path


def load_archs(spec: str, seed: int):
    """``"all"`` (15,625), ``"N"`` (N distinct random archs drawn with ``seed``) or a file with
    one cell string (or 6 comma-separated op indices) per line -> encodings (n, 6)."""
    import numpy as np

    from fbnas_jax.spaces import nb201

    if spec == "all":
        return nb201.all_encodings()
    if spec.isdigit():
        n = int(spec)
        if not 1 <= n <= nb201.NUM_ARCHS:
            raise ValueError(f"--archs N must be in 1..{nb201.NUM_ARCHS}, got {n}")
        idx = np.sort(np.random.default_rng(seed).choice(nb201.NUM_ARCHS, n, replace=False))
        return nb201.all_encodings()[idx]
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--archs: {spec!r} is neither 'all', an integer, nor an existing file")
    items = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line == "arch":
            continue
        line = line.split(",")[0] if line.startswith("|") else line
        items.append(line if line.startswith("|") else [int(t) for t in line.split(",")])
    return nb201.parse_archs(items)


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


def write_scores_csv(path: str | Path, encodings, scores: dict) -> None:
    """``arch`` + one column per entry of ``scores`` (float arrays aligned with ``encodings``)."""
    from fbnas_jax.spaces import nb201

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(scores)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch"] + names)
        for i, e in enumerate(encodings):
            w.writerow([nb201.encoding_to_string(e)] + [repr(float(scores[n][i])) for n in names])
