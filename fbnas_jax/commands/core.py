"""``fbnas demo``, ``fbnas train-supernet``, ``fbnas train-arch`` and ``fbnas nb201 ...``."""
from __future__ import annotations

import argparse
import json
import sys
import time

DEMO_OVERRIDES = (
    "model.channels=8", "model.cells_per_stage=1", "model.bn_mode=fair",
    "data.source=synthetic", "train.params=bn_only", "train.sampler=spos", "train.epochs=1",
    "train.batch_size=64", "train.learning_rate=1.0", "train.log_every=10",
)
DEMO_ARCHS = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
)


def _config(args, base_overrides=()):
    from fbnas_jax.config import load_config

    return load_config(getattr(args, "config", None), list(base_overrides) + list(args.set or []))


def _fail(message: str, code: int = 2) -> int:
    print(f"fbnas: error: {message}", file=sys.stderr)
    return code


def _subnet_table(result, archs, batch_size=250):
    """Inherited-weight test accuracy, gamma and |gamma|/sigma of some subnets."""
    import numpy as np

    from fbnas_jax import data as fdata
    from fbnas_jax.spaces import of_network
    from fbnas_jax.training import steps

    state, net, ds = result.state, result.net, result.dataset
    space = of_network(net)
    network = space.network()
    encodings = space.parse_many(archs)
    scores = {kind: np.asarray(network.bn_scores(state.params, state.batch_stats, encodings, net=net, kind=kind))
              for kind in ("gamma", "trainability")}
    params_m, flops_m = space.costs(encodings, **network.cost_settings(net, ds.image_shape[0]))
    eval_step = steps.make_eval_step(net)
    rows = []
    for i, (arch, enc) in enumerate(zip(archs, encodings)):
        acc = steps.evaluate(net, state.variables, fdata.eval_batches(ds, batch_size), enc, eval_step)["accuracy"]
        rows.append((arch, params_m[i], flops_m[i], scores["gamma"][i], scores["trainability"][i], acc))
    return rows


def cmd_demo(args) -> int:
    from fbnas_jax.runtime import enable_compilation_cache
    from fbnas_jax.training.loop import train

    enable_compilation_cache()
    cfg = _config(args, DEMO_OVERRIDES)
    t0 = time.perf_counter()
    print(f"fbnas demo: fair BN-only supernet (C={cfg.model.channels}, N={cfg.model.cells_per_stage}) "
          f"on the embedded '{cfg.data.source}' dataset, {cfg.train.epochs} epochs, SPOS sampling")
    result = train(cfg, args.workdir, progress=not args.no_progress)
    print(f"trained {int(result.state.step)} steps in {result.seconds:.1f} s; "
          f"last loss {result.history[-1]['loss']:.3f}" if result.history else "")
    rows = _subnet_table(result, DEMO_ARCHS)
    print(f"\n{'subnet (NB201 cell)':<100} {'params M':>8} {'MFLOPs':>8} {'gamma':>7} {'|g|/sig':>8} {'acc %':>6}")
    for arch, p, f, g, t, acc in sorted(rows, key=lambda r: -r[5]):
        print(f"{arch:<100} {p:8.4f} {f:8.2f} {g:7.2f} {t:8.2f} {100 * acc:6.1f}")
    print("\nacc % = test accuracy of the subnet with weights inherited from the supernet (running BN "
          "statistics; chance is 10 %:\n  BN-only training with frozen random convolutions learns slowly, "
          "and one epoch of a small supernet\n  stays near chance -- BN-NAS ranks subnets by gamma, not by "
          "this accuracy);\ngamma = BN-NAS indicator (sum of mean |gamma| of each op's last BN); "
          f"|g|/sig = FBN-NAS trainability.\ndone in {time.perf_counter() - t0:.1f} s")
    return 0


def _train_common(args, extra=()) -> int:
    from fbnas_jax.config import ConfigError
    from fbnas_jax.data import DatasetError
    from fbnas_jax.runtime import enable_compilation_cache
    from fbnas_jax.training import steps
    from fbnas_jax.training.loop import TrainingDivergedError, train

    enable_compilation_cache()
    try:
        cfg = _config(args, extra)
        result = train(cfg, args.workdir, progress=not args.no_progress)
    except (ConfigError, DatasetError, FileNotFoundError) as err:
        return _fail(str(err))
    except TrainingDivergedError as err:
        return _fail(str(err), code=1)
    from fbnas_jax import data as fdata

    summary = {"workdir": str(args.workdir), "steps": int(result.state.step), "seconds": round(result.seconds, 2),
               "last": result.history[-1] if result.history else None}
    if cfg.model.arch is not None:
        summary["test"] = steps.evaluate(result.net, result.state.variables,
                                         fdata.eval_batches(result.dataset, 500), None)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_train_supernet(args) -> int:
    return _train_common(args)


def cmd_train_arch(args) -> int:
    from fbnas_jax.config import ConfigError
    from fbnas_jax.spaces import SearchSpaceError, get

    try:
        space = get(_config(args).model.space)
        arch = space.to_string(space.parse(args.arch))
    except (SearchSpaceError, ConfigError) as err:
        return _fail(str(err))
    return _train_common(args, (f"model.arch={arch}", "train.sampler=fixed"))


def _parse_arch(value: str):
    """A cell string, or 6 op indices separated by commas or spaces -> encoding."""
    from fbnas_jax.spaces import nb201

    if value.strip().startswith("|"):
        return nb201.string_to_encoding(value)
    try:
        indices = [int(v) for v in value.replace(",", " ").split()]
    except ValueError:
        raise nb201.SearchSpaceError(f"{value!r} is neither a cell string nor 6 op indices") from None
    return nb201.validate_encoding(indices)


def cmd_cost(args) -> int:
    from fbnas_jax.spaces import SearchSpaceError, cost

    try:
        c = cost.nb201_cost(_parse_arch(args.arch), num_classes=args.classes, channels=args.channels,
                            cells_per_stage=args.cells, input_size=args.input_size)
    except (SearchSpaceError, ValueError) as err:
        return _fail(str(err))
    if args.json:
        print(json.dumps({"params_m": round(c.params_m, 6), "flops_m": round(c.flops_m, 6)}))
    else:
        print(f"params: {c.params_m:.6f} M   FLOPs: {c.flops_m:.5f} M")
    return 0


def cmd_arch(args) -> int:
    from fbnas_jax.spaces import SearchSpaceError, nb201

    try:
        enc = _parse_arch(args.value)
    except SearchSpaceError as err:
        return _fail(str(err))
    print(json.dumps({"arch": nb201.encoding_to_string(enc), "encoding": enc.tolist(),
                      "ops": [nb201.OPS[k] for k in enc]}))
    return 0


def _add_train_args(p: argparse.ArgumentParser, config_required: bool) -> None:
    p.add_argument("--config", required=config_required, help="YAML config (see configs/)")
    p.add_argument("--workdir", required=True, help="run directory: checkpoints + run.json; resumes if present")
    p.add_argument("--set", nargs="*", metavar="SECTION.KEY=VALUE", help="override config keys, e.g. train.epochs=2")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub) -> None:
    p = sub.add_parser("demo", help="train a small fair BN-only supernet on embedded data (~2 min on 2 CPU cores)",
                       description="Train a small FBN (fair BN) supernet BN-only on the embedded synthetic "
                                   "dataset, then evaluate a handful of subnets and print a table.")
    p.add_argument("--config", help="optional YAML config overriding the demo settings")
    p.add_argument("--workdir", help="optional run directory (checkpoints)")
    p.add_argument("--set", nargs="*", metavar="SECTION.KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train-supernet", help="train a supernet (BN-only or all params) from a config",
                       description="Train the weight-sharing supernet of the config's search space (model.space); "
                                   "resumes when --workdir holds a checkpoint.")
    _add_train_args(p, True)
    p.set_defaults(func=cmd_train_supernet)

    p = sub.add_parser("train-arch", help="train and evaluate one stand-alone architecture",
                       description="Train one architecture (BN-only or all params, per train.params) and "
                                   "print its test accuracy.")
    p.add_argument("arch", help="architecture string of the config's space (NB201 cell string by default)")
    _add_train_args(p, False)
    p.set_defaults(func=cmd_train_arch)

    p = sub.add_parser("nb201", help="NAS-Bench-201 space utilities (cost, arch conversion)")
    nsub = p.add_subparsers(dest="nb201_command", metavar="SUBCOMMAND")
    c = nsub.add_parser("cost", help="params (M) and FLOPs (M) of an architecture, as NAS-Bench-201 counts them")
    c.add_argument("arch", help="NB201 cell string or 6 op indices")
    c.add_argument("--json", action="store_true")
    c.add_argument("--classes", type=int, default=10)
    c.add_argument("--channels", type=int, default=16)
    c.add_argument("--cells", type=int, default=5, help="cells per stage (N)")
    c.add_argument("--input-size", type=int, default=32)
    c.set_defaults(func=cmd_cost)
    a = nsub.add_parser("arch", help="convert between cell string and encoding")
    a.add_argument("value", help="cell string, or encoding like '3,3,4,0,3,4'")
    a.set_defaults(func=cmd_arch)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
