"""``fbnas score``: score architectures of a trained supernet, write a CSV + JSON sidecar."""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from fbnas_jax.commands._common import add_engine_flags


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score", help="score architectures with supernet indicators (gamma, cpi, ...)",
        description="Score architectures of a trained supernet (of any search space). Writes one CSV row per "
                    "architecture (`arch` = the space's architecture string, then one column per indicator) "
                    "and OUT.json with the "
                    "config, options, device, JAX version and timings.")
    p.add_argument("--checkpoint", required=True, help="training workdir (holds run.json and checkpoints/)")
    p.add_argument("--indicators", default="all",
                   help="comma-separated indicator names, or 'all' (default); NAME@TAG sets one column's tag")
    p.add_argument("--tag", default=None,
                   help="name the network in the column names: --tag fair writes gamma@fair, cpi@fair ...")
    p.add_argument("--out", required=True, help="output CSV path (checked for writability first)")
    p.add_argument("--archs", default="all",
                   help="'all' (enumerable spaces: NB201's 15,625), an integer N (N distinct random archs, "
                        "--seed), or a file with one architecture string (or comma-separated encoding) per line")
    p.add_argument("--data", default=None,
                   help="data source for the evaluation/MC batches (default: the run's config data source; "
                        "'synthetic' is rendered at the checkpoint's image size)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="architectures per compiled call (default 256 on a GPU/TPU, 16 on CPU: memory grows "
                        "with it, e.g. ~5 GB for uncertainty at 256 x 64 images, C=8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--mc-samples", type=int, default=10, help="Monte-Carlo BN passes (uncertainty)")
    p.add_argument("--mc-batch-size", type=int, default=64, help="training mini-batch size per MC pass")
    p.add_argument("--eval-split", choices=("train", "test"), default="train")
    p.add_argument("--devices", choices=("auto", "one", "all", "cores"), default="auto",
                   help="'all': shard architectures over all local devices; 'cores': on a CPU, one device per "
                        "core, so that several architectures run at once, one per core (map execution; "
                        "benchmarks/results/cpi_cpu/cpi15_ab.md); 'auto' (default): 'cores' on a CPU, 'one' "
                        "on a GPU/TPU (a chunk is one vmapped launch there)")
    p.add_argument("--expect-bn-mode", choices=("bnnas", "fair"), default=None,
                   help="fail unless the checkpoint was trained with this bn_mode")
    p.add_argument("--expect-space", default=None, help="fail unless the checkpoint is of this space")
    add_engine_flags(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_score)


def resolve_devices(choice: str) -> str | None:
    """``--devices`` -> the engine's ``devices`` argument ("all" or None = one device).

    ``cores`` must act before JAX starts its backends (it sets the CPU device count); ``auto``
    tries the same and falls back quietly to what is there when JAX already runs (e.g. an
    in-process call), so it never fails. On a GPU/TPU the extra CPU devices are unused.
    """
    import jax

    from fbnas_jax.commands._common import UsageError
    from fbnas_jax.runtime import cpu_devices_per_core

    if choice in ("cores", "auto"):
        try:
            cpu_devices_per_core()
        except RuntimeError as err:
            if choice == "cores":
                raise UsageError(str(err)) from None
        if choice == "auto":
            return "all" if jax.default_backend() == "cpu" and len(jax.devices()) > 1 else None
    return "all" if choice in ("all", "cores") else None


def run_score(args: argparse.Namespace) -> int:
    import jax

    from fbnas_jax import scoring
    from fbnas_jax.commands._common import UsageError, check_writable, log
    from fbnas_jax.runtime import enable_compilation_cache
    from fbnas_jax.scores_io import (check_tag, column_name, load_archs, load_scoring_data, needs,
                                     split_column, write_scores_csv)
    from fbnas_jax.spaces import of_network
    from fbnas_jax.training.loop import load_run

    t0 = time.perf_counter()
    out = Path(args.out)
    check_writable(out)  # before any work, not after it
    check_writable(str(out) + ".json")
    check_tag(args.tag)
    devices = resolve_devices(args.devices)
    if args.chunk_size is None:
        args.chunk_size = 16 if jax.default_backend() == "cpu" else 256
    if args.chunk_size < 1:
        raise UsageError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    enable_compilation_cache()
    try:  # setting up: a ValueError here is about the inputs (sizes, splits), not a bug
        run = load_run(args.checkpoint)
        scoring.check_run(run, expect_bn_mode=args.expect_bn_mode, expect_space=args.expect_space)
        encodings = load_archs(args.archs, args.seed, of_network(run.net))  # the run's own space (skeleton)
        # --indicators gamma,naswot@fresh: a tag written on a name overrides --tag for that column
        requested, tags = None, {}
        if args.indicators != "all":
            requested = []
            for item in (t.strip() for t in args.indicators.split(",")):
                if item:
                    name, tag = split_column(item)
                    requested.append(name)
                    tags[name] = check_tag(tag)
        if requested == []:
            raise UsageError(f"--indicators {args.indicators!r} names no indicator")
        need = needs(requested)
        dataset = load_scoring_data(run, args.data) if need & {"images", "labels", "train_images"} else None
        if dataset is None:
            log("no data needed: the requested indicators read only the trained BN parameters / the encodings")
        ctx = scoring.make_context(run, dataset, eval_batch_size=args.eval_batch_size, mc_samples=args.mc_samples,
                                   mc_batch_size=args.mc_batch_size, seed=args.seed, eval_split=args.eval_split,
                                   fresh_init="init_variables" in need)
    except ValueError as err:
        if type(err) is not ValueError:
            raise
        raise UsageError(str(err)) from None
    t_load = time.perf_counter() - t0
    log(f"scoring {len(encodings):,} architectures of {args.checkpoint} (step {run.step}) on "
        f"{jax.devices()[0].platform} ...")
    result = scoring.score_architectures(ctx, requested if requested is not None else "all", encodings,
                                         chunk_size=args.chunk_size, execution=args.strategy,
                                         precision=args.precision,
                                         devices=devices,
                                         progress=not args.no_progress, log=log)
    columns = {column_name(n, tags.get(n) or args.tag): v for n, v in result.scores.items()}
    write_scores_csv(out, encodings, columns, of_network(run.net))
    sidecar = {
        "checkpoint": str(Path(args.checkpoint).absolute()), "step": run.step, "config": run.config.to_dict(),
        "indicators": list(result.scores), "columns": list(columns), "tag": args.tag,
        "num_archs": int(len(encodings)), "archs": args.archs,
        "options": dict(ctx.options, chunk_size=result.chunk_size, devices=args.devices, strategy=args.strategy,
                        precision=args.precision),
        "data": dataset.name if dataset is not None else None, "devices": result.devices,
        "jax_version": jax.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "timings": {"load_s": t_load, "indicators": result.timings, "total_s": time.perf_counter() - t0},
        "nan_archs": {k: len(v) for k, v in result.nan_archs.items()},
    }
    Path(str(out) + ".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True, default=str))
    print(f"wrote {len(encodings)} rows x {len(columns)} columns ({', '.join(columns)}) to {out}")
    return 0
