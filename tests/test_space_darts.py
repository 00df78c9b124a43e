"""DARTS space as data: DARTS_V2's published parameter count, genotypes both ways, EA moves."""
import numpy as np
import pytest

from fbnas_jax.spaces import base
from fbnas_jax.spaces.base import SearchSpaceError
from fbnas_jax.spaces.darts import GENOTYPES, NONE, NUM_OPS, OPS, DartsSpace


@pytest.fixture(scope="module")
def space():
    return base.get("darts")


def reference_count(genotype: dict, C: int, layers: int, classes: int, imagenet: bool) -> tuple[int, int]:
    """Cell-by-cell count of NetworkCIFAR / NetworkImageNet written apart from the cost table."""
    def op(name, c, stride, h):
        if name in ("none", "max_pool_3x3", "avg_pool_3x3") or (name == "skip_connect" and stride == 1):
            return 0, 0
        if name == "skip_connect":
            return c * c + 2 * c, c * c * h * h
        k = int(name[-1])
        n = 2 if name.startswith("sep") else 1
        return n * (c * k * k + c * c + 2 * c), n * (c * k * k + c * c) * h * h

    if imagenet:
        P = 3 * (C // 2) * 9 + C + (C // 2) * C * 9 + 2 * C + C * C * 9 + 2 * C
        F = 3 * (C // 2) * 9 * 112 ** 2 + (C // 2) * C * 9 * 56 ** 2 + C * C * 9 * 28 ** 2
        cpp, cp, c, red_prev, h = C, C, C, True, 28
    else:
        P, F = 3 * 3 * C * 9 + 6 * C, 3 * 3 * C * 9 * 32 ** 2
        cpp, cp, c, red_prev, h = 3 * C, 3 * C, C, False, 32
    for i in range(layers):
        red = i in (layers // 3, 2 * layers // 3)
        c = 2 * c if red else c
        P += cpp * c + 2 * c + cp * c + 2 * c  # both preprocessings have C_in * C weights + BN
        F += (cpp * c + cp * c) * h * h
        out = h // 2 if red else h
        for name, j in genotype["reduce" if red else "normal"]:
            p, f = op(name, c, 2 if red and j < 2 else 1, out)
            P, F = P + p, F + f
        cpp, cp, red_prev, h = cp, 4 * c, red, out
    return P + cp * classes + classes, F + cp * classes


def test_darts_v2_published_params_exact(space):
    enc = space.parse("DARTS_V2")
    params, flops = space.exact_costs(enc[None])
    assert int(params[0]) == 3_349_342  # the DARTS code's count, auxiliary head excluded
    assert int(flops[0]) == 528_359_040  # multiply-adds (regression; ~528 M as usually quoted)
    imagenet = space.configure(setting="imagenet")
    p, f = imagenet.exact_costs(enc[None])
    assert (int(p[0]), int(f[0])) == (4_718_752, 529_911_552)  # 4.7 M params as published
    cost = space.cost(enc, setting="imagenet")
    assert cost.params_m == pytest.approx(4.718752, abs=1e-9)


@pytest.mark.parametrize("setting", ["cifar", "imagenet"])
def test_costs_match_independent_count(space, setting):
    from fbnas_jax.spaces.darts import parse_genotype

    sp = space.configure(setting=setting)
    rng = np.random.default_rng(0)
    encs = sp.sample(rng, 25)
    params, flops = sp.exact_costs(encs)
    s = sp.setting
    for enc, p, f in zip(encs, params, flops):
        g = parse_genotype(sp.to_string(enc))
        assert (int(p), int(f)) == reference_count(g, s.channels, s.layers, s.num_classes, setting == "imagenet")
    small = sp.costs(encs[:3], channels=8, layers=5)
    assert (small[0] < params[:3] / 1e6).all()


def test_genotype_strings_both_ways(space):
    for name, text in GENOTYPES.items():
        enc = space.parse(text)
        assert enc.shape == (2, 8, 2)
        assert space.to_string(enc) == text
        np.testing.assert_array_equal(space.parse(name), enc)
    ranged = GENOTYPES["DARTS_V1"].replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)")
    np.testing.assert_array_equal(space.parse(ranged), space.parse("DARTS_V1"))
    rng = np.random.default_rng(1)
    for enc in space.sample(rng, 100):
        np.testing.assert_array_equal(space.parse(space.to_string(enc)), enc)
    flat = ",".join(map(str, space.parse("DARTS_V2").ravel()))
    np.testing.assert_array_equal(space.parse(flat), space.parse("DARTS_V2"))


@pytest.mark.parametrize("text,match", [
    ("sep_conv_3x3", "a DARTS genotype looks like"),
    ("Genotype(normal=[('sep_conv_3x3', 0)], reduce=[])", "want 8"),
    (GENOTYPES["DARTS_V2"].replace("dil_conv_3x3", "conv_7x1_1x7"), "unknown op 'conv_7x1_1x7'"),
    (GENOTYPES["DARTS_V2"].replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[4, 5]"), "normal_concat must be"),
    (GENOTYPES["DARTS_V2"].replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), "inputs 0..4, got 5"),
    (GENOTYPES["DARTS_V2"].replace("('skip_connect', 0), ('dil_conv_3x3', 2)", "('skip_connect', 2), ('dil_conv_3x3', 2)"),
     "both come from state 2"),
    (GENOTYPES["DARTS_V2"].replace("reduce_concat", "reduction_concat"), "unknown field"),
    ("Genotype(normal=[('a', 0)] +, reduce=[])", "malformed genotype"),
    ("1,2,3", "nor 32 comma-separated integers"),
])
def test_bad_genotypes(space, text, match):
    with pytest.raises(SearchSpaceError, match=match):
        space.parse(text)


def test_key_ignores_edge_order_and_none_inputs(space):
    enc = space.parse("DARTS_V2")
    swapped = enc.copy()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]
    assert space.key(swapped) == space.key(enc)
    a = enc.copy()
    a[0, 7] = (NONE, 0)  # node 5: (skip, 0) would clash; use input 3 for the none edge
    a[0, 7, 1] = 3
    b = a.copy()
    b[0, 7, 1] = 1
    assert space.key(a) == space.key(b)
    c = enc.copy()
    c[0, 7, 0] = OPS.index("sep_conv_5x5")
    assert space.key(c) != space.key(enc)
    assert space.size > 10**18


def test_ea_moves_and_fair_groups(space):
    rng = np.random.default_rng(2)
    pop = space.sample(rng, 300)
    space.validate_batch(pop)
    # inputs uniform over the distinct pairs; every op appears
    assert set(np.unique(pop[..., 0])) == set(range(NUM_OPS))
    assert set(np.unique(pop[:, :, 7, 1])) == set(range(5))
    parent = pop[0]
    np.testing.assert_array_equal(space.mutate(rng, parent, 0.0), parent)
    kids = np.stack([space.mutate(rng, parent, 0.5) for _ in range(100)])
    space.validate_batch(kids)
    assert (kids != parent).any(axis=(1, 2, 3)).mean() > 0.9
    child = space.crossover(rng, pop[1], pop[2])
    space.validate(child)
    for cell in range(2):
        for node in range(4):
            edges = child[cell, 2 * node:2 * node + 2]
            assert (edges == pop[1][cell, 2 * node:2 * node + 2]).all() or (edges == pop[2][cell, 2 * node:2 * node + 2]).all()
    group = space.fair_group(rng)
    space.validate_batch(group)
    assert group.shape == (NUM_OPS, 2, 8, 2)
    assert (np.sort(group[..., 0], axis=0) == np.arange(NUM_OPS)[:, None, None]).all()


def test_options_and_errors(space):
    assert [o.name for o in space.options] == ["setting"]
    assert space.configure(setting="cifar") is space
    assert isinstance(space.configure(setting="imagenet"), DartsSpace)
    with pytest.raises(SearchSpaceError, match="unknown DARTS setting"):
        space.configure(setting="mnist")
    with pytest.raises(SearchSpaceError, match="unknown darts option"):
        space.configure(skeleton="x")
    with pytest.raises(SearchSpaceError, match="unknown DARTS cost setting"):
        space.cost(space.parse("DARTS_V2"), cells=3)
    with pytest.raises(SearchSpaceError, match="shape"):
        space.validate(np.zeros((2, 8)))
    with pytest.raises(SearchSpaceError, match="shape"):
        space.validate_batch(np.zeros((3, 2, 8)))


def test_evolutionary_search_respects_flops_and_params_limits(space):
    from fbnas_jax.search.algorithms import evolutionary_search

    rng = np.random.default_rng(0)
    params, flops = space.costs(space.sample(rng, 500))
    max_flops, max_params = float(np.median(flops)), float(np.median(params))

    def costlier_is_better(enc):
        return space.costs(enc)[1]

    res = evolutionary_search(costlier_is_better, rng, population=20, generations=5, top_k=5, mutations=10,
                              crossovers=10, max_flops=max_flops, max_params=max_params, space=space)
    p, f = space.costs(res.evaluated)
    assert res.n_evaluated >= 60 and (f <= max_flops).all() and (p <= max_params).all()
    assert res.flops_m <= max_flops and res.params_m <= max_params
