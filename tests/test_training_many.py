"""Many stand-alone networks trained BN-only at once (vmap) equal the networks trained alone."""
from __future__ import annotations

import numpy as np
import pytest

from fbnas_jax.models.nb201 import bn_table, table_scores
from fbnas_jax.models.layers import ForwardMode
from fbnas_jax.models.nb201 import build_network
from fbnas_jax.spaces import nb201
from fbnas_jax.training.many import evaluate_many, gamma_many, train_many
from fbnas_jax.training.steps import make_optimizer

ENC = np.array([[3, 1, 2, 0, 3, 4], [1, 4, 0, 2, 2, 3]], np.int32)


@pytest.fixture(scope="module")
def runs(tiny_dataset):
    net = build_network(channels=4, cells_per_stage=1, bn_mode="bnnas")
    kw = dict(tx_fn=lambda n: make_optimizer(learning_rate=0.5, total_steps=n, warmup_steps=2),
              batch_size=32, epochs=1, seed=3, label_smoothing=0.1)
    # the same two networks in swapped slots: one compiled program, two runs
    return net, train_many(net, ENC, tiny_dataset, **kw), train_many(net, ENC[::-1], tiny_dataset, **kw)


def test_each_network_trains_as_if_alone(runs):
    # a network's training depends on its own encoding only, not on its slot or its neighbours
    _, both, swapped = runs
    for path, v in both.bn_params.items():
        for k in range(2):
            np.testing.assert_allclose(v[k], swapped.bn_params[path][1 - k], rtol=1e-5, atol=1e-7, err_msg=str(path))
    moved = [p for p, v in both.bn_params.items() if not np.allclose(v[0], v[1])]
    assert moved, "the two networks hold different BN copies"
    np.testing.assert_allclose(both.final_loss, swapped.final_loss[::-1], rtol=1e-5)


def test_unchosen_ops_keep_their_initial_bn(runs):
    _, both, _ = runs
    # network 0 never uses nor_conv_1x1 on edge 0 (it chose op 3): that BN is still scale 1, bias 0
    path = ("cell_0", "edge_0", "nor_conv_1x1", "bn", "scale")
    np.testing.assert_array_equal(both.bn_params[path][0], 1.0)
    assert not np.allclose(both.bn_params[("cell_0", "edge_0", "nor_conv_3x3", "bn", "scale")][0], 1.0)


def test_gamma_and_accuracy_match_the_single_network_readings(runs, tiny_dataset):
    from fbnas_jax.data import normalize

    net, both, _ = runs
    gammas = gamma_many(both)
    x = normalize(tiny_dataset.test_images, tiny_dataset.mean, tiny_dataset.std)
    y = tiny_dataset.test_labels
    acc = evaluate_many(both, x, y, batch_size=24)  # 64 images: a padded last batch
    for k in range(2):
        v = both.variables(k)
        table = bn_table(v["params"], v["batch_stats"], num_cells=net.num_cells, bn_mode="bnnas")
        np.testing.assert_allclose(gammas[k], float(table_scores(table, ENC[k:k + 1])[0]), rtol=1e-6)
        logits = net.apply(v, x, ENC[k], mode=ForwardMode(train=False))
        assert acc[k] == pytest.approx(float(np.mean(np.argmax(np.asarray(logits), -1) == y)))
    # an op without BN in this placement (skip_connect, avg_pool) adds nothing to gamma
    convs = [np.isin(e, [nb201.op_index("nor_conv_1x1"), nb201.op_index("nor_conv_3x3")]).sum() for e in ENC]
    np.testing.assert_allclose(gammas, 3 * np.asarray(convs), rtol=0.2)


def test_supernet_only(tiny_dataset):
    net = build_network(channels=4, cells_per_stage=1, arch=ENC[0])
    with pytest.raises(ValueError, match="supernet"):
        train_many(net, ENC, tiny_dataset, tx_fn=lambda n: make_optimizer(learning_rate=0.1, total_steps=n),
                   batch_size=32)

