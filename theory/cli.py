"""``python -m theory.cli``: the theory checks without the ``fbnas`` wrapper.

The subcommands are defined once, in :mod:`fbnas_jax.commands.theory` (where ``fbnas theory``
finds them); this module only gives them a parser of their own.
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns a process exit code."""
    from fbnas_jax.commands.theory import DESCRIPTION, add_theory_commands

    parser = argparse.ArgumentParser(prog="fbnas theory", description=DESCRIPTION)
    add_theory_commands(parser)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
