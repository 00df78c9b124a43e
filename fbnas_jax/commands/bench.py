"""``fbnas bench correlation``: rank correlation of indicator scores with ground truth."""
from __future__ import annotations

import argparse
import json
import sys


def _csv_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return items


def register(subparsers) -> None:
    bench = subparsers.add_parser("bench", help="benchmarks against ground truth (NAS-Bench-201, -101, ...)")
    sub = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])
    p = sub.add_parser(
        "correlation", help="Kendall tau, Spearman rho and top-10%% precision of indicator scores",
        description="Join a scores CSV (arch + one column per indicator) with any ground-truth CSV "
                    "with an 'arch' column, and report Kendall tau, Spearman rho and the precision "
                    "of the top fraction per indicator and column. NaN scores are excluded with a "
                    "warning naming the architectures.")
    p.add_argument("--scores", required=True, help="scores CSV: 'arch' + indicator columns")
    p.add_argument("--truth", required=True, help="ground-truth CSV with an 'arch' column")
    p.add_argument("--columns", type=_csv_list, default=None,
                   help="ground-truth columns, comma-separated (default: all numeric but 'index')")
    p.add_argument("--indicators", type=_csv_list, default=None,
                   help="indicator columns of the scores CSV, e.g. gamma@bnnas,naswot; a bare name matches "
                        "its only tagged column (default: all)")
    p.add_argument("--top-fraction", type=float, default=0.1, help="top fraction for precision (0.1)")
    p.add_argument("--space", default="nb201", help="search space of both CSVs' architectures (nb201)")
    p.add_argument("--plots", default=None, metavar="DIR",
                   help="write scatter plots and a Kendall-tau bar chart (PNG) here")
    p.add_argument("--color-by", default="params_m",
                   help="colour scatter points by this scores column, or params_m/flops_m from the "
                        "cost model; 'none' for no colour (default params_m)")
    p.add_argument("--max-points", type=int, default=None, help="subsample scatter plots")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_correlation)


def _correlation(args) -> int:
    import warnings

    from fbnas_jax.bench.correlation import BenchError, correlate_files, format_table
    from fbnas_jax.groundtruth import GroundTruthError
    from fbnas_jax.spaces import SearchSpaceError, get

    caught: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as wlist:
            warnings.simplefilter("always")
            rows, archs, scores, truth = correlate_files(
                args.scores, args.truth, columns=args.columns, indicators=args.indicators,
                top_fraction=args.top_fraction, space=args.space)
        for w in wlist:
            caught.append(str(w.message))
            print(f"warning: {w.message}", file=sys.stderr)
        plots = []
        if args.plots:
            from fbnas_jax.bench.plots import scatter_plots, tau_bar_chart

            color, label = None, ""
            cb = (args.color_by or "none").strip()
            if cb.lower() != "none":
                from fbnas_jax.scores_io import ScoresColumnError, resolve_column

                try:
                    cb = resolve_column(cb, list(scores))
                except ScoresColumnError:
                    pass
                if cb in scores:
                    color, label = scores[cb], cb
                elif cb in ("params_m", "flops_m"):
                    space = get(args.space)
                    p_m, f_m = space.costs(space.parse_many(list(archs)))
                    color = p_m if cb == "params_m" else f_m
                    label = "params (M)" if cb == "params_m" else "FLOPs (M)"
                else:
                    raise BenchError(f"--color-by {cb!r}: not a scores column "
                                     f"({list(scores)}) nor params_m / flops_m")
            inds = sorted({r.indicator for r in rows}, key=[r.indicator for r in rows].index)
            cols = sorted({r.column for r in rows}, key=[r.column for r in rows].index)
            taus = {(r.indicator, r.column): r.kendall_tau for r in rows}
            plots += scatter_plots(scores, truth, args.plots, indicators=inds, columns=cols,
                                   color=color, color_label=label, taus=taus,
                                   max_points=args.max_points)
            import os

            for col in cols:
                plots.append(tau_bar_chart({i: taus[(i, col)] for i in inds},
                                           os.path.join(args.plots, f"kendall_tau__{col}.png"),
                                           column=col))
    except (BenchError, GroundTruthError, SearchSpaceError, FileNotFoundError, ValueError) as err:
        print(f"fbnas bench correlation: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"scores": args.scores, "truth": args.truth, "n_common": len(archs),
                          "rows": [r.to_dict() for r in rows], "warnings": caught,
                          "plots": plots}, indent=2))
    else:
        print(f"{len(archs)} architectures in common between {args.scores} and {args.truth}")
        print(format_table(rows))
        for path in plots:
            print(f"wrote {path}")
    return 0
