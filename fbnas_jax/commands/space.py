"""``fbnas <space> cost|arch`` for every registered search space (``fbnas nb201 ...``, ``fbnas nb101 ...``).

Generic over :mod:`fbnas_jax.spaces`: ``cost`` prints the space's exact params / FLOPs
(millions, 6 decimals so integer parameter counts are exact) with one flag per entry of
:attr:`SearchSpace.cost_defaults`; ``arch`` prints :meth:`SearchSpace.describe` as JSON (the
string form, the encoding, and what the space adds: NB201's ops, NB101's benchmark hash).
An architecture is the space's string form or its encoding as integers separated by commas or
spaces. Spaces with :attr:`options` (space-specific settings, e.g. a skeleton) get a flag
each, passed to ``space.configure``.
"""
from __future__ import annotations

import argparse
import json

#: flags of the common cost settings (others: ``--<key with dashes>``)
FLAGS = {"num_classes": "--classes", "cells_per_stage": "--cells"}
HELP = {"num_classes": "output classes", "channels": "channels (NB201: C; NB101: stem width)",
        "cells_per_stage": "cells per stage (NB201: N; NB101: modules per stack)", "input_size": "image side (pixels)",
        "num_stacks": "stacks of modules"}


def _space(args):
    from fbnas_jax.spaces import get

    space = get(args.space_name)
    values = {o.name: getattr(args, f"opt_{o.name}", None) for o in getattr(space, "options", ())}
    return space.configure(**values) if values else space


def _parse(space, text: str):
    """The string form, or an encoding as integers separated by commas or by spaces."""
    tokens = text.split()
    if "," not in text and len(tokens) > 1 and all(t.lstrip("-").isdigit() for t in tokens):
        text = ",".join(tokens)
    return space.parse(text)  # commas: checked there (empty entries, length, range)


def cmd_cost(args) -> int:
    from fbnas_jax.spaces import SearchSpaceError

    space = _space(args)
    enc = _parse(space, args.arch)
    settings = {k: getattr(args, f"cost_{k}") for k in space.cost_defaults}
    try:
        c = space.cost(enc, **settings)
    except SearchSpaceError:
        raise
    except ValueError as err:  # sizes out of range
        raise SearchSpaceError(str(err)) from None
    if args.json:
        print(json.dumps({"params_m": round(c.params_m, 6), "flops_m": round(c.flops_m, 6)}))
    else:
        print(f"params: {c.params_m:.6f} M   FLOPs: {c.flops_m:.5f} M")
    return 0


def cmd_arch(args) -> int:
    space = _space(args)
    info = space.describe(_parse(space, args.value))
    print(json.dumps(info))
    return 0


def _add_options(p: argparse.ArgumentParser, space) -> None:
    for o in getattr(space, "options", ()):
        p.add_argument(f"--{o.name.replace('_', '-')}", dest=f"opt_{o.name}", default=None, choices=o.choices,
                       help=f"{o.help} (default {o.default})")


def _register_space(sub, space) -> None:
    title = space.title or space.name
    p = sub.add_parser(space.name, help=f"{title} space utilities (cost, arch conversion)",
                       description=f"{title}: costs of an architecture and its representations.")
    p.set_defaults(space_name=space.name)
    ssub = p.add_subparsers(dest=f"{space.name}_command", metavar="SUBCOMMAND")
    c = ssub.add_parser("cost", help=f"params (M) and FLOPs (M) of an architecture, as {title} counts them")
    c.add_argument("arch", help=f"{space.name} {space.string_name}, or its encoding as integers")
    c.add_argument("--json", action="store_true")
    for key, default in space.cost_defaults.items():
        c.add_argument(FLAGS.get(key, f"--{key.replace('_', '-')}"), dest=f"cost_{key}", type=int, default=default, metavar="N",
                       help=f"{HELP.get(key, key.replace('_', ' '))} (default {default})")
    _add_options(c, space)
    c.set_defaults(func=cmd_cost, space_name=space.name)
    a = ssub.add_parser("arch", help="convert between the string form and the encoding (JSON)")
    a.add_argument("value", help=f"{space.name} {space.string_name}, or its encoding as integers")
    a.add_argument("--json", action="store_true", help="JSON output (the default; accepted for symmetry)")
    _add_options(a, space)
    a.set_defaults(func=cmd_arch, space_name=space.name)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def register(sub) -> None:
    from fbnas_jax.spaces import get, names

    for name in names():  # pure NumPy modules: cheap to import for --help
        _register_space(sub, get(name))
