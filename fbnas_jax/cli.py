"""The ``fbnas`` command line: the parser, built from the modules of :mod:`fbnas_jax.commands`.

Every subcommand lives in ``fbnas_jax/commands/`` (one module per area). A module exposes
``register(subparsers)``, which adds parsers whose ``func(args) -> int`` does the work; heavy
imports (JAX, Flax, neural-tangents for ``theory``) happen inside ``func`` so ``fbnas --help``
is instant and ``import fbnas_jax`` stays light.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules providing register(subparsers); order = order in --help.
COMMAND_MODULES = (
    "fbnas_jax.commands.core",      # demo, train-supernet, train-arch, nb201 cost|arch
    "fbnas_jax.commands.score",     # score
    "fbnas_jax.commands.search",    # search
    "fbnas_jax.commands.bench",     # bench correlation
    "fbnas_jax.commands.theory",    # theory ntk-check|dynamics (neural-tangents, imported lazily)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fbnas",
        description="BatchNorm-only one-shot NAS (BN-NAS, FBN-NAS) on NAS-Bench-201, in JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
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
