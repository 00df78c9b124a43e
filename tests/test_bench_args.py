"""``benchmarks/_args.py``: the list argument types shared by the execution benchmarks."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _args  # noqa: E402


def test_lists_parse_and_strip():
    assert _args.comma_list(" snip, grasp,,") == ["snip", "grasp"]
    assert _args.size_pairs("8:1, 16:5") == [(8, 1), (16, 5)]
    assert _args.exec_chunks("vmap=16, route=125") == {"vmap": 16, "route": 125}


@pytest.mark.parametrize("kind,text", [(_args.size_pairs, "8"), (_args.size_pairs, "8:0"), (_args.size_pairs, "8:1:2"),
                                       (_args.size_pairs, ""), (_args.exec_chunks, "vmap"), (_args.exec_chunks, "vmap=0"),
                                       (_args.exec_chunks, "=3"), (_args.exec_chunks, "vmap=x")])
def test_malformed_values_are_argparse_errors_naming_the_flag(kind, text, capsys):
    parser = argparse.ArgumentParser(prog="bench")
    with pytest.raises(SystemExit) as exit_info:
        _args.parsed(parser, "--flag", kind, text)
    assert exit_info.value.code == 2
    assert "--flag" in capsys.readouterr().err


class _Compiled:
    chunk = 4

    class xla:  # noqa: N801  (stands in for jax's Compiled object)
        @staticmethod
        def cost_analysis():
            return {"flops": 8e9}


def test_gflop_per_arch_divides_by_the_chunk_and_skips_map():
    assert _args.xla_gflop_per_arch(_Compiled, "vmap") == pytest.approx(2.0)
    assert _args.xla_gflop_per_arch(_Compiled, "map") is None
    assert _args.xla_gflop_per_arch(_Compiled, "map@16") is None
    assert _args.xla_gflop_per_arch(object(), "route") is None
