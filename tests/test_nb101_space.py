"""NAS-Bench-101 as data: the benchmark's hash, pruning, validity, sampling, EA moves, costs.

The 1,001-cell subset (``../shared/data/nasbench101/nb101_subset.csv``, or ``FBNAS_NB101_CSV``)
is the reference: every row's ``trainable_parameters`` and ``nb101_hash`` are recomputed from
its adjacency and ops. Pure NumPy, about a second.
"""
from __future__ import annotations

import csv
import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from fbnas_jax import spaces
from fbnas_jax.spaces import SearchSpaceError, nb101

S = nb101.SPACE
CSV = Path(os.environ.get("FBNAS_NB101_CSV", Path(__file__).resolve().parents[2] / "shared/data/nasbench101/nb101_subset.csv"))
EXAMPLE = ("0100110001000000010010000010000001000000010000000:input|conv3x3-bn-relu|maxpool3x3|"
           "conv3x3-bn-relu|conv3x3-bn-relu|conv1x1-bn-relu|output")


@pytest.fixture(scope="module")
def rows():
    if not CSV.is_file():
        pytest.skip(f"NB101 subset CSV not found at {CSV} (set FBNAS_NB101_CSV)")
    return list(csv.DictReader(CSV.open()))


def test_registered_and_shapes():
    assert spaces.get("nb101") is S and "nb101" in spaces.names()
    assert S.encoding_shape == (26,) and not S.enumerable and S.choices is None
    enc = S.parse(EXAMPLE)
    assert enc.dtype == np.int32 and enc.shape == (26,)
    assert S.to_string(enc) == EXAMPLE and S.key(enc) == "00005c142e6f48ac74fdcf73e3439874"
    d = S.describe(enc)
    assert d["hash"] == "00005c142e6f48ac74fdcf73e3439874" and d["num_vertices"] == 7 and d["num_edges"] == 9


def test_params_and_hash_of_all_1001_cells(rows):
    assert len(rows) == 1001
    hashes = set()
    for r in rows:
        enc = S.from_table_row([r["adjacency"], r["ops"]])
        assert round(S.cost(enc).params_m * 1e6) == int(r["trainable_parameters"]), r["nb101_hash"]
        h = S.key(enc)
        if r["nb101_hash"]:
            assert h == r["nb101_hash"]
        hashes.add(h)
        # the table's cells are pruned (but one): the string form is the table's own
        if S.pruned(enc)[0].shape[0] == int(r["num_vertices"]):
            assert S.to_string(enc) == f"{r['adjacency']}:{r['ops']}"
    assert len(hashes) == 1001  # the hash-less (unpruned) row is a cell of its own
    assert sum(not r["nb101_hash"] for r in rows) == 1


def test_hash_is_isomorphism_invariant_and_label_sensitive():
    enc = S.parse(EXAMPLE)
    matrix, ops = S.pruned(enc)
    labels = [-1] + [nb101.OP_INDEX[o] for o in ops[1:-1]] + [-2]
    ref = nb101.hash_module(matrix, labels)
    for perm in itertools.islice(itertools.permutations(range(1, 6)), 0, 120, 7):
        p = [0, *perm, 6]  # relabel interior vertices: same graph
        inv = np.argsort(p)
        pm = matrix[np.ix_(inv, inv)]
        assert nb101.hash_module(pm, [labels[i] for i in inv]) == ref
    other = list(labels)
    other[1] = 2 if other[1] != 2 else 0
    assert nb101.hash_module(matrix, other) != ref


def test_pruning_unused_vertices_changes_nothing():
    enc = S.parse(EXAMPLE)
    # add a vertex-4 -> vertex-6 free vertex? use the table's unpruned row shape instead:
    text = ("0111101000001100000010000110000001100000000000000:input|maxpool3x3|maxpool3x3|"
            "conv3x3-bn-relu|conv3x3-bn-relu|conv3x3-bn-relu|output")
    dangling = S.parse(text)  # vertex 5 does not reach the output
    assert S.pruned(dangling)[0].shape == (6, 6)
    assert S.key(dangling) == S.key(S.canonical(dangling))
    assert S.cost(dangling) == S.cost(S.canonical(dangling))
    assert S.to_string(dangling) == S.to_string(S.canonical(dangling)) != text
    # an op change on a dead vertex is the same network
    e2 = enc.copy()
    e2[21 + 4] = (e2[21 + 4] + 1) % 3  # vertex 5 is live in EXAMPLE: a different cell
    assert S.key(e2) != S.key(enc)


@pytest.mark.parametrize("bad, msg", [
    ("0100:input|output|output", "adjacency must be 9"),
    ("0000:input|output", "does not reach"),
    ("0110" "0001" "0001" "0000:input|conv3x3-bn-relu|conv9x9|output", "unknown NB101 op"),
    ("0100" "1000" "0001" "0000:input|conv3x3-bn-relu|maxpool3x3|output", "upper triangular"),
    ("0100:output|input", "start with 'input'"),
    ("0100", "neither a nb101"),
    ("0100:input", "1 vertices"),
])
def test_bad_strings(bad, msg):
    with pytest.raises(SearchSpaceError, match=msg):
        S.parse(bad)


def test_too_many_edges_and_bad_encodings():
    full = np.concatenate([np.ones(21, np.int32), np.zeros(5, np.int32)])
    with pytest.raises(SearchSpaceError, match="21 edges"):
        S.validate(full)
    with pytest.raises(SearchSpaceError, match="shape"):
        S.validate(np.zeros(7, np.int32))
    bad = S.parse(EXAMPLE).copy()
    bad[22] = 3
    with pytest.raises(SearchSpaceError, match="op indices"):
        S.validate(bad)


def test_full_dags_match_brute_force_and_sampling_is_valid():
    def brute(v):
        pairs = [(i, j) for i in range(v) for j in range(i + 1, v)]
        n = 0
        for bits in itertools.product((0, 1), repeat=len(pairs)):
            m = np.zeros((v, v), int)
            for (i, j), b in zip(pairs, bits):
                m[i, j] = b
            if m.sum() <= 9 and (m[:-1].sum(1) > 0).all() and (m[:, 1:].sum(0) > 0).all():
                n += 1
        return n
    assert [len(nb101.full_dags(v)) for v in range(2, 8)] == [brute(2), brute(3), brute(4), brute(5), 1545, 4793]
    rng = np.random.default_rng(0)
    enc = S.sample(rng, 400)
    sizes = np.asarray([len(S.pruned(e)[1]) for e in enc])
    assert 0.8 < (sizes == 7).mean() < 0.97 and (sizes == 6).mean() > 0.03
    assert len({S.key(e) for e in enc}) > 390
    np.testing.assert_array_equal(S.sample(np.random.default_rng(5), 3), S.sample(np.random.default_rng(5), 3))


def test_ea_moves_and_fair_group_stay_valid():
    rng = np.random.default_rng(1)
    parents = S.sample(rng, 20)
    for a, b in zip(parents[:-1], parents[1:]):
        for child in (S.mutate(rng, a, 0.2), S.crossover(rng, a, b)):
            S.validate(child)
    np.testing.assert_array_equal(S.mutate(rng, parents[0], 0.0), parents[0])
    changed = sum(S.key(S.mutate(rng, p, 0.3)) != S.key(p) for p in parents)
    assert changed >= 15
    group = S.fair_group(rng)
    assert group.shape == (3, 26)
    assert (group[:, :21] == group[0, :21]).all()  # one topology
    for t in range(5):
        assert sorted(group[:, 21 + t]) == [0, 1, 2]


def test_costs_flops_convention():
    # input -> conv1x1 -> output, C=4, one module per stack, 8x8 images, 10 classes
    enc = S.parse("0100" "0010" "0001" "0000:input|conv1x1-bn-relu|conv3x3-bn-relu|output")
    c = S.cost(enc, channels=4, cells_per_stage=1, input_size=8)
    # stem 3->4 3x3 at 8x8; stacks at (4, 8x8), (8, 4x4), (16, 2x2): proj c_in->c, 1x1 c->c, 3x3 c->c
    flops = 27 * 4 * 64
    params = 27 * 4 + 8
    for c_in, ch, hw in ((4, 4, 64), (4, 8, 16), (8, 16, 4)):
        flops += (c_in * ch + ch * ch + 9 * ch * ch) * hw
        params += c_in * ch + ch * ch + 9 * ch * ch + 3 * 2 * ch
    flops += 16 * 10 + 10
    params += 16 * 10 + 10
    assert c == (params / 1e6, flops / 1e6)
    p, f = S.costs(np.stack([enc, enc]), channels=4, cells_per_stage=1, input_size=8)
    assert p.tolist() == [c.params_m] * 2 and f.tolist() == [c.flops_m] * 2
    with pytest.raises(ValueError, match="channels"):
        S.cost(enc, channels=0)
