"""Cost model of NB201: reproduces the benchmark's published params / FLOPs."""
import numpy as np
import pytest

from fbnas_jax.spaces import nb201
from fbnas_jax.spaces.cost import Cost, cost_table, nb201_cost, nb201_costs
from fbnas_jax.spaces.nb201 import SearchSpaceError

ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"

# (cell string, num_classes, params_m, flops_m) as published by NAS-Bench-201.
REFERENCES = [
    ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
     10, 0.129306, 15.64737),  # CIFAR-10 index 0
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|",
     10, 0.802426, 113.95137),  # index 11
    ("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|none~2|",
     10, 0.101306, 11.71521),  # index 284
    (ALL_CONV3, 10, 1.531546, 220.11969),
    (ALL_NONE, 10, 0.073306, 7.78305),
    ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
     100, 0.135156, 15.65322),  # CIFAR-100 index 0
]


@pytest.mark.parametrize("arch,classes,params,flops", REFERENCES)
def test_published_values(arch, classes, params, flops):
    for given in (arch, nb201.string_to_encoding(arch), nb201.string_to_encoding(arch).tolist()):
        cost = nb201_cost(given, num_classes=classes)
        assert isinstance(cost, Cost)
        assert cost.params_m == pytest.approx(params, abs=1e-5)
        assert cost.flops_m == pytest.approx(flops, abs=1e-5)


def test_vectorised_references():
    for classes in (10, 100):
        refs = [r for r in REFERENCES if r[1] == classes]
        p, f = nb201_costs([r[0] for r in refs], num_classes=classes)
        np.testing.assert_allclose(p, [r[2] for r in refs], atol=1e-5, rtol=0)
        np.testing.assert_allclose(f, [r[3] for r in refs], atol=1e-5, rtol=0)


def test_vectorised_matches_scalar():
    rng = np.random.default_rng(0)
    enc = nb201.sample_encodings(rng, 200)
    for kw in ({}, {"num_classes": 120, "input_size": 16}, {"channels": 8, "cells_per_stage": 2}):
        p, f = nb201_costs(enc, **kw)
        assert p.shape == f.shape == (200,)
        assert p.dtype == f.dtype == np.float64
        for i in range(len(enc)):
            c = nb201_cost(enc[i], **kw)
            assert p[i] == pytest.approx(c.params_m, abs=1e-12)
            assert f[i] == pytest.approx(c.flops_m, abs=1e-12)


def test_extremes_over_whole_space():
    p, f = nb201_costs(nb201.all_encodings())
    assert p.shape == (nb201.NUM_ARCHS,)
    assert p.max() == pytest.approx(1.531546, abs=1e-9)
    assert f.max() == pytest.approx(220.11969, abs=1e-9)
    assert p.min() == pytest.approx(0.073306, abs=1e-9)
    assert f.min() == pytest.approx(7.78305, abs=1e-9)
    assert p.argmax() == f.argmax() == nb201.encoding_to_index(nb201.string_to_encoding(ALL_CONV3))


def test_cost_table_is_additive_and_pooling_is_free():
    t = cost_table()
    assert t.base_params_m == pytest.approx(0.073306, abs=1e-12)
    assert t.base_flops_m == pytest.approx(7.78305, abs=1e-12)
    for name in ("none", "skip_connect", "avg_pool_3x3"):
        k = nb201.OPS.index(name)
        assert t.op_params_m[k] == 0 and t.op_flops_m[k] == 0
    enc = np.array([4, 2, 1, 2, 1, 1])
    c = nb201_cost(enc)
    assert c.params_m == pytest.approx(t.base_params_m + t.op_params_m[enc].sum(), abs=1e-12)
    assert c.flops_m == pytest.approx(t.base_flops_m + t.op_flops_m[enc].sum(), abs=1e-12)


def test_configurable_skeleton_scales():
    # More classes only changes the linear head: (4C + 1) * extra classes.
    base = nb201_cost([3] * 6)
    more = nb201_cost([3] * 6, num_classes=11)
    assert more.params_m - base.params_m == pytest.approx(65e-6, abs=1e-12)
    assert more.flops_m - base.flops_m == pytest.approx(65e-6, abs=1e-12)
    # Halving the input side divides conv FLOPs by 4; params are unchanged.
    small = nb201_cost([3] * 6, input_size=16)
    assert small.params_m == pytest.approx(base.params_m, abs=1e-12)
    assert small.flops_m == pytest.approx((base.flops_m - 650e-6) / 4 + 650e-6, abs=1e-9)
    # No cells: the skeleton alone.
    assert nb201_cost([3] * 6, cells_per_stage=0) == nb201_cost([0] * 6, cells_per_stage=0)


@pytest.mark.parametrize(
    "bad",
    [
        [0, 1, 2, 3, 4],
        [0, 1, 2, 3, 4, 5],
        [-1, 0, 0, 0, 0, 0],
        [0.5, 0, 0, 0, 0, 0],
        "|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~0|+|none~0|none~1|",
        "",
    ],
)
def test_bad_architecture_raises(bad):
    with pytest.raises(SearchSpaceError):
        nb201_cost(bad)


def test_bad_batch_raises():
    with pytest.raises(SearchSpaceError):
        nb201_costs(np.zeros((3, 5), dtype=int))
    with pytest.raises(SearchSpaceError):
        nb201_costs(np.full((2, 6), 5))
    with pytest.raises(SearchSpaceError):
        nb201_costs(np.full((2, 6), 0.5))
    with pytest.raises(SearchSpaceError):
        nb201_costs(["|none~0|+|none~0|none~1|+|none~0|none~1|bogus~2|"])
    p, f = nb201_costs(np.zeros((0, 6), dtype=int))
    assert p.shape == f.shape == (0,)


@pytest.mark.parametrize(
    "kw", [{"num_classes": 0}, {"channels": 0}, {"cells_per_stage": -1}, {"input_size": 30}, {"channels": 2.5}]
)
def test_bad_skeleton_raises(kw):
    with pytest.raises(ValueError):
        nb201_cost([3] * 6, **kw)
