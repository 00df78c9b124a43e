"""``benchmarks/gpu_ab.py`` (the prepared GPU A/B of issue 14) runs its smoke path on a CPU.

The whole ``--smoke`` run compiles 13 programs (~3 min here), so the test runs two cheap
slices of it: the deadline path (every compilation skipped, outputs still complete) and one
ntk_cond variant end to end (ours only: the PyTorch side is covered by test_vs_pytorch.py).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_ab  # noqa: E402


def test_deadline_skips_everything_and_still_writes(tmp_path):
    assert gpu_ab.main(["--smoke", "--ours-only", "--deadline-s", "0", "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "gpu_ab.json").read_text())
    assert out["complete"] and out["rows"] == []
    assert {s["experiment"] for s in out["skipped"]} == set(gpu_ab.EXPERIMENTS)
    assert "skipped: deadline" in (tmp_path / "gpu_ab.md").read_text()


def test_one_ntk_block_variant(tmp_path):
    assert gpu_ab.main(["--smoke", "--ours-only", "--experiments", "ntk_blocks", "--blocks", "8", "--tag", "t",
                        "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "gpu_ab_t.json").read_text())
    (row,) = out["rows"]
    assert row["cotangent_block"] == 8 and row["archs"] == 4 and row["archs_per_s"] > 0
    assert len(row["ours_s"]) == 2 and all(v < 0 for v in row["values"])  # -condition numbers
    assert out["env"]["fp32"]["jax_default_matmul_precision"] is None
    assert "ntk_cond block 8" in (tmp_path / "gpu_ab_t.md").read_text()


def test_bad_arguments_exit_with_a_message(capsys):
    import pytest

    for argv in (["--experiments", "nope"], ["--blocks", "0"], ["--blocks", "a"]):
        with pytest.raises(SystemExit):
            gpu_ab.parse_args(argv)
    assert "unknown experiments" in capsys.readouterr().err
