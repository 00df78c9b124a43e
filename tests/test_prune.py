"""TE-NAS / TEG pruning and TEG evolution (issue 11): bookkeeping with closed-form fake indicators,
one real tiny pruning round, the evolution's parent rule, CLI smoke (C=4, N=1, 16x16)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fbnas_jax.search import prune as P
from fbnas_jax.search.evolution import rank_sum, rank_sum_evolution, select_parent
from fbnas_jax.spaces import nb201

# ----------------------------------------------------------------------------- closed forms


def test_dense_ranks_follow_tenas():
    assert P.dense_ranks([0.3, 0.1, 0.3, 0.2]).tolist() == [0, 2, 0, 1]
    assert P.dense_ranks([-np.inf, 1.0]).tolist() == [1, 0]


def test_removal_gains_relative_change_mean_over_repeats():
    base = np.array([-10.0, -20.0])  # e.g. -condition numbers of two repeats
    without = np.array([[-5.0, -10.0], [-10.0, -40.0]])
    # candidate 0: (+5/10 + 10/20) / 2 = 0.5; candidate 1: (0 - 20/20) / 2 = -0.5
    np.testing.assert_allclose(P.removal_gains(base, without), [0.5, -0.5])
    assert P.removal_gains([-1.0], [[-np.inf]])[0] == -np.inf  # ill-conditioned: never preferred


def test_candidates_and_masks():
    m = P.full_mask(2, 3)
    m[1, [0, 2]] = 0  # edge 1 has a single op: not a candidate
    cands = P.removal_candidates(m)
    assert cands.tolist() == [[0, 0], [0, 1], [0, 2]]
    masks = P.candidate_masks(m, cands)
    assert masks.shape == (3, 2, 3) and masks[1, 0].tolist() == [1, 0, 1] and (masks[:, 1] == m[1]).all()
    with pytest.raises(ValueError, match="at least one live op"):
        P.removal_candidates(np.zeros((2, 3)))


def test_choose_prunes_rank_sum_and_tie_break():
    cands = np.array([[0, 1], [0, 2], [1, 1], [1, 3]])
    gains = {"a": np.array([0.9, 0.1, 0.5, 0.5]), "b": np.array([0.0, 0.8, 0.2, 0.3])}
    ranks, total, pruned = P.choose_prunes(cands, gains)
    assert ranks["a"].tolist() == [0, 2, 1, 1] and ranks["b"].tolist() == [3, 0, 2, 1]
    assert total.tolist() == [3, 2, 3, 2]
    assert pruned.tolist() == [[0, 2], [1, 3]]
    # a tie in the sum goes to the first indicator's favourite
    _, _, pruned = P.choose_prunes(cands[:2], {"a": np.array([0.2, 0.1]), "b": np.array([0.1, 0.2])})
    assert pruned.tolist() == [[0, 1]]


def _fake_measure(loser_order, repeats=3, calls=None):
    """An indicator under which removing op ``loser_order[r]`` helps most while it is live:
    score = -sum over live ops of a per-op cost (cost grows along ``loser_order``), so
    removing the costliest live op gives the highest gain; a second indicator = -live ops."""
    cost = np.zeros(nb201.NUM_OPS)
    for i, k in enumerate(loser_order):
        cost[k] = 10.0 ** (len(loser_order) - i)

    def measure(masks):
        if calls is not None:
            calls.append(masks.shape)
        s = -(masks * cost).sum(axis=(1, 2)) - 1.0
        live = -masks.sum(axis=(1, 2))
        return {"cost": np.tile(s, (repeats, 1)), "size": np.tile(live, (repeats, 1))}
    return measure


def test_prune_search_bookkeeping_with_a_known_loser_each_round():
    order = [nb201.OP_INDEX[n] for n in ("avg_pool_3x3", "skip_connect", "nor_conv_1x1")]
    calls = []
    res = P.prune_search(_fake_measure(order, calls=calls), nb201.NUM_EDGES, nb201.NUM_OPS, op_names=nb201.OPS,
                         chunk_size=8, progress=False, log=None)
    assert len(res.rounds) == 3
    for rnd, loser in zip(res.rounds, order):
        assert (rnd.pruned[:, 1] == loser).all() and rnd.pruned[:, 0].tolist() == list(range(6))
        assert rnd.mask[:, loser].sum() == 0
    assert res.encoding.tolist() == [nb201.OP_INDEX["nor_conv_3x3"]] * 6
    assert res.rounds[0].mask[:, 0].sum() == 0  # `none` dropped before round 1
    assert [len(r.candidates) for r in res.rounds] == [24, 18, 12]
    assert res.n_evaluated == 25 + 19 + 13
    assert set(calls) == {(8, 6, 5)}  # every call one shape: one compilation
    d = res.to_dict(nb201.OPS)
    assert d["rounds"][-1]["surviving"] == [["nor_conv_3x3"]] * 6


def test_prune_search_keep_none_and_bad_measure():
    res = P.prune_search(_fake_measure([0, 1, 2, 4]), 6, 5, drop_first=(), progress=False, log=None)
    assert len(res.rounds) == 4 and res.encoding.tolist() == [3] * 6
    with pytest.raises(ValueError, match="expected"):
        P.prune_search(lambda m: {"x": np.zeros(len(m))}, 6, 5, progress=False, log=None)


# ----------------------------------------------------------------------------- evolution


def test_rank_sum_and_parent_rule():
    scores = {"k": np.array([3.0, 2.0, 1.0, np.nan]), "r": np.array([1.0, 3.0, 2.0, 9.0])}
    # ranks (1 = best): k -> 1, 2, 3, 4 (NaN last); r -> 4, 2, 3, 1
    np.testing.assert_allclose(rank_sum(scores), [1 + 4, 2 + 2, 3 + 3, 4 + 1])
    assert select_parent(scores) == 1
    assert select_parent({"a": np.array([1.0, 5.0, 5.0])}) == 1  # ties: the first


def test_rank_sum_evolution_finds_the_best_of_a_separable_objective():
    target = np.array([3, 3, 2, 1, 3, 2])

    def objective(enc):
        match = (np.asarray(enc) == target).sum(axis=1).astype(float)
        return {"match": match, "noisy": match + 0.1 * np.asarray(enc)[:, 0]}

    res = rank_sum_evolution(objective, 0, population=16, sample=8, steps=200)
    assert res.encoding.tolist() == target.tolist()
    assert res.n_evaluated <= 16 + 200 and res.algo == "teg-ea"
    # parents climb: a random architecture matches 1.2 of 6 positions on average
    late = [(nb201.string_to_encoding(h) == target).sum() for h in res.history[100:]]
    assert np.mean(late) > 4
    with pytest.raises(ValueError, match="sample"):
        rank_sum_evolution(objective, 0, population=4, sample=5, steps=1)


# ----------------------------------------------------------------------------- real network


@pytest.fixture(scope="module")
def tiny_measure():
    from fbnas_jax.models import nb201 as M
    from fbnas_jax.search.mask_measure import indicator_measure

    net = M.build_network(channels=4, cells_per_stage=1, bn_mode="bnnas")
    imgs = np.random.default_rng(0).standard_normal((2 * 12, 16, 16, 3)).astype(np.float32)
    return indicator_measure(net, ["ntk_cond", "linear_regions"], imgs, repeats=2,
                             options={"ntk_cond": {"batch_size": 8}, "linear_regions": {"batch_size": 12}})


def test_real_prune_round_on_a_tiny_supernet(tiny_measure):
    mask = P.full_mask(6, 5)
    mask[:, 0] = 0
    mask[1:, :] = nb201.encodings_to_weights(np.array([3, 3, 3, 3, 3, 3]))[1:]  # only edge 0 is mixed
    rnd = P.prune_round(mask, tiny_measure, chunk_size=5)
    assert rnd.candidates.tolist() == [[0, 1], [0, 2], [0, 3], [0, 4]]
    assert rnd.pruned.shape == (1, 2) and rnd.pruned[0, 0] == 0 and rnd.mask[0].sum() == 3
    assert set(rnd.gains) == {"ntk_cond", "linear_regions"} and all(len(b) == 2 for b in rnd.base_scores.values())
    assert all(np.isfinite(v) for v in rnd.base_scores["ntk_cond"])
    # the gains are the relative changes of the per-repeat scores the round recorded
    again = tiny_measure(P.candidate_masks(mask, [[0, 1]] * 5))  # same chunk shape: no recompile
    base = np.asarray(rnd.base_scores["ntk_cond"])
    np.testing.assert_allclose(rnd.gains["ntk_cond"][0], np.mean((again["ntk_cond"][:, 0] - base) / np.abs(base)),
                               rtol=1e-5)


# ----------------------------------------------------------------------------- CLI


def _cli(capsys, *argv):
    from fbnas_jax.cli import main

    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    p = tmp_path_factory.mktemp("prune") / "tiny.yaml"
    p.write_text("model: {space: nb201, channels: 4, cells_per_stage: 1, bn_mode: bnnas}\n"
                 "data: {source: synthetic}\n")
    return str(p)


def test_cli_bad_combinations(capsys, tiny_config, tmp_path):
    code, _, err = _cli(capsys, "search", "--scores", str(tmp_path / "x.csv"), "--algo", "prune", "--indicator", "tenas")
    assert code == 2 and "--config or --checkpoint" in err
    code, _, err = _cli(capsys, "search", "--config", tiny_config, "--algo", "random", "--indicator", "tenas")
    assert code == 2 and "one indicator" in err
    code, _, err = _cli(capsys, "search", "--config", tiny_config, "--algo", "prune", "--indicator", "tenas",
                        "--max-params", "1")
    assert code == 2 and "--max-params" in err
    code, _, err = _cli(capsys, "search", "--config", tiny_config, "--algo", "prune", "--indicator", "ntk_cond",
                        "--batch", "ntk_cond=x")
    assert code == 2 and "INDICATOR=SIZE" in err
    code, _, err = _cli(capsys, "search", "--config", tiny_config, "--algo", "prune", "--indicator", "nope")
    assert code == 2 and "unknown indicator" in err


def test_cli_teg_evolution_from_a_scores_csv(capsys, tmp_path):
    enc = nb201.all_encodings()[::25]
    p = tmp_path / "scores.csv"
    rows = ["arch,a,b"] + [f"{nb201.encoding_to_string(e)},{(e == 3).sum()},{(e == 3).sum() + 0.01 * e[0]}"
                           for e in enc]
    p.write_text("\n".join(rows) + "\n")
    out_json = tmp_path / "res.json"
    code, out, err = _cli(capsys, "search", "--scores", str(p), "--algo", "ea", "--indicator", "a,b",
                          "--population", "16", "--sample", "4", "--steps", "30", "--no-progress", "--json",
                          "--out", str(out_json))
    assert code == 0, err
    res = json.loads(out)
    assert res["algo"] == "teg-ea" and res["indicator"] == ["a", "b"] and json.loads(out_json.read_text()) == res


def test_indicator_sets_expand():
    from fbnas_jax.commands.search import _indicator_names

    assert _indicator_names("teg", "ea") == ["ntk_cond", "linear_regions_tenas", "teg_generalization"]
    assert _indicator_names("tenas", "prune") == ["ntk_cond", "linear_regions_tenas"]
    assert _indicator_names("cpi", "ea") == ["cpi"]  # the SPOS EA keeps a composite whole (reference ranks)
    assert _indicator_names("naswot, naswot,snip", "ea") == ["naswot", "snip"]
