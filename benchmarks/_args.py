"""Argument types and small readers shared by the benchmark scripts.

The execution benchmarks (route_proxies.py, route_cpi.py, cost_model.py) take the same kinds of
list arguments: network sizes as ``C:N`` pairs and chunk sizes as ``EXEC=N``. These are argparse
``type=`` callables, so a malformed value is reported by argparse with the flag's name instead of
a traceback from deep inside the script.
"""
from __future__ import annotations

import argparse


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [s.strip() for s in text.split(",") if s.strip()]


def size_pair(text: str) -> tuple[int, int]:
    """``"16:5"`` -> ``(16, 5)``: channels C and cells per stage N, both positive."""
    parts = text.strip().split(":")
    try:
        pair = tuple(int(v) for v in parts)
    except ValueError:
        pair = ()
    if len(pair) != 2 or min(pair) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive C:N pair such as 16:5, got {text!r}")
    return pair


def size_pairs(text: str) -> list[tuple[int, int]]:
    """``"8:1,16:5"`` -> ``[(8, 1), (16, 5)]``."""
    pairs = [size_pair(s) for s in comma_list(text)]
    if not pairs:
        raise argparse.ArgumentTypeError("expected at least one C:N pair")
    return pairs


def exec_chunks(text: str) -> dict[str, int]:
    """``"vmap=16,route=125"`` -> ``{"vmap": 16, "route": 125}``: architectures per launch."""
    out = {}
    for item in comma_list(text):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"expected EXEC=N entries with N >= 1, got {item!r}")
        out[name.strip()] = int(value)
    return out


def xla_gflop_per_arch(compiled, execution: str) -> float | None:
    """XLA's GFLOP count of one compiled chunk divided by its architectures (``compiled.chunk``).

    None for ``map`` execution, whose loop body XLA counts once (cost_model.py unrolls loops to
    count them in full), and where the backend reports no cost analysis.
    """
    if execution.partition("@")[0] == "map":  # "map@16": a chunk given with the execution
        return None
    try:
        cost = compiled.xla.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost["flops"]) / compiled.chunk / 1e9
    except Exception:  # noqa: BLE001  (not every backend reports it)
        return None


def parsed(parser: argparse.ArgumentParser, flag: str, kind, text: str):
    """``kind(text)``, with a malformed value reported by ``parser.error`` under ``flag``.

    The scripts keep the raw strings in ``args`` (they are written into the result JSON as
    given) and store the parsed values beside them.
    """
    try:
        return kind(text)
    except argparse.ArgumentTypeError as err:
        parser.error(f"{flag}: {err}")
