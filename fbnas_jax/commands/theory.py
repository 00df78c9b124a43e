"""``fbnas theory ntk-check|dynamics``: the Theorem 1 checks of the top-level ``theory`` package.

Only the parser lives here; the handlers import ``theory.check`` / ``theory.dynamics`` (and
through them neural-tangents) when they run, so ``import fbnas_jax`` and ``fbnas --help``
stay free of neural-tangents. ``python -m theory.cli`` builds the same parser.
"""
from __future__ import annotations

import argparse
import json


def _ntk_check(args) -> int:
    from theory.check import format_table, ntk_check

    res = ntk_check(widths=tuple(args.widths), depth=args.depth, activation=args.activation,
                    seeds=args.seeds, batch=args.batch, stats=args.bn_stats, sigma_w=args.sigma_w,
                    sigma_b=args.sigma_b, mc_samples=args.mc_samples, seed=args.seed)
    print(json.dumps(res, indent=2) if args.json else format_table(res))
    return 0


def _dynamics(args) -> int:
    from theory.dynamics import dynamics_sweep, format_dynamics

    res = dynamics_sweep(widths=tuple(args.widths), depth=args.depth, activation=args.activation,
                         steps=args.steps, seeds=args.seeds, lr_factor=args.lr_factor, seed=args.seed)
    if args.json:
        res = {k: v for k, v in res.items() if k != "runs"}
    print(json.dumps(res, indent=2) if args.json else format_dynamics(res))
    return 0


def add_theory_commands(p: argparse.ArgumentParser) -> None:
    """The ``ntk-check`` and ``dynamics`` subcommands, added to ``p``."""
    sub = p.add_subparsers(dest="theory_command", metavar="CHECK")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    c = sub.add_parser("ntk-check", help="empirical BN-only NTK vs Eq. 4 and vs the derived limit, over widths")
    c.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048],
                   help="hidden widths (default: 64 .. 2048; add 4096 for the full check)")
    c.add_argument("--depth", type=int, default=3, help="number of Dense-BN-phi layers L (default 3)")
    c.add_argument("--activation", choices=["relu", "erf", "tanh"], default="relu")
    c.add_argument("--seeds", type=int, default=5, help="weight initialisations per width (default 5)")
    c.add_argument("--batch", type=int, default=8, help="batch size m = number of kernel points (default 8)")
    c.add_argument("--bn-stats", choices=["batch", "population"], default="batch",
                   help="BatchNorm statistics: over the batch (training mode) or fixed population constants")
    c.add_argument("--sigma-w", type=float, default=1.0)
    c.add_argument("--sigma-b", type=float, default=0.1)
    c.add_argument("--mc-samples", type=int, default=50_000,
                   help="Monte-Carlo samples per layer for the batch-stats limit")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    c.set_defaults(func=_ntk_check)
    d = sub.add_parser("dynamics",
                       help="GD training of FCN-BN nets (BN-only vs all params) vs the linearised NTK prediction")
    d.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024])
    d.add_argument("--depth", type=int, default=2)
    d.add_argument("--activation", choices=["relu", "erf", "tanh"], default="relu")
    d.add_argument("--steps", type=int, default=100)
    d.add_argument("--seeds", type=int, default=2)
    d.add_argument("--lr-factor", type=float, default=0.25,
                   help="learning rate = lr_factor * N / lambda_max(Theta_0)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_dynamics)


DESCRIPTION = "Check FBN-NAS Theorem 1 (BN-only NTK) numerically with neural-tangents."


def register(sub) -> None:
    p = sub.add_parser("theory", help="Theorem 1 checks with neural-tangents (ntk-check, dynamics)",
                       description=DESCRIPTION)
    add_theory_commands(p)
