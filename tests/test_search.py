"""Search algorithms on synthetic objectives, ReferenceRankObjective, and `fbnas search --scores`."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fbnas_jax.search import (
    ReferenceRankObjective,
    SearchError,
    evolutionary_search,
    random_search,
)
from fbnas_jax.spaces.cost import nb201_costs
from fbnas_jax.spaces.nb201 import all_encodings, encoding_to_index, encoding_to_string


def separable(seed: int = 1):
    pref = np.random.default_rng(seed).normal(size=(6, 5))
    calls = []

    def fn(enc):
        enc = np.asarray(enc)
        calls.append(enc.copy())
        return pref[np.arange(6), enc].sum(axis=1)

    best = all_encodings()[np.argmax(fn(all_encodings()))]
    calls.clear()
    return fn, best, calls


def test_ea_finds_optimum_and_beats_random():
    wins = 0
    for seed in range(4):
        fn, best, _ = separable(seed)
        ea = evolutionary_search(fn, np.random.default_rng(seed))
        rs = random_search(fn, ea.n_evaluated, np.random.default_rng(seed))
        assert ea.score >= rs.score - 1e-12
        wins += np.array_equal(ea.encoding, best)
        assert ea.arch == encoding_to_string(ea.encoding)
    assert wins >= 3


def test_ea_counts_and_no_duplicate_evaluation():
    fn, _, calls = separable(3)
    res = evolutionary_search(fn, 0, population=30, top_k=5, mutations=12, crossovers=10,
                              generations=6)
    assert res.generation_sizes == [30] * 6
    assert res.n_evaluated == 180 == len(res.evaluated)
    assert len(calls) == 6  # one batched call per generation
    flat = encoding_to_index(np.concatenate(calls))
    assert len(np.unique(flat)) == len(flat) == 180
    assert len(res.history) == 6 and np.all(np.diff(res.history) >= 0)
    assert res.history[-1] == res.score
    # score, params, flops consistent with the objective and the cost model
    p, f = nb201_costs(res.encoding[None])
    assert res.params_m == pytest.approx(p[0]) and res.flops_m == pytest.approx(f[0])
    assert fn(res.encoding[None])[0] == pytest.approx(res.score)
    assert res.score == pytest.approx(np.max(res.evaluated_scores))


def test_default_hyperparameters_score_1000():
    fn, _, _ = separable(0)
    res = evolutionary_search(fn, 0)
    assert res.n_evaluated == 1000 and res.generation_sizes == [50] * 20
    assert res.settings["top_k"] == 10 and res.settings["mutation_prob"] == 0.1


def test_constraints_respected():
    fn, _, calls = separable(2)  # unconstrained optimum is usually big; maximise params here
    params_all, flops_all = nb201_costs(all_encodings())
    obj = lambda enc: nb201_costs(enc)[0]  # noqa: E731 -- wants the largest net
    limit_p, limit_f = 0.8, 100.0
    for res in (evolutionary_search(obj, 0, max_params=limit_p, max_flops=limit_f, generations=5),
                random_search(obj, 300, 0, max_params=limit_p, max_flops=limit_f)):
        p, f = nb201_costs(res.evaluated)
        assert np.all(p <= limit_p) and np.all(f <= limit_f)
        assert res.params_m <= limit_p
    feasible = (params_all <= limit_p) & (flops_all <= limit_f)
    assert res.score <= params_all[feasible].max()
    with pytest.raises(SearchError, match="no NB201 architecture"):
        random_search(obj, 10, 0, max_params=0.01)


def test_small_feasible_space_is_exhausted_without_duplicates():
    obj = lambda enc: -nb201_costs(enc)[0]  # noqa: E731
    params_all, _ = nb201_costs(all_encodings())
    limit = params_all.min()  # cells without convolutions: 3**6 = 729
    n_feasible = int((params_all <= limit).sum())
    assert n_feasible == 729
    res = evolutionary_search(obj, 0, population=50, generations=20, max_params=limit)
    assert res.n_evaluated == n_feasible
    assert len(np.unique(encoding_to_index(res.evaluated))) == n_feasible
    rs = random_search(obj, 10_000, 0, max_params=limit)
    assert rs.n_evaluated == n_feasible


def test_nan_never_chosen():
    fn, best, _ = separable(5)
    best_flat = encoding_to_index(best[None])[0]

    def obj(enc):
        s = fn(enc)
        s[encoding_to_index(enc) == best_flat] = np.nan  # the optimum is invalid
        s[enc[:, 0] == best[0]] = np.nan
        return s

    for res in (evolutionary_search(obj, 1), random_search(obj, 2000, 1)):
        assert np.isfinite(res.score)
        assert res.encoding[0] != best[0]
        assert np.isnan(res.evaluated_scores).any()
    with pytest.raises(SearchError, match="NaN for all"):
        random_search(lambda e: np.full(len(e), np.nan), 20, 0)


def test_bad_objective_and_settings():
    with pytest.raises(SearchError, match="one score per architecture"):
        random_search(lambda e: np.zeros(3), 10, 0)
    with pytest.raises(SearchError, match="top_k"):
        evolutionary_search(lambda e: np.zeros(len(e)), 0, top_k=0)
    with pytest.raises(SearchError, match="mutation_prob"):
        evolutionary_search(lambda e: np.zeros(len(e)), 0, mutation_prob=1.5)


def test_reference_rank_objective_hand_example():
    ref = np.array([[0] * 6, [1] * 6, [2] * 6, [3] * 6], np.int32)
    a = {0: 1.0, 1: 2.0, 2: 2.0, 3: 4.0, 4: 10.0}  # keyed by first gene
    b = {0: 4.0, 1: 3.0, 2: 2.0, 3: 1.0, 4: np.nan}
    calls = []

    def comp(table):
        def fn(enc):
            calls.append(len(enc))
            return np.array([table[int(e[0])] for e in enc])
        return fn

    obj = ReferenceRankObjective({"a": comp(a), "b": comp(b)}, ref)
    cand = np.array([[0] * 6, [1] * 6, [3] * 6, [4] * 6], np.int32)
    got = obj(cand)
    # a-ref = [1,2,2,4]: pos(1)=0.5/4, pos(2)=(1+1)/4, pos(4)=3.5/4 ; b-ref = [1,2,3,4]
    # b: pos(4)=3.5/4, pos(3)=2.5/4, pos(1)=0.5/4
    want = [(0.5 / 4 + 3.5 / 4) / 2, (2 / 4 + 2.5 / 4) / 2, (3.5 / 4 + 0.5 / 4) / 2, np.nan]
    np.testing.assert_allclose(got, want)
    # a candidate above every reference score sits at 1.0
    assert ReferenceRankObjective({"a": comp(a)}, ref)(np.array([[4] * 6]))[0] == 1.0
    # reference scored once per component
    obj(cand)
    # 2 reference calls (once only) + 2 per obj() of 4 candidates + 1 reference call of the
    # one-component objective
    assert calls.count(4) == 2 + 2 * 2 + 1
    # on the reference set its order equals CPI's (mean of tie-averaged ranks)
    from scipy.stats import rankdata

    cpi = (rankdata([a[i] for i in range(4)]) + rankdata([b[i] for i in range(4)])) / 2
    np.testing.assert_allclose(obj(ref) * 4 + 0.5, cpi)


def _write_scores(path, archs, columns):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", *columns])
        for i, a in enumerate(archs):
            w.writerow([a, *(repr(float(columns[c][i])) for c in columns)])


def cli_main(argv):
    """``fbnas_jax.cli.main`` (kept as a name: other test modules import it)."""
    from fbnas_jax import cli

    return cli.main(argv)


def test_cli_search_with_scores_csv(tmp_path, capsys):
    main = cli_main

    enc = all_encodings()
    archs = [encoding_to_string(e) for e in enc]
    params, flops = nb201_costs(enc)
    fn, best, _ = separable(7)
    obj = fn(enc)
    obj[::7] = np.nan
    scores = tmp_path / "scores.csv"
    _write_scores(scores, archs, {"synthetic": obj, "params_m": params})
    truth = tmp_path / "truth.csv"
    _write_scores(truth, archs, {"acc": 90 + obj})

    rc = main(["search", "--scores", str(scores), "--indicator", "synthetic", "--algo", "ea",
               "--seed", "0", "--truth", str(truth), "--truth-columns", "acc", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["score"] == pytest.approx(np.nanmax(obj))
    assert out["n_evaluated"] == 1000
    assert out["truth"]["acc"] == pytest.approx(90 + out["score"])
    assert set(out) >= {"arch", "score", "params_m", "flops_m", "wall_s"}

    rc = main(["search", "--scores", str(scores), "--indicator", "params_m", "--algo", "random",
               "--samples", "200", "--max-params", "1.0", "--seed", "1"])
    text = capsys.readouterr().out
    assert rc == 0 and "arch:" in text and "params:" in text
    assert float(text.split("params:")[1].split()[0]) <= 1.0

    rc = main(["search", "--scores", str(scores), "--indicator", "nope"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown indicator 'nope'" in err and "synthetic" in err
