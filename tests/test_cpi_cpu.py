"""benchmarks/cpi_cpu.py: setting parsing, bad input, and its rank analysis on hand-made scores."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cpi_cpu  # noqa: E402


def test_parse_setting():
    s = cpi_cpu.parse_setting("4x32e64s1")
    assert (s["mc_samples"], s["mc_batch_size"], s["eval_batch_size"], s["seed"], s["work"]) == (4, 32, 64, 1, 384)
    assert cpi_cpu.parse_setting("10x64e64")["seed"] == 0
    for bad in ("10x64", "x64e64", "4x32e64s", "four"):
        with pytest.raises(argparse.ArgumentTypeError, match="TxMeE"):
            cpi_cpu.parse_setting(bad)


def test_bad_flags_exit_with_a_message(capsys):
    with pytest.raises(SystemExit):
        cpi_cpu.parse_args(["--run", "x", "--archs", "1"])
    assert "--archs must be >= 2" in capsys.readouterr().err


def test_analyse_taus_against_reference_and_ground_truth():
    rng = np.random.default_rng(0)
    n = 12
    gt, trn = rng.normal(size=n), rng.normal(size=n)
    ref = {"uncertainty": rng.normal(size=n).tolist(), "expressivity": rng.normal(size=n).tolist(),
           "cpi_s_per_arch": 1.0}
    other = dict(ref, uncertainty=(-np.asarray(ref["uncertainty"])).tolist(), cpi_s_per_arch=0.25)
    out = {"settings": [dict(ref), other], "trainability": trn.tolist(), "ground_truth": gt.tolist()}
    cpi_cpu.analyse(out)
    a, b = out["settings"]
    assert a["tau_vs_reference"]["cpi"] == pytest.approx(1.0) and b["speedup_vs_reference"] == pytest.approx(4.0)
    assert b["tau_vs_reference"]["uncertainty"] == pytest.approx(-1.0)
    assert b["tau_vs_ground_truth"]["uncertainty"] == pytest.approx(-kendalltau(ref["uncertainty"], gt).statistic)
    assert out["tau_trainability_vs_ground_truth"] == pytest.approx(kendalltau(trn, gt).statistic)
