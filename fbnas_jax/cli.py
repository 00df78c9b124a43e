"""The ``fbnas`` command line. Each area registers its own subcommands.

Subcommand modules expose ``register(subparsers)``, which adds parsers whose
``func(args) -> int`` does the work; heavy imports (JAX, Flax) happen inside ``func`` so
``fbnas --help`` is instant. ``fbnas theory ...`` is forwarded to the separate ``theory``
package (the only code that imports neural-tangents).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# (module, attribute) pairs providing register(subparsers); order = order in --help.
COMMAND_MODULES = (
    "fbnas_jax.commands.core",      # demo, train-supernet, nb201 ...
    "fbnas_jax.scoring_cli",        # score
    "fbnas_jax.search.cli",         # search
    "fbnas_jax.bench.cli",          # bench ...
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fbnas",
        description="BatchNorm-only one-shot NAS (BN-NAS, FBN-NAS) on NAS-Bench-201, in JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:  # an optional area not installed/built yet
            if not (err.name and (name == err.name or name.startswith(err.name + "."))):
                raise
            continue
        module.register(sub)
    theory = sub.add_parser("theory", help="Theorem 1 checks with neural-tangents (see `fbnas theory --help`)",
                            add_help=False)
    theory.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "theory":
        from theory.cli import main as theory_main

        return int(theory_main(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if not argv else 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
