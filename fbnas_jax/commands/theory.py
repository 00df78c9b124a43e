"""``fbnas theory ntk-check|sweep|batch-size|cnn|report|dynamics``: the Theorem 1 checks of the ``theory`` package.

Only the parser lives here; the handlers import ``theory.*`` (and through it
neural-tangents) when they run, so ``import fbnas_jax`` and ``fbnas --help``
stay free of neural-tangents. ``python -m theory.cli`` builds the same parser.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _positive(kind):
    def parse(s):
        v = kind(s)
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
        return v
    return parse


def _ntk_check(args) -> int:
    from theory.check import format_table, ntk_check

    if not (args.inputs == "circle" or (args.inputs.startswith("gauss") and args.inputs[5:].isdigit())):
        print(f"fbnas theory ntk-check: error: --inputs must be 'gauss<k>' or 'circle', got {args.inputs!r}",
              file=sys.stderr)
        return 2
    if len(set(args.widths)) != len(args.widths):
        print("fbnas theory ntk-check: error: --widths must be distinct", file=sys.stderr)
        return 2
    res = ntk_check(widths=tuple(sorted(args.widths)), depth=args.depth, activation=args.activation,
                    seeds=args.seeds, batch=args.batch, stats=args.bn_stats, sigma_w=args.sigma_w,
                    sigma_b=args.sigma_b, inputs=args.inputs, affine=args.bn_init, mc_samples=args.mc_samples,
                    mc_reps=max(2, args.mc_reps), seed=args.seed, reference=args.reference)
    print(json.dumps(res, indent=2) if args.json else format_table(res))
    return 0


def _emit(res: dict, out: Path | None) -> None:
    text = json.dumps(res, indent=1)
    if out is None:
        print(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}", file=sys.stderr)


def _sweep(args) -> int:
    from theory.sweep import run_sweep

    out = args.out or Path(".cache/theory") / f"sweep_{args.size}.json"
    run_sweep(args.size, out=out, seed=args.seed)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _study(args) -> int:
    from theory import studies
    from theory.sweep import meta

    fn = studies.batch_size_study if args.theory_command == "batch-size" else studies.cnn_study
    _emit({"meta": meta(), **fn(args.size, seed=args.seed)}, args.out)
    return 0


def _report(args) -> int:
    from theory.report import write_report

    for path in write_report(args.results):
        print(f"wrote {path}", file=sys.stderr)
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
    """The theory subcommands, added to ``p``."""
    sub = p.add_subparsers(dest="theory_command", metavar="CHECK")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    c = sub.add_parser("ntk-check", help="one setting: empirical BN-only NTK vs the derived limit and every Eq. 4 "
                                         "variant, over widths (< 1 min at default sizes)")
    c.add_argument("--widths", type=_positive(int), nargs="+", default=[64, 128, 256, 512, 1024, 2048],
                   help="hidden widths (default: 64 .. 2048; the committed results go to 4096)")
    c.add_argument("--depth", type=_positive(int), default=3, help="number of Dense-BN-phi layers L (default 3)")
    c.add_argument("--activation", choices=["relu", "erf", "tanh"], default="relu")
    c.add_argument("--seeds", type=_positive(int), default=6, help="weight initialisations per width (default 6)")
    c.add_argument("--batch", type=_positive(int), default=8, help="batch size m = number of kernel points (default 8)")
    c.add_argument("--inputs", default="gauss0",
                   help="'gauss<k>': m i.i.d. points on the sphere (draw k); 'circle': equally spaced on a circle")
    c.add_argument("--bn-stats", choices=["batch", "population", "batch_frozen"], default="batch",
                   help="BatchNorm statistics: over the batch (training mode), fixed population constants, or batch "
                        "statistics with no gradient through them")
    c.add_argument("--bn-init", choices=["unit", "gaussian"], default="unit",
                   help="gamma, beta at initialisation: 1 and 0 (default) or i.i.d. N(0, 1)")
    c.add_argument("--sigma-w", type=_positive(float), default=1.0)
    c.add_argument("--sigma-b", type=float, default=0.1)
    c.add_argument("--mc-samples", type=_positive(int), default=50_000,
                   help="Monte-Carlo draws per replicate for the batch-statistics / random-gamma limits")
    c.add_argument("--mc-reps", type=int, default=2, help="Monte-Carlo replicates (their spread is the reported error)")
    c.add_argument("--reference", action="store_true",
                   help="also measure the no-BN all-parameter NTK vs neural-tangents' stax limit at each width "
                        "(the standard-training yardstick; about 2.5x the run time)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    c.set_defaults(func=_ntk_check)

    for name, hlp, fn in (
            ("sweep", "the full FCN grid behind the verdict (all settings x all Eq. 4 variants), resumable", _sweep),
            ("batch-size", "BN-only NTK and its limit for batch sizes m = 4 ... 64 vs population statistics", _study),
            ("cnn", "concentration of a small BN-only CNN's kernel with channels vs its derived limit", _study)):
        s = sub.add_parser(name, help=hlp)
        s.add_argument("--size", choices=["small", "full"], default="small",
                       help="small: a minute or two (CI); full: the committed results (see theory/README.md)")
        s.add_argument("--out", type=Path, default=None, help="JSON output path (sweep default: .cache/theory/; "
                                                              "others: stdout)")
        s.add_argument("--seed", type=int, default=0)
        s.set_defaults(func=fn)

    r = sub.add_parser("report", help="rebuild theory/results/verdict.md and the figure from the committed JSON")
    r.add_argument("--results", type=Path, default=Path("theory/results"))
    r.set_defaults(func=_report)

    d = sub.add_parser("dynamics",
                       help="GD training of FCN-BN nets (BN-only vs all params) vs the linearised NTK prediction")
    d.add_argument("--widths", type=_positive(int), nargs="+", default=[64, 256, 1024])
    d.add_argument("--depth", type=_positive(int), default=2)
    d.add_argument("--activation", choices=["relu", "erf", "tanh"], default="relu")
    d.add_argument("--steps", type=_positive(int), default=100)
    d.add_argument("--seeds", type=_positive(int), default=2)
    d.add_argument("--lr-factor", type=_positive(float), default=0.25,
                   help="learning rate = lr_factor * N / lambda_max(Theta_0)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_dynamics)


DESCRIPTION = "Check FBN-NAS Theorem 1 (BN-only NTK) numerically with neural-tangents."


def register(sub) -> None:
    p = sub.add_parser("theory", help="Theorem 1 checks with neural-tangents (ntk-check, sweep, batch-size, cnn, "
                                      "report, dynamics)", description=DESCRIPTION)
    add_theory_commands(p)
