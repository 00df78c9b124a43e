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

TE-NAS / TEG-NAS (issue 11): ``--algo prune`` prunes the op masks of a freshly initialised NB201
supernet (``--config`` or ``--checkpoint``; :func:`run_prune`); ``--algo ea`` with several
indicators (``teg``, ``tenas``, ``a,b,c``) is TEG evolution
(:func:`fbnas_jax.search.evolution.rank_sum_evolution`), from a fresh supernet or from --scores
columns. ``--config`` also gives the one-indicator searches a fresh supernet (training-free
indicators, no checkpoint needed).
"""
from __future__ import annotations

import json

from fbnas_jax.commands import search_differentiable as differentiable
from fbnas_jax.commands._common import add_engine_flags

#: ``--indicator`` names that stand for several indicators (a rank-sum search)
INDICATOR_SETS: dict[str, tuple[str, ...]] = {"tenas": ("ntk_cond", "linear_regions_tenas")}


_SETS_HELP = ", ".join(f"{k} = {'+'.join(v)}" for k, v in INDICATOR_SETS.items())


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
                   help="ea / random / prune: indicator to maximise: a registered name (--checkpoint, or --config: "
                        "its freshly initialised supernet, training-free), or a column of --scores (gamma@fair; a "
                        "bare name matches its only tagged column). Several, comma-separated, or a set "
                        f"({_SETS_HELP}; teg = TEG-NAS's three): ranked and summed, as TE-NAS / TEG-NAS do "
                        "(--algo prune, or --algo ea = TEG evolution)")
    p.add_argument("--space", default=None,
                   help="search space of --scores (default nb201); --checkpoint: the checkpoint's")
    p.add_argument("--algo", choices=("ea", "random", "prune") + differentiable.ALGOS, default="ea",
                   help="ea / random: search an indicator's scores (--checkpoint, --scores, or --config's fresh "
                        "supernet; --indicator); ea with several indicators = TEG evolution (regularized evolution, "
                        "parent = lowest rank sum); prune: TE-NAS / TEG pruning of a fresh NB201 supernet's op masks "
                        "(--config or --checkpoint); darts / balenas: differentiable search that trains its own "
                        "supernet (--config, --workdir)")
    p.add_argument("--seed", type=int, default=None, help="random seed (0); darts / balenas: train.seed")
    p.add_argument("--samples", type=int, default=1000, help="random search: architectures (1000)")
    p.add_argument("--population", type=int, default=None, help="ea: population (SPOS 50; TEG evolution 256)")
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
    _add_teg_flags(p)
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
    _check_source(args)
    if args.chunk_size is not None and args.chunk_size < 1:
        raise UsageError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    if args.algo == "prune" or len(_indicator_names(args.indicator, args.algo)) > 1:
        return _search_rank_sum(args)  # TE-NAS / TEG pruning and TEG evolution
    if args.population is None:
        args.population = 50
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
        elif args.config:
            score_fn, source, space = _config_objective(args)
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


# ----------------------------------------------------------------------------- TE-NAS / TEG searches (issue 11)


def _add_teg_flags(p) -> None:
    g = p.add_argument_group("TE-NAS / TEG-NAS searches (--algo prune; --algo ea with several indicators)")
    g.add_argument("--repeats", type=int, default=3,
                   help="prune: fresh initialisations (and batches) each mask is measured with (TE-NAS: 3)")
    g.add_argument("--batch", action="append", default=[], metavar="INDICATOR=SIZE",
                   help="prune: images per repeat of an indicator (defaults: ntk_cond=72 as TE-NAS on NB201, "
                        "linear_regions=1000); may be repeated")
    g.add_argument("--prune-chunk", type=int, default=8,
                   help="prune: op masks per compiled call (fixed shape: one compilation for the whole search)")
    g.add_argument("--keep-none", action="store_true",
                   help="prune: do not drop `none` before the first round (TE-NAS drops it)")
    g.add_argument("--sample", type=int, default=64, help="TEG evolution: architectures sampled per step (64)")
    g.add_argument("--steps", type=int, default=1000, help="TEG evolution: steps, one child each (1000)")
    g.add_argument("--mutation-rate", type=float, default=None,
                   help="TEG evolution: per-position mutation probability (default 1/positions; a copy of the "
                        "parent is redrawn)")
    g.add_argument("--out", default=None, help="write the JSON result (rounds, settings, truth) to this file")


def _components(name: str) -> tuple[str, ...]:
    """A registered composite indicator's components (e.g. ``teg``), else ``()``."""
    from fbnas_jax.indicators import base as ind_base

    ind = ind_base.REGISTRY.get(name)
    return tuple(ind.components) if ind is not None and ind.family == "composite" else ()


def _tenas_set() -> tuple[str, ...]:
    """TE-NAS's pair: the NTK condition number and its linear regions -- counted as TE-NAS does
    (``linear_regions_tenas``: thin net, 3x3 crops) where registered, else ``linear_regions``."""
    import fbnas_jax.indicators  # noqa: F401  (registers the indicators)
    from fbnas_jax.indicators import base as ind_base

    return ("ntk_cond", "linear_regions_tenas" if "linear_regions_tenas" in ind_base.REGISTRY else "linear_regions")


def _check_source(args) -> None:
    """ea / random / prune: --indicator and exactly one of --checkpoint, --scores, --config
    (a fresh supernet: training-free); --workdir belongs to darts / balenas, --set to --config."""
    from fbnas_jax.commands._common import UsageError

    given = [f for f in ("checkpoint", "scores", "config") if getattr(args, f)]
    if args.indicator is None or len(given) != 1:
        raise UsageError(f"--algo {args.algo} needs --indicator and one source: --checkpoint or --scores, or "
                         "--config (its freshly initialised supernet, training-free)"
                         + (f" (got {', '.join('--' + g for g in given)})" if len(given) > 1 else ""))
    if args.workdir:
        raise UsageError("--workdir goes with --algo darts | balenas")
    if args.set and not args.config:
        raise UsageError("--set overrides keys of --config")


def _indicator_names(text: str, algo: str | None = None) -> list[str]:
    """``--indicator``: comma-separated names or sets (order kept, duplicates dropped). A set is a
    name of :data:`INDICATOR_SETS`, or ``teg`` (TEG-NAS's rank combination: its components),
    or, for ``--algo prune`` (which always ranks components), any composite indicator."""
    import fbnas_jax.indicators  # noqa: F401  (registers the indicators)

    out: list[str] = []
    for part in (x.strip() for x in text.split(",")):
        if not part:
            continue
        comps = _components(part) if (part == "teg" or algo == "prune") else ()
        out.extend(_tenas_set() if part == "tenas" else INDICATOR_SETS.get(part, comps or (part,)))
    return list(dict.fromkeys(out))


def _fresh_source(args):
    """``(net, dataset, run, label)`` for a training-free search: a config's network and data
    (``--config``) or a checkpoint's (``--checkpoint``; its trained weights are not used)."""
    from fbnas_jax.config import load_config
    from fbnas_jax.scores_io import load_scoring_data
    from fbnas_jax.training.loop import LoadedRun, load_data, load_run, network_from_config

    if args.config:
        cfg = load_config(args.config, getattr(args, "set", None) or ())
        dataset = load_data(cfg) if args.dataset is None else load_scoring_data(
            LoadedRun(cfg, None, None, 0, (), 0), args.dataset)
        if getattr(dataset, "streaming", False):
            raise ValueError("a streamed dataset cannot feed a training-free search; use an in-memory source")
        net = network_from_config(cfg, dataset.num_classes)
        run = LoadedRun(cfg, net, None, dataset.num_classes, tuple(dataset.image_shape), 0)
        return net, dataset, run, f"fresh supernet of {args.config}"
    run = load_run(args.checkpoint)
    return run.net, load_scoring_data(run, args.dataset), run, f"fresh supernet of checkpoint {args.checkpoint}"


def _config_objective(args):
    """One registered indicator on the fresh supernet of ``--config`` (SPOS EA / random search)."""
    import jax

    from fbnas_jax import scoring
    from fbnas_jax.commands._common import log
    from fbnas_jax.indicators import base as ind_base
    from fbnas_jax.spaces import of_network

    ind = ind_base.get(args.indicator)
    if ind.family not in ("training_free", "cost") and not ind.per_arch:
        raise ValueError(f"--config scores a freshly initialised supernet: indicator {args.indicator!r} "
                         f"({ind.family}) needs a trained one (--checkpoint)")
    net, dataset, run, label = _fresh_source(args)
    ctx = scoring.make_context(run, dataset, eval_batch_size=args.eval_batch_size, seed=args.seed, fresh_init=True)
    chunk = args.chunk_size or (16 if jax.default_backend() == "cpu" else 256)
    scorer = scoring.Scorer(ctx, chunk_size=chunk, log=log, progress=not args.no_progress,
                            execution=args.strategy, precision=args.precision)
    return (lambda enc: scorer(args.indicator, enc)), label, of_network(net)


def _truth(args, space, encoding) -> dict | None:
    import numpy as np

    from fbnas_jax.groundtruth import load_ground_truth

    if not args.truth:
        return None
    cols = [c.strip() for c in args.truth_columns.split(",") if c.strip()] if args.truth_columns else None
    gt = load_ground_truth(args.truth, columns=cols, space=space)
    names = cols or [c for c in gt.column_names if c.lower() != "index"]
    vals = {c: float(gt.values(c, np.asarray(encoding)[None])[0]) for c in names}
    return {k: (None if np.isnan(v) else v) for k, v in vals.items()}


def _check_rank_sum_args(args, names) -> None:
    from fbnas_jax.commands._common import UsageError

    if args.algo == "random":
        raise UsageError(f"--algo random takes one indicator, got {names}; several are combined by --algo ea "
                         "(TEG evolution) or --algo prune")
    if args.algo == "prune":
        if args.scores:
            raise UsageError("--algo prune measures pruned supernets with a network: give --config or --checkpoint, "
                             "not --scores")
        for flag in ("max_params", "max_flops", "candidates"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag.replace('_', '-')} does not apply to --algo prune (it prunes the whole "
                                 "supernet)")
        if args.repeats < 1 or args.prune_chunk < 1:
            raise UsageError(f"--repeats and --prune-chunk must be >= 1, got {args.repeats}, {args.prune_chunk}")
    elif args.max_params is not None or args.max_flops is not None:
        raise UsageError("TEG evolution takes no --max-params / --max-flops (TEG-NAS searches the whole space)")


def _batch_options(items) -> dict:
    from fbnas_jax.commands._common import UsageError

    out = {}
    for item in items:
        name, sep, size = item.partition("=")
        if not sep or not size.strip().isdigit() or int(size) < 1:
            raise UsageError(f"--batch takes INDICATOR=SIZE with SIZE >= 1, got {item!r}")
        out[name.strip()] = {"batch_size": int(size)}
    return out


def _prune_images(dataset, count: int, seed: int):
    """``count`` normalised training images (and labels) drawn with ``seed`` (repeats get disjoint blocks)."""
    import numpy as np

    from fbnas_jax.data import normalize

    n = dataset.train_images.shape[0]
    rng = np.random.default_rng([int(seed), 0x7E5A])
    idx = rng.choice(n, size=count, replace=count > n)
    return (normalize(dataset.train_images[idx], dataset.mean, dataset.std),
            np.asarray(dataset.train_labels[idx], np.int32))


def run_prune(net, dataset, names, *, seed: int = 0, repeats: int = 3, batch: dict | None = None,
              chunk_size: int = 8, drop_none: bool = True, execution: str = "map", progress: bool = True, log=None):
    """TE-NAS pruning (``names`` = ntk_cond, linear_regions) or TEG pruning of ``net`` (NB201) on
    ``dataset``'s training images: :func:`fbnas_jax.search.prune.prune_search` with
    :func:`fbnas_jax.search.mask_measure.indicator_measure`. Returns the :class:`PruneResult`
    (its ``wall_s`` includes building and compiling)."""
    import time

    from fbnas_jax.search.mask_measure import PRUNE_OPTIONS, indicator_measure
    from fbnas_jax.search.prune import prune_search
    from fbnas_jax.spaces import nb201, of_network

    space = of_network(net)
    if space.name != "nb201":
        raise ValueError(f"--algo prune needs a supernet with mixed-op edges (op masks); the {space.name} "
                         "network has none yet (NB201 has)")
    t0 = time.perf_counter()
    opts = {n: dict(PRUNE_OPTIONS.get(n, {})) for n in names}
    for n, o in (batch or {}).items():
        opts.setdefault(n, {}).update(o)
    from fbnas_jax.indicators.training_free import DEFAULT_OPTIONS

    # images one repeat needs: the largest batch (teg_generalization: a training and a held-out batch)
    per = max(int(opts.get(n, {}).get("batch_size", DEFAULT_OPTIONS.get(n, {}).get("batch_size", 64)))
              * (2 if n == "teg_generalization" else 1) for n in names)
    images, labels = _prune_images(dataset, per * int(repeats), seed)
    measure = indicator_measure(net, names, images, labels, seed=seed, repeats=repeats, options=opts,
                                execution=execution)
    drop = () if not drop_none else (nb201.OP_INDEX["none"],)
    res = prune_search(measure, nb201.NUM_EDGES, nb201.NUM_OPS, drop_first=drop, op_names=nb201.OPS,
                       chunk_size=chunk_size, progress=progress, log=log,
                       settings={"indicators": list(names), "repeats": int(repeats), "seed": int(seed),
                                 "options": measure.options, "execution": execution})
    res.wall_s = time.perf_counter() - t0
    return res


def _rank_sum_objective(args, names):
    """``objective(enc) -> {name: scores}`` from --scores columns or the fresh supernet of --config/--checkpoint."""
    import jax

    from fbnas_jax import scoring
    from fbnas_jax.commands._common import log
    from fbnas_jax.spaces import get, of_network

    if args.scores:
        space = get(args.space or "nb201")
        fns, candidates = {}, None
        for n in names:
            sub = type(args)(**{**vars(args), "indicator": n})
            fns[n], _, candidates = _scores_objective(sub, space)
        return (lambda enc: {n: f(enc) for n, f in fns.items()}), f"columns {names} of {args.scores}", space, candidates
    net, dataset, run, label = _fresh_source(args)
    ctx = scoring.make_context(run, dataset, eval_batch_size=args.eval_batch_size, seed=args.seed, fresh_init=True)
    chunk = args.chunk_size or (16 if jax.default_backend() == "cpu" else 256)
    scorer = scoring.Scorer(ctx, chunk_size=chunk, log=log, progress=False, execution=args.strategy,
                            precision=args.precision)
    return (lambda enc: {n: scorer(n, enc) for n in names}), label, of_network(net), None


def _search_rank_sum(args) -> int:
    """``--algo prune`` (TE-NAS / TEG pruning) and ``--algo ea`` with several indicators (TEG evolution)."""
    import numpy as np
    from tqdm.auto import tqdm

    from fbnas_jax.commands._common import UsageError, check_writable, log
    from fbnas_jax.indicators import base as ind_base
    from fbnas_jax.search.evolution import rank_sum_evolution

    names = _indicator_names(args.indicator, args.algo)
    if not names:
        raise UsageError("--indicator is empty")
    _check_rank_sum_args(args, names)
    if args.out:
        check_writable(args.out)
    from fbnas_jax.runtime import enable_compilation_cache

    enable_compilation_cache()
    try:
        if not args.scores:
            for n in names:
                ind_base.get(n)  # UnknownIndicatorError names the available ones
        if args.algo == "prune":
            net, dataset, _, label = _fresh_source(args)
            strategy = "vmap" if args.strategy == "vmap" else "map"
            res = run_prune(net, dataset, names, seed=args.seed, repeats=args.repeats,
                            batch=_batch_options(args.batch), chunk_size=args.prune_chunk,
                            drop_none=not args.keep_none, execution=strategy, progress=not args.no_progress,
                            log=log)
            from fbnas_jax.spaces import nb201, of_network
            space = of_network(net)
            out = res.to_dict(nb201.OPS)
            out["arch"] = space.to_string(res.encoding)
        else:
            objective, label, space, candidates = _rank_sum_objective(args, names)
            population = 256 if args.population is None else args.population
            bar = tqdm(total=args.steps, desc="TEG evolution", unit="step", disable=args.no_progress, leave=False)

            def progress(info):
                bar.n = info["step"]
                bar.set_postfix(evaluated=info["evaluated"])
                bar.refresh()

            try:
                res = rank_sum_evolution(objective, np.random.default_rng(args.seed), population=population,
                                         sample=args.sample, steps=args.steps, mutation_prob=args.mutation_rate,
                                         space=space, candidates=candidates, progress=progress)
            finally:
                bar.close()
            out = res.to_dict()
    except ValueError as err:
        if type(err) is not ValueError:
            raise
        raise UsageError(str(err)) from None
    out.update(indicator=names, seed=args.seed, objective=label)
    truth = _truth(args, space, out["encoding"])
    if truth is not None:
        out["truth"] = truth
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"algo:        {out['algo']} (seed {args.seed}), indicators {'+'.join(names)} from {label}")
    print(f"arch:        {out['arch']}")
    print(f"evaluated:   {out['n_evaluated']} {'op masks' if args.algo == 'prune' else 'architectures'} "
          f"in {out['wall_s']:.1f} s")
    for k, v in (truth or {}).items():
        print(f"truth:       {k} = {v}")
    return 0
