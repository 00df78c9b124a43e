"""``fbnas train-supernet``, ``fbnas train-arch`` and ``fbnas nb201 cost|arch``."""
from __future__ import annotations

import argparse
import json

from fbnas_jax.commands._common import add_set_option, log

def _config(args, base_overrides=(), forced=()):
    """The config file, then ``base_overrides`` (defaults of the command), the user's ``--set``
    items in order, and ``forced`` (what the command itself is: train-arch's fixed sampler)."""
    from fbnas_jax.config import load_config

    return load_config(getattr(args, "config", None),
                       list(base_overrides) + list(args.set or []) + list(forced))


def _train_common(args, forced=()) -> int:
    from fbnas_jax import data as fdata
    from fbnas_jax.runtime import enable_compilation_cache
    from fbnas_jax.training import steps
    from fbnas_jax.training.loop import free_workdir, train, with_absolute_paths

    enable_compilation_cache()
    cfg = _config(args, forced=forced)
    workdir = args.workdir
    if args.auto_workdir:
        workdir = free_workdir(workdir, with_absolute_paths(cfg))
        if str(workdir) != str(args.workdir):
            log(f"{args.workdir} holds a run of another config: this run uses {workdir}")
    result = train(cfg, workdir, progress=not args.no_progress, log=log)
    summary = {"workdir": str(workdir), "steps": int(result.state.step), "seconds": round(result.seconds, 2),
               "last": result.history[-1] if result.history else None}
    if cfg.model.arch is not None:
        summary["test"] = steps.evaluate(result.net, result.state.variables,
                                         fdata.eval_batches(result.dataset, 500), None)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_train_supernet(args) -> int:
    return _train_common(args)


def cmd_train_arch(args) -> int:
    from fbnas_jax.spaces import SearchSpaceError, get

    space = get(_config(args).model.space)
    if args.arch is None:
        raise SearchSpaceError(f"train-arch needs an architecture: a {space.string_name} or its encoding "
                               "(e.g. '3,3,4,0,3,4' in NB201)")
    arch = space.to_string(space.parse(args.arch))
    return _train_common(args, (f"model.arch={arch}", "train.sampler=fixed"))


def _parse_arch(value: str):
    """A cell string, or 6 op indices separated by commas or spaces -> encoding."""
    from fbnas_jax.spaces import nb201

    if value.strip().startswith("|"):
        return nb201.string_to_encoding(value)
    text = value.strip()
    parts = [p.strip() for p in text.split(",")] if "," in text else text.split()
    if any(not p for p in parts):
        raise nb201.SearchSpaceError(f"malformed encoding {value!r}: empty entry between commas "
                                     "(expected 6 op indices like '3,3,4,0,3,4')")
    try:
        indices = [int(p) for p in parts]
    except ValueError:
        raise nb201.SearchSpaceError(f"{value!r} is neither a cell string nor 6 op indices") from None
    return nb201.validate_encoding(indices)


def cmd_cost(args) -> int:
    from fbnas_jax.spaces import SearchSpaceError, cost

    try:
        c = cost.nb201_cost(_parse_arch(args.arch), num_classes=args.classes, channels=args.channels,
                            cells_per_stage=args.cells, input_size=args.input_size)
    except ValueError as err:  # sizes out of range
        raise SearchSpaceError(str(err)) from None
    if args.json:
        print(json.dumps({"params_m": round(c.params_m, 6), "flops_m": round(c.flops_m, 6)}))
    else:
        print(f"params: {c.params_m:.6f} M   FLOPs: {c.flops_m:.5f} M")
    return 0


def cmd_arch(args) -> int:
    from fbnas_jax.spaces import nb201

    enc = _parse_arch(args.value)
    print(json.dumps({"arch": nb201.encoding_to_string(enc), "encoding": enc.tolist(),
                      "ops": [nb201.OPS[k] for k in enc]}))
    return 0


def _add_train_args(p: argparse.ArgumentParser, config_required: bool) -> None:
    p.add_argument("--config", required=config_required, help="YAML config (see configs/)")
    p.add_argument("--workdir", required=True, help="run directory: checkpoints + run.json; resumes if present")
    add_set_option(p)
    p.add_argument("--auto-workdir", action="store_true",
                   help="if WORKDIR holds a run of another config, use (or resume) the first WORKDIR-2, "
                        "WORKDIR-3, ... that is new or holds this config (a run is never overwritten)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub) -> None:
    p = sub.add_parser("train-supernet", help="train a supernet (BN-only or all params) from a config",
                       description="Train the weight-sharing supernet of the config's search space (model.space); "
                                   "resumes when --workdir holds a checkpoint of the same config.")
    _add_train_args(p, True)
    p.set_defaults(func=cmd_train_supernet)

    p = sub.add_parser("train-arch", help="train and evaluate one stand-alone architecture",
                       description="Train one architecture (BN-only or all params, per train.params) and "
                                   "print its test accuracy.")
    p.add_argument("arch", nargs="?", help="architecture string of the config's space (NB201 cell string by "
                                          "default) or its encoding like '3,3,4,0,3,4'; options may come "
                                          "before or after it")
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
