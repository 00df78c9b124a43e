"""How far the `cpu` MC-BN setting (4 x 32) moves CPI from the 10 x 64 default, on the whole space.

Reads two `fbnas score --indicators cpi` CSVs of the same supernet (the default and the reduced MC
setting; the second may score a subset) and NB201's truth, and prints, per column (cpi, uncertainty,
expressivity, trainability), over the architectures both scored: Kendall tau and Spearman between the
two settings' scores, the overlap of their top-10 %, and each setting's Kendall tau against the truth
over the same architectures (all by `fbnas bench correlation`'s own function). CPI, a mean of ranks within
the scored set, is recomputed from its components on the common architectures.

    python benchmarks/results/cpi_cpu/mc_setting_agreement.py DEFAULT.csv REDUCED.csv TRUTH.csv [OUT.json]
"""
from __future__ import annotations

import json
import sys

import numpy as np

from fbnas_jax.bench.correlation import correlate, read_scores_csv
from fbnas_jax.indicators.supernet import cpi_from_scores

COLUMNS = ("cpi", "uncertainty", "expressivity", "trainability")
TRUTH_COLUMN = "cifar10_test_200ep"


def rows_of(archs, common, what: str = "the truth CSV") -> np.ndarray:
    """Row indices of ``common`` (architecture strings) in ``archs``."""
    at = {a: i for i, a in enumerate(archs)}
    missing = [a for a in common if a not in at]
    if missing:
        raise SystemExit(f"{len(missing)} scored architectures are not in {what}, e.g. {missing[0]}")
    return np.array([at[a] for a in common])


def main(default_csv: str, reduced_csv: str, truth_csv: str, out: str | None = None) -> dict:
    default, reduced = read_scores_csv(default_csv), read_scores_csv(reduced_csv)
    common = sorted(set(default.archs) & set(reduced.archs))
    if not common:
        raise SystemExit("the two CSVs have no architecture in common")

    def on_common(table):
        idx = rows_of(table.archs, common, table.source)
        cols = {c: table.columns[c][idx] for c in COLUMNS}
        cols["cpi"] = cpi_from_scores(cols)  # CPI ranks within the scored set: re-ranked on the common one
        return cols

    a_cols, b_cols = on_common(default), on_common(reduced)
    truth = read_scores_csv(truth_csv)  # the truth CSV has the scores CSV's shape
    truth_col = {TRUTH_COLUMN: truth.columns[TRUTH_COLUMN][rows_of(truth.archs, common)]}
    vs_truth = {tag: {r.indicator: r.kendall_tau for r in correlate(cols, truth_col, archs=common, indicators=COLUMNS)}
                for tag, cols in (("default", a_cols), ("reduced", b_cols))}
    rows = {}
    for c in COLUMNS:  # between the settings: the same Kendall / Spearman / top-10 % as against the truth
        between = correlate({c: a_cols[c]}, {c: b_cols[c]}, archs=common)[0]
        rows[c] = {"kendall_between": between.kendall_tau, "spearman_between": between.spearman_rho,
                   "top10_overlap": between.top_precision,
                   "kendall_vs_truth_default": vs_truth["default"][c],
                   "kendall_vs_truth_reduced": vs_truth["reduced"][c]}
    result = {"default_csv": default_csv, "reduced_csv": reduced_csv, "truth_column": TRUTH_COLUMN,
              "archs": len(common), "archs_default": len(default.archs), "archs_reduced": len(reduced.archs), "columns": rows}
    print("| column | tau between | Spearman between | top-10 % overlap | tau vs truth, 10x64 | tau vs truth, 4x32 |")
    print("|---|---|---|---|---|---|")
    for c, r in rows.items():
        print(f"| {c} | {r['kendall_between']:.3f} | {r['spearman_between']:.3f} | {r['top10_overlap']:.2f} | "
              f"{r['kendall_vs_truth_default']:+.3f} | {r['kendall_vs_truth_reduced']:+.3f} |")
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
