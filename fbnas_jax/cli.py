"""The ``fbnas`` command line: the parser, built from the modules of :mod:`fbnas_jax.commands`.

Every subcommand lives in ``fbnas_jax/commands/`` (one module per area). A module exposes
``register(subparsers)``, which adds parsers whose ``func(args) -> int`` does the work; heavy
imports (JAX, Flax, neural-tangents for ``theory``) happen inside ``func`` so ``fbnas --help``
is instant and ``import fbnas_jax`` stays light. Expected failures (bad input, a workdir in
use, disk full) end in one line and an exit code (see :mod:`fbnas_jax.commands._common`);
``FBNAS_TRACEBACK=1`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from fbnas_jax.commands import _common

# Modules providing register(subparsers); order = order in --help.
COMMAND_MODULES = (
    "fbnas_jax.commands.demo",      # demo
    "fbnas_jax.commands.core",      # train-supernet, train-arch
    "fbnas_jax.commands.space",     # <space> cost|arch for every search space (nb201, nb101, ...)
    "fbnas_jax.commands.score",     # score
    "fbnas_jax.commands.search",    # search
    "fbnas_jax.commands.bench",     # bench correlation
    "fbnas_jax.commands.theory",    # theory ntk-check|dynamics (neural-tangents, imported lazily)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fbnas",
        description="BatchNorm-only one-shot NAS (BN-NAS, FBN-NAS) on NAS-Bench-201, NAS-Bench-101 and more, in JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _set_prog(parser: argparse.ArgumentParser) -> None:
    """Every (sub)parser stores its ``prog`` as ``args._prog`` for error lines."""
    parser.set_defaults(_prog=parser.prog)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _set_prog(sub)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code. ``argv=None`` (the ``fbnas`` executable) also
    installs the Ctrl-C watchdog, which may end the process itself."""
    argv_was_none = argv is None
    if argv_was_none:
        _common.install_interrupt_watchdog()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    _set_prog(parser)
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if not argv else 2
    _common.take_loose(parser, args)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        if argv_was_none:
            # Normal interpreter shutdown waits for in-flight XLA work (a lax.map chunk can run
            # for minutes) and freezes the watchdog thread meanwhile: leave at once.
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(_common.EXIT_INTERRUPTED)
        return _common.EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 -- expected failures become one line; bugs re-raise
        verdict = _common.classify(err)
        if verdict is None or os.environ.get("FBNAS_TRACEBACK", "0") not in ("", "0"):
            raise
        code, message = verdict
        print(f"{getattr(args, '_prog', 'fbnas')}: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
