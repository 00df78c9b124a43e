"""``fbnas search``: pick an architecture with random or evolutionary search.

The objective is either a trained supernet checkpoint scored through
:mod:`fbnas_jax.scoring` (``--checkpoint``) or a precomputed full-space scores CSV
(``--scores``; objective = the column named by ``--indicator``, looked up per architecture,
NaN / absent = invalid). Rank-based indicators (``cpi``) scored from a checkpoint go through
:class:`fbnas_jax.search.ReferenceRankObjective` with ``--reference`` random architectures
(0 = the whole space, if enumerable) as the fixed reference set; from a scores CSV the column
is used as is. The space is the checkpoint's (``--checkpoint``) or ``--space`` (``--scores``).
"""
from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "search", help="random / evolutionary search driven by an indicator",
        description="Search a space (NAS-Bench-201 by default) for the architecture with the best "
                    "indicator score.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="supernet work directory (scored via fbnas_jax.scoring)")
    src.add_argument("--scores", help="precomputed scores CSV ('arch' + indicator columns)")
    p.add_argument("--indicator", required=True, help="indicator (column of --scores) to maximise")
    p.add_argument("--space", default=None,
                   help="search space of --scores (default nb201); --checkpoint: the checkpoint's")
    p.add_argument("--algo", choices=("ea", "random"), default="ea")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=1000, help="random search: architectures (1000)")
    p.add_argument("--population", type=int, default=50)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--mutations", type=int, default=25)
    p.add_argument("--mutation-prob", type=float, default=0.1)
    p.add_argument("--crossovers", type=int, default=25)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--max-params", type=float, default=None, help="limit, millions")
    p.add_argument("--max-flops", type=float, default=None, help="limit, millions")
    p.add_argument("--dataset", default=None, help="--checkpoint: data for data-based indicators (default: the run's own)")
    p.add_argument("--reference", type=int, default=1000,
                   help="--checkpoint, rank-based indicator: reference architectures (0 = all)")
    p.add_argument("--chunk-size", type=int, default=256, help="--checkpoint: scoring chunk size")
    p.add_argument("--truth", default=None, help="ground-truth CSV: report the chosen arch's accuracies")
    p.add_argument("--truth-columns", default=None, help="comma-separated columns (default: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_search)


def _scores_objective(args, space):
    from fbnas_jax.bench.correlation import BenchError, read_scores_csv
    from fbnas_jax.groundtruth import GroundTruth

    table = read_scores_csv(args.scores, space=space)
    if args.indicator not in table.columns:
        raise BenchError(f"unknown indicator {args.indicator!r}: no such column in {args.scores}; "
                         f"available: {list(table.columns)}")
    lookup = GroundTruth(table.archs, table.encodings, {args.indicator: table.columns[args.indicator]},
                         table.source, space)

    def score_fn(enc):  # NaN for architectures absent from the CSV
        return lookup.values(args.indicator, enc)

    return score_fn, f"scores CSV {args.scores} ({len(table)} architectures)"


def _checkpoint_objective(args):
    """Objective from a supernet checkpoint via the scoring engine's documented API."""
    import numpy as np

    from fbnas_jax import scoring
    from fbnas_jax.indicators import base as ind_base
    from fbnas_jax.search.algorithms import ReferenceRankObjective
    from fbnas_jax.scores_io import load_archs, load_scoring_data
    from fbnas_jax.spaces import get
    from fbnas_jax.training.loop import load_run

    indicator = ind_base.get(args.indicator)  # UnknownIndicatorError names the available ones
    run = load_run(args.checkpoint)
    scoring.check_run(run, expect_space=args.space)
    space = get(run.config.model.space)
    ctx = scoring.make_context(run, load_scoring_data(run, args.dataset), seed=args.seed)
    scorer = scoring.Scorer(ctx, chunk_size=args.chunk_size)  # compiles each indicator once
    components = tuple(getattr(indicator, "components", ()) or ())
    if indicator.family == "composite" and components:
        comp_fns = {c: (lambda enc, c=c: scorer(c, enc)) for c in components}
        rng = np.random.default_rng(args.seed + 10_000)
        if space.enumerable:
            ref = space.all_encodings()
            if args.reference and args.reference < len(ref):
                ref = ref[np.sort(rng.choice(len(ref), args.reference, replace=False))]
        else:
            if not args.reference:
                raise ValueError(f"--reference 0 (the whole space) needs an enumerable space, not {space.name}")
            ref = load_archs(str(args.reference), args.seed + 10_000, space)
        return ReferenceRankObjective(comp_fns, ref, space=space), (
            f"checkpoint {args.checkpoint}, {args.indicator} = mean reference-CDF position of "
            f"{list(components)} over {len(ref)} reference architectures"), space

    return (lambda enc: scorer(args.indicator, enc)), f"checkpoint {args.checkpoint}", space


def _search(args) -> int:
    import numpy as np

    from fbnas_jax.bench.correlation import BenchError
    from fbnas_jax.groundtruth import GroundTruthError, load_ground_truth
    from fbnas_jax.search.algorithms import SearchError, evolutionary_search, random_search
    from fbnas_jax.spaces import SearchSpaceError, get

    try:
        if args.scores:
            space = get(args.space or "nb201")
            score_fn, source = _scores_objective(args, space)
        else:
            score_fn, source, space = _checkpoint_objective(args)
        rng = np.random.default_rng(args.seed)
        if args.algo == "random":
            res = random_search(score_fn, args.samples, rng, max_params=args.max_params,
                                max_flops=args.max_flops, space=space)
        else:
            res = evolutionary_search(
                score_fn, rng, population=args.population, top_k=args.top_k,
                mutations=args.mutations, mutation_prob=args.mutation_prob,
                crossovers=args.crossovers, generations=args.generations,
                max_params=args.max_params, max_flops=args.max_flops, space=space)
        truth = None
        if args.truth:
            cols = None
            if args.truth_columns:
                cols = [c.strip() for c in args.truth_columns.split(",") if c.strip()]
            gt = load_ground_truth(args.truth, columns=cols, space=space)
            names = cols or [c for c in gt.column_names if c.lower() != "index"]
            truth = {c: float(gt.values(c, res.encoding[None])[0]) for c in names}
    except (SearchError, BenchError, GroundTruthError, SearchSpaceError, FileNotFoundError,
            KeyError, ValueError, RuntimeError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"fbnas search: error: {msg}", file=sys.stderr)
        return 2
    out = res.to_dict()
    out.update(indicator=args.indicator, seed=args.seed, objective=source)
    if truth is not None:
        out["truth"] = {k: (None if np.isnan(v) else v) for k, v in truth.items()}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"algo:        {res.algo} (seed {args.seed}), objective {args.indicator} from {source}")
        print(f"arch:        {res.arch}")
        print(f"score:       {res.score:.6g}")
        print(f"params:      {res.params_m:.4f} M")
        print(f"FLOPs:       {res.flops_m:.4f} M")
        print(f"evaluated:   {res.n_evaluated} architectures in {res.wall_s:.3f} s")
        for k, v in (truth or {}).items():
            print(f"truth:       {k} = {v}")
    return 0
