"""``fbnas score``: score architectures of a trained supernet, write a CSV + JSON sidecar."""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score", help="score architectures with supernet indicators (gamma, cpi, ...)",
        description="Score architectures of a trained supernet (of any search space). Writes one CSV row per "
                    "architecture (`arch` = the space's architecture string, then one column per indicator) "
                    "and OUT.json with the "
                    "config, options, device, JAX version and timings.")
    p.add_argument("--checkpoint", required=True, help="training workdir (holds run.json and checkpoints/)")
    p.add_argument("--indicators", default="all", help="comma-separated indicator names, or 'all' (default)")
    p.add_argument("--out", required=True, help="output CSV path")
    p.add_argument("--archs", default="all",
                   help="'all' (enumerable spaces: NB201's 15,625), an integer N (N distinct random archs, "
                        "--seed), or a file with one architecture string (or comma-separated encoding) per line")
    p.add_argument("--data", default=None,
                   help="data source for the evaluation/MC batches (default: the run's config data source; "
                        "'synthetic' is rendered at the checkpoint's image size)")
    p.add_argument("--chunk-size", type=int, default=256, help="architectures per compiled call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--mc-samples", type=int, default=10, help="Monte-Carlo BN passes (uncertainty)")
    p.add_argument("--mc-batch-size", type=int, default=64, help="training mini-batch size per MC pass")
    p.add_argument("--eval-split", choices=("train", "test"), default="train")
    p.add_argument("--devices", choices=("one", "all"), default="one",
                   help="'all': shard architectures over all local devices")
    p.add_argument("--expect-bn-mode", choices=("bnnas", "fair"), default=None,
                   help="fail unless the checkpoint was trained with this bn_mode")
    p.add_argument("--expect-space", default=None, help="fail unless the checkpoint is of this space")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_score)


def run_score(args: argparse.Namespace) -> int:
    import jax

    from fbnas_jax import scoring
    from fbnas_jax.indicators.base import UnknownIndicatorError
    from fbnas_jax.scores_io import load_archs, load_scoring_data, write_scores_csv
    from fbnas_jax.training.loop import load_run

    t0 = time.perf_counter()
    try:
        run = load_run(args.checkpoint)
        scoring.check_run(run, expect_bn_mode=args.expect_bn_mode, expect_space=args.expect_space)
        encodings = load_archs(args.archs, args.seed, run.config.model.space)
        dataset = load_scoring_data(run, args.data)
        names = args.indicators
        from fbnas_jax.indicators import base

        requested = None if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
        for n in requested or []:
            base.get(n)
        fresh = any(base.get(n).needs and "init_variables" in base.get(n).needs for n in (requested or base.REGISTRY))
        ctx = scoring.make_context(run, dataset, eval_batch_size=args.eval_batch_size, mc_samples=args.mc_samples,
                                   mc_batch_size=args.mc_batch_size, seed=args.seed, eval_split=args.eval_split,
                                   fresh_init=fresh)
        t_load = time.perf_counter() - t0
        result = scoring.score_architectures(ctx, requested if requested is not None else "all", encodings,
                                             chunk_size=args.chunk_size,
                                             devices="all" if args.devices == "all" else None,
                                             progress=not args.no_progress)
    except (UnknownIndicatorError, scoring.CheckpointMismatchError, scoring.DataMismatchError,
            FileNotFoundError, ValueError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"fbnas score: error: {msg}", file=sys.stderr)
        return 2
    out = Path(args.out)
    write_scores_csv(out, encodings, result.scores, run.config.model.space)
    sidecar = {
        "checkpoint": str(args.checkpoint), "step": run.step, "config": run.config.to_dict(),
        "indicators": list(result.scores), "num_archs": int(len(encodings)), "archs": args.archs,
        "options": dict(ctx.options, chunk_size=result.chunk_size, devices=args.devices),
        "data": dataset.name, "devices": result.devices, "jax_version": jax.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "timings": {"load_s": t_load, "indicators": result.timings, "total_s": time.perf_counter() - t0},
        "nan_archs": {k: len(v) for k, v in result.nan_archs.items()},
    }
    Path(str(out) + ".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True, default=str))
    print(f"wrote {len(encodings)} rows x {len(result.scores)} indicators to {out}")
    return 0
