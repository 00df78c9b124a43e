"""Correlation table, plots and `fbnas bench correlation` end to end."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

from fbnas_jax.bench.correlation import (
    BenchError,
    NaNScoreWarning,
    correlate,
    correlate_files,
    read_scores_csv,
    top_precision,
)
from fbnas_jax.spaces.cost import nb201_costs
from fbnas_jax.spaces.nb201 import all_encodings, encoding_to_string

from test_search import cli_main  # noqa: E402 (tests/ is on sys.path under pytest)

REAL_CSV = os.environ.get("FBNAS_NB201_CSV")


def test_correlation_matches_scipy_hand_example():
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.5, 0.2, 0.9, 0.7, 0.3, 0.6])
    t = np.array([1.0, 3.0, 2.0, 9.0, 4.0, 5.0, 8.0, 7.0, 0.0, 6.0])
    (row,) = correlate({"ind": s}, {"acc": t})
    assert row.n == 10 and row.n_excluded == 0
    assert row.kendall_tau == pytest.approx(kendalltau(s, t).statistic)
    assert row.spearman_rho == pytest.approx(spearmanr(s, t).statistic)
    # top 10 % of 10 = 1: indicator's best is row 6, truth's best is row 3 -> 0
    assert row.top_precision == 0.0
    (row,) = correlate({"ind": s}, {"acc": t}, top_fraction=0.3)
    # indicator top 3 = rows {6, 3, 7}; truth top 3 = rows {3, 6, 7} -> 1.0
    assert row.top_precision == 1.0


def test_top_precision_hand_example():
    s = np.arange(20.0)  # top 2 = rows 19, 18
    t = np.arange(20.0)
    t[18] = -1  # truth top 2 = rows 19, 17
    assert top_precision(s, t, 0.1) == 0.5
    assert top_precision(-s, t, 0.1) == 0.0  # indicator top = rows 0, 1
    assert top_precision(s, s, 0.1) == 1.0


def test_nan_scores_excluded_with_named_warning():
    s = np.array([1.0, np.nan, 3.0, 4.0, np.nan, 6.0])
    t = np.array([1.0, 5.0, 2.0, 4.0, 3.0, 6.0])
    archs = [encoding_to_string([i] * 6) for i in range(5)] + [encoding_to_string([0, 1, 2, 3, 4, 0])]
    with pytest.warns(NaNScoreWarning, match="NaN scores for 2 of 6") as rec:
        (row,) = correlate({"ind": s}, {"acc": t}, archs=archs)
    msg = str(rec[0].message)
    assert archs[1] in msg and archs[4] in msg and archs[0] not in msg
    ok = ~np.isnan(s)
    assert row.n == 4 and row.n_excluded == 2
    assert row.kendall_tau == pytest.approx(kendalltau(s[ok], t[ok]).statistic)


def test_unknown_names_and_misalignment():
    s, t = {"a": np.arange(5.0)}, {"acc": np.arange(5.0)}
    with pytest.raises(BenchError, match=r"unknown indicator 'zz'.*available: \['a'\]"):
        correlate(s, t, indicators=["zz"])
    with pytest.raises(BenchError, match=r"unknown ground-truth column 'top1'"):
        correlate(s, t, columns=["top1"])
    with pytest.raises(BenchError, match="row-aligned"):
        correlate(s, {"acc": np.arange(4.0)})


def _write(path, archs, columns):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", *columns])
        for i, a in enumerate(archs):
            w.writerow([a, *("nan" if np.isnan(columns[c][i]) else repr(float(columns[c][i]))
                             for c in columns)])


@pytest.fixture(scope="module")
def space():
    enc = all_encodings()
    archs = [encoding_to_string(e) for e in enc]
    params, flops = nb201_costs(enc)
    return enc, archs, params, flops


def test_no_common_architectures(tmp_path, space):
    enc, archs, params, _ = space
    _write(tmp_path / "s.csv", archs[:10], {"p": params[:10]})
    _write(tmp_path / "t.csv", archs[10:20], {"acc": params[10:20]})
    with pytest.raises(BenchError, match="no architectures in common"):
        correlate_files(tmp_path / "s.csv", tmp_path / "t.csv")
    rc = cli_main(["bench", "correlation", "--scores", str(tmp_path / "s.csv"),
                   "--truth", str(tmp_path / "t.csv")])
    assert rc == 2


def _truth_csv(tmp_path, space):
    if REAL_CSV and os.path.isfile(REAL_CSV):
        return REAL_CSV, "cifar10_test_200ep"
    enc, archs, params, flops = space
    rng = np.random.default_rng(0)
    acc = 80 + 10 * params / params.max() + rng.normal(0, 1, len(params))
    path = tmp_path / "truth.csv"
    _write(path, archs, {"test_acc": acc, "valid_acc": acc + rng.normal(0, 1, len(acc))})
    return str(path), "test_acc"


def test_cli_bench_correlation_end_to_end(tmp_path, space, capsys):
    enc, archs, params, flops = space
    truth, col = _truth_csv(tmp_path, space)
    rng = np.random.default_rng(1)
    sub = np.sort(rng.choice(len(archs), 3000, replace=False))  # a partial scores file
    noisy = params[sub] + rng.normal(0, 0.1, len(sub))
    noisy[:3] = np.nan
    scores = tmp_path / "scores.csv"
    _write(scores, [archs[i] for i in sub], {"params_m": params[sub], "flops_m": flops[sub],
                                              "noisy": noisy})
    plots = tmp_path / "plots"
    rc = cli_main(["bench", "correlation", "--scores", str(scores), "--truth", truth,
                   "--columns", col, "--plots", str(plots), "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    out = json.loads(cap.out)
    assert out["n_common"] == 3000
    rows = {r["indicator"]: r for r in out["rows"]}
    assert set(rows) == {"params_m", "flops_m", "noisy"}
    assert rows["noisy"]["n"] == 2997 and rows["noisy"]["n_excluded"] == 3
    assert "NaN scores for 3 of 3000" in cap.err and archs[sub[0]] in cap.err
    # equals scipy on the same joined data
    from fbnas_jax.groundtruth import load_ground_truth

    gt = load_ground_truth(truth)
    t = gt.values(col, enc[sub])
    assert rows["params_m"]["kendall_tau"] == pytest.approx(kendalltau(params[sub], t).statistic)
    assert rows["params_m"]["kendall_tau"] > 0.3
    pngs = sorted(p for p in os.listdir(plots) if p.endswith(".png"))
    assert len(pngs) == 4  # 3 scatter + 1 bar chart
    assert all(os.path.getsize(plots / p) > 1000 for p in pngs)
    with open(plots / pngs[0], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"

    rc = cli_main(["bench", "correlation", "--scores", str(scores), "--truth", truth,
                   "--columns", col, "--indicators", "params_m"])
    cap = capsys.readouterr()
    assert rc == 0 and "kendall_tau" in cap.out and "params_m" in cap.out and "noisy" not in cap.out

    for flag, bad, msg in (("--indicators", "gamma", "unknown indicator"),
                           ("--columns", "top1", "unknown ground-truth column")):
        args = ["bench", "correlation", "--scores", str(scores), "--truth", truth, "--columns", col]
        args += [flag, bad]
        rc = cli_main(args)
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and bad in err


def test_read_scores_csv_rejects_bad_input(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("name,x\nfoo,1\n")
    with pytest.raises(BenchError, match="no 'arch' column"):
        read_scores_csv(p)
    a = encoding_to_string([0] * 6)
    p.write_text(f"arch,x\n{a},1\n{a},2\n")
    with pytest.raises(BenchError, match="appears in 2 rows"):
        read_scores_csv(p)
    p.write_text("arch,x\n|bogus~0|,1\n")
    with pytest.raises(BenchError, match="line 2: bad arch"):
        read_scores_csv(p)


def test_plots_write_png(tmp_path):
    from fbnas_jax.bench.plots import scatter_plot, tau_bar_chart

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=200), rng.normal(size=200)
    path = scatter_plot(x, y, tmp_path / "a" / "s.png", color=np.abs(x), color_label="params")
    assert os.path.getsize(path) > 1000
    path = tau_bar_chart({"a": 0.5, "b": -0.2, "c": float("nan")}, tmp_path / "bar.png")
    assert os.path.getsize(path) > 1000
