"""The search-space interface: registry, NB201 on it, and random streams that stay put.

The golden values were recorded with the NB201-only code that preceded the interface: a seeded
search must keep picking the same architectures (committed benchmark numbers depend on it).
"""
from __future__ import annotations

import jax
import numpy as np
import pytest

from fbnas_jax import spaces
from fbnas_jax.search import evolutionary_search, random_search
from fbnas_jax.spaces import SearchSpaceError, nb201
from fbnas_jax.training.samplers import keyed_group, make_sampler


def _objective(e):
    e = np.asarray(e)
    return np.sin(e @ np.arange(1, 7) * 1.7) + 0.01 * e.sum(1)


def test_registry_and_discovery():
    assert {"nb201", "nb101"} <= set(spaces.names())
    assert spaces.get("nb201") is nb201.SPACE and spaces.get(nb201.SPACE) is nb201.SPACE
    with pytest.raises(SearchSpaceError, match="unknown search space 'nope'; available: .*nb101.*nb201"):
        spaces.get("nope")
    from fbnas_jax.models.nb201 import build_network

    assert spaces.of_network(build_network(channels=4, cells_per_stage=1)) is nb201.SPACE


def test_nb201_space_is_the_module():
    s = nb201.SPACE
    enc = s.all_encodings()
    assert s.enumerable and s.size == len(enc) == 15625 and s.choices == (5,) * 6
    np.testing.assert_array_equal(s.index(enc[[0, 7, 15624]]), [0, 7, 15624])
    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"
    assert s.to_string(s.parse(cell)) == cell == s.key(s.parse("3,3,4,0,3,4"))
    assert s.cost(cell) == (0.802426, 113.95137)
    with pytest.raises(SearchSpaceError, match="6 comma-separated integers"):
        s.parse("1,2,3")
    group = s.fair_group(np.random.default_rng(0))
    assert group.shape == (5, 6) and all(sorted(group[:, e]) == list(range(5)) for e in range(6))


def test_seeded_searches_pick_what_the_nb201_only_code_picked():
    ea = evolutionary_search(_objective, np.random.default_rng(0))
    assert ea.arch == "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    assert ea.score == 1.1849620738223556 and ea.n_evaluated == 1000
    assert ea.evaluated[:3].tolist() == [[0, 1, 4, 1, 4, 2], [0, 0, 3, 2, 3, 2], [4, 1, 0, 3, 2, 1]]
    assert ea.evaluated[-1].tolist() == [2, 3, 0, 3, 4, 1]
    rs = random_search(_objective, 100, np.random.default_rng(1), max_params=0.8)
    assert rs.arch == "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|"
    assert rs.evaluated[:2].tolist() == [[3, 2, 2, 4, 0, 2], [2, 4, 4, 1, 4, 4]]


def test_training_streams_are_the_keyed_jax_streams():
    spos, fair = make_sampler("nb201", "spos", 0), make_sampler("nb201", "fairnas", 0)
    for step in (0, 7):
        key = jax.random.fold_in(jax.random.key(0), step)
        np.testing.assert_array_equal(spos(step), jax.random.randint(key, (1, 6), 0, 5))
        perms = jax.vmap(lambda k: jax.random.permutation(k, 5))(jax.random.split(key, 6))
        np.testing.assert_array_equal(fair(step), np.asarray(perms).T)
        np.testing.assert_array_equal(keyed_group(key, "spos"), spos(step))
    assert make_sampler("nb201", "fixed", 0)(3).shape == (1, 6)
    with pytest.raises(ValueError, match="sampler"):
        make_sampler("nb201", "greedy", 0)
