"""``fbnas search``: pick an architecture with random or evolutionary search (``--algo darts|balenas``:
differentiable search, :mod:`fbnas_jax.commands.search_differentiable`).

The objective is either a trained supernet checkpoint scored through
:mod:`fbnas_jax.scoring` (``--checkpoint``) or a precomputed full-space scores CSV
(``--scores``; objective = the column named by ``--indicator``, looked up per architecture,
NaN / absent = invalid). Rank-based indicators (``cpi``) scored from a checkpoint go through
:class:`fbnas_jax.search.ReferenceRankObjective` with ``--reference`` random architectures
(0 = the whole space, if enumerable) as the fixed reference set; from a scores CSV the column
is used as is. The space is the checkpoint's (``--checkpoint``) or ``--space`` (``--scores``);
a scores CSV of a space that is not enumerated (NB101) restricts the search to its architectures,
and ``--candidates CSV`` restricts a checkpoint's search (and its reference set) to a CSV's.
"""
from __future__ import annotations

import json

from fbnas_jax.commands import search_differentiable as differentiable
from fbnas_jax.commands._common import add_engine_flags


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "search", help="random / evolutionary search driven by an indicator; DARTS / BaLeNAS",
        description="Search a space (NAS-Bench-201 by default) for the architecture with the best "
                    "indicator score (--algo ea | random), or search NB201 differentiably (--algo darts | balenas: "
                    "trains a mixed-op supernet and its architecture from --config in --workdir).")
    src = p.add_mutually_exclusive_group()  # ea / random need one of them (checked in _search)
    src.add_argument("--checkpoint", help="supernet work directory (scored via fbnas_jax.scoring)")
    src.add_argument("--scores", help="precomputed scores CSV ('arch' + indicator columns)")
    p.add_argument("--indicator", default=None,
                   help="ea / random: indicator to maximise: a registered name (--checkpoint), or a column of "
                        "--scores (gamma@fair; a bare name matches its only tagged column)")
    p.add_argument("--space", default=None,
                   help="search space of --scores (default nb201); --checkpoint: the checkpoint's")
    p.add_argument("--algo", choices=("ea", "random") + differentiable.ALGOS, default="ea",
                   help="ea / random: search an indicator's scores (--checkpoint or --scores, --indicator); "
                        "darts / balenas: differentiable search that trains its own supernet (--config, --workdir)")
    p.add_argument("--seed", type=int, default=None, help="random seed (0); darts / balenas: train.seed")
    p.add_argument("--samples", type=int, default=1000, help="random search: architectures (1000)")
    p.add_argument("--population", type=int, default=50)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--mutations", type=int, default=25)
    p.add_argument("--mutation-prob", type=float, default=0.1)
    p.add_argument("--crossovers", type=int, default=25)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--max-params", type=float, default=None, help="limit, millions")
    p.add_argument("--max-flops", type=float, default=None, help="limit, millions")
    p.add_argument("--eval-batch-size", type=int, default=64, help="--checkpoint: images of the evaluation batch "
                   "(data-based indicators, as in fbnas score)")
    p.add_argument("--mc-samples", type=int, default=10, help="--checkpoint: Monte-Carlo BN passes (uncertainty)")
    p.add_argument("--mc-batch-size", type=int, default=64, help="--checkpoint: mini-batch size per MC pass")
    p.add_argument("--dataset", default=None, help="--checkpoint: data for data-based indicators (default: the run's own)")
    p.add_argument("--reference", type=int, default=1000,
                   help="--checkpoint, rank-based indicator: reference architectures (0 = all of the space, "
                        "or of --candidates)")
    p.add_argument("--candidates", default=None,
                   help="--checkpoint: search only the architectures of this CSV (an 'arch' column or the "
                        "space's table columns, e.g. the NB101 subset's adjacency + ops)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="--checkpoint: architectures per compiled call (default 256 on a GPU/TPU, 16 on CPU)")
    p.add_argument("--truth", default=None, help="ground-truth CSV: report the chosen arch's accuracies")
    p.add_argument("--truth-columns", default=None, help="comma-separated columns (default: all)")
    p.add_argument("--json", action="store_true")
    add_engine_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    differentiable.add_arguments(p)
    p.set_defaults(func=_search)


def _scores_objective(args, space):
    from fbnas_jax.bench.correlation import BenchError, read_scores_csv
    from fbnas_jax.groundtruth import GroundTruth
    from fbnas_jax.scores_io import ScoresColumnError, resolve_column

    table = read_scores_csv(args.scores, space=space)
    if args.indicator in table.text_columns:
        raise BenchError(f"indicator {args.indicator!r} of {args.scores} is not numeric: "
                         f"{table.text_columns[args.indicator]}")
    try:
        column = resolve_column(args.indicator, list(table.columns), source=args.scores, what="indicator")
    except ScoresColumnError as err:
        raise BenchError(str(err)) from None
    lookup = GroundTruth(table.archs, table.encodings, {column: table.columns[column]}, table.source, space)

    def score_fn(enc):  # NaN for architectures absent from the CSV
        return lookup.values(column, enc)

    # an enumerable space is searched whole (absent = NaN); otherwise the CSV's cells are the candidates
    candidates = None if space.enumerable else table.encodings
    return score_fn, f"column {column!r} of scores CSV {args.scores} ({len(table)} architectures)", candidates


def _candidates(path: str, space):
    """Encodings of a CSV's architectures (an ``arch`` column or the space's table columns)."""
    from fbnas_jax.groundtruth import load_ground_truth

    return load_ground_truth(path, columns=[], space=space).encodings


def _checkpoint_objective(args):
    """Objective from a supernet checkpoint via the scoring engine's documented API."""
    import numpy as np

    import jax

    from fbnas_jax import scoring
    from fbnas_jax.commands._common import log
    from fbnas_jax.indicators import base as ind_base
    from fbnas_jax.runtime import enable_compilation_cache
    from fbnas_jax.scores_io import load_archs, load_scoring_data, needs, split_column
    from fbnas_jax.search.algorithms import ReferenceRankObjective
    from fbnas_jax.spaces import of_network
    from fbnas_jax.training.loop import load_run

    name = split_column(args.indicator)[0]  # a tag names the network: here, the checkpoint's
    indicator = ind_base.get(name)  # UnknownIndicatorError names the available ones
    need = needs([name])
    enable_compilation_cache()
    run = load_run(args.checkpoint)
    scoring.check_run(run, expect_space=args.space)
    space = of_network(run.net)  # the run's own space (e.g. its MobileNet skeleton)
    dataset = load_scoring_data(run, args.dataset) if need & {"images", "labels", "train_images"} else None
    ctx = scoring.make_context(run, dataset, eval_batch_size=args.eval_batch_size, mc_samples=args.mc_samples,
                               mc_batch_size=args.mc_batch_size, seed=args.seed, fresh_init="init_variables" in need)
    # compiles each indicator once; says so, and shows bars + an estimate on long calls
    chunk = args.chunk_size or (16 if jax.default_backend() == "cpu" else 256)
    scorer = scoring.Scorer(ctx, chunk_size=chunk, log=log, progress=not args.no_progress,
                            execution=args.strategy, precision=args.precision)
    components = tuple(getattr(indicator, "components", ()) or ())
    if indicator.family == "composite" and components:
        comp_fns = {c: (lambda enc, c=c: scorer(c, enc)) for c in components}
        rng = np.random.default_rng(args.seed + 10_000)
        if args.candidates:  # the candidates themselves (or N of them) are the reference
            ref = _candidates(args.candidates, space)
            if args.reference and args.reference < len(ref):
                ref = ref[np.sort(rng.choice(len(ref), args.reference, replace=False))]
        elif space.enumerable:
            ref = space.all_encodings()
            if args.reference and args.reference < len(ref):
                ref = ref[np.sort(rng.choice(len(ref), args.reference, replace=False))]
        else:
            if not args.reference:
                raise ValueError(f"--reference 0 (the whole space) needs an enumerable space, not {space.name}; "
                                 "give N, or --candidates")
            ref = load_archs(str(args.reference), args.seed + 10_000, space)
        objective = ReferenceRankObjective(comp_fns, ref, space=space)
        log(f"scoring the {len(ref)} reference architectures with {list(components)} ...")
        objective.reference_scores()
        return objective, (
            f"checkpoint {args.checkpoint}, {name} = mean reference-CDF position of "
            f"{list(components)} over {len(ref)} reference architectures"), space

    return (lambda enc: scorer(name, enc)), f"checkpoint {args.checkpoint}", space


def _search(args) -> int:
    import numpy as np
    from tqdm.auto import tqdm

    from fbnas_jax.commands._common import UsageError
    from fbnas_jax.groundtruth import load_ground_truth
    from fbnas_jax.search.algorithms import evolutionary_search, random_search
    from fbnas_jax.spaces import get

    if args.algo in differentiable.ALGOS:
        return differentiable.run(args)
    if args.seed is None:
        args.seed = 0
    if not (args.checkpoint or args.scores) or args.indicator is None:
        raise UsageError(f"--algo {args.algo} needs --checkpoint or --scores, and --indicator")
    if args.config or args.workdir or args.set:
        raise UsageError("--config / --workdir / --set go with --algo darts | balenas")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise UsageError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    if args.reference < 0:
        raise UsageError(f"--reference must be >= 0 (0 = all), got {args.reference}")
    try:  # setting up: a plain ValueError here is about the inputs, not a bug
        candidates = None
        if args.scores:
            if args.candidates:
                raise UsageError("--candidates goes with --checkpoint; a scores CSV's architectures are "
                                 "the candidates of a space that is not enumerated")
            space = get(args.space or "nb201")
            score_fn, source, candidates = _scores_objective(args, space)
        else:
            score_fn, source, space = _checkpoint_objective(args)
            if args.candidates:
                candidates = _candidates(args.candidates, space)
    except ValueError as err:
        if type(err) is not ValueError:
            raise
        raise UsageError(str(err)) from None
    rng = np.random.default_rng(args.seed)
    total = 1 if args.algo == "random" else args.generations
    bar = tqdm(total=total, desc=f"search ({args.algo})", unit="gen", disable=args.no_progress, leave=False)

    def progress(info):
        bar.set_postfix(evaluated=info["evaluated"], best=f"{info['best']:.4g}")
        bar.update(1)

    try:
        if args.algo == "random":
            res = random_search(score_fn, args.samples, rng, max_params=args.max_params,
                                max_flops=args.max_flops, space=space, candidates=candidates, progress=progress)
        else:
            res = evolutionary_search(
                score_fn, rng, population=args.population, top_k=args.top_k,
                mutations=args.mutations, mutation_prob=args.mutation_prob,
                crossovers=args.crossovers, generations=args.generations,
                max_params=args.max_params, max_flops=args.max_flops, space=space, candidates=candidates,
                progress=progress)
    finally:
        bar.close()
    truth = None
    if args.truth:
        cols = None
        if args.truth_columns:
            cols = [c.strip() for c in args.truth_columns.split(",") if c.strip()]
        gt = load_ground_truth(args.truth, columns=cols, space=space)
        names = cols or [c for c in gt.column_names if c.lower() != "index"]
        truth = {c: float(gt.values(c, res.encoding[None])[0]) for c in names}
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
