"""One BN-only SPOS training step of the DARTS and MobileNet supernets, compiled and run at
tiny size, equals the same step of the stand-alone subnet: the sampled ops' BNs move exactly as
the stand-alone net's, every other BN (parameters and running statistics) and every frozen
weight stays bit-identical. (Both supernets scan over stacked edges / layers, so the subnet is
cut out with ``subnet_variables``.)"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from fbnas_jax.models import darts as D
from fbnas_jax.models import mobilenet as M
from fbnas_jax.spaces import mobilenet as SM
from fbnas_jax.spaces.darts import DartsSpace
from fbnas_jax.training import steps


def _one_step(net, init, encoding, batch):
    """Variables before and after one BN-only step (supernet: on ``encoding``; stand-alone: None)."""
    tx = steps.make_optimizer(learning_rate=0.5, total_steps=4, weight_decay=0.0)  # no decay: untrained BNs stay
    variables = init(net)
    labels = steps.partition.param_labels(variables["params"])
    opt = steps.partition.masked_optimizer(tx, labels)
    state = steps.TrainState(jnp.zeros((), jnp.int32), variables["params"], variables["batch_stats"],
                             opt.init(variables["params"]))
    step = steps.make_train_step(net, tx, labels, sampler="spos" if encoding is not None else "fixed")
    new, metrics = step(state, batch, None if encoding is None else np.asarray(encoding)[None])
    assert bool(metrics["finite"]) and np.isfinite(float(metrics["loss"]))
    return state.variables, new.variables


def _check(supernet, alone, init_super, cut, encoding, batch):
    before, after = _one_step(supernet, init_super, encoding, batch)
    sub_before = cut(before, init_super(alone))

    def init_alone(_):
        return sub_before

    alone_before, alone_after = _one_step(alone, init_alone, None, batch)
    got = traverse_util.flatten_dict(cut(after, alone_after))
    want = traverse_util.flatten_dict(alone_after)
    for path, value in want.items():  # the subnet's variables after one step = the stand-alone net's
        np.testing.assert_allclose(np.asarray(got[path]), np.asarray(value), rtol=1e-4, atol=1e-5,
                                   err_msg="/".join(path))
    moved = [p for p, v in want.items() if p[-1] == "scale" and not np.array_equal(v, traverse_util.flatten_dict(
        alone_before)[p])]
    assert moved, "BN-only step changed no gamma"
    # nothing outside the subnet changed; frozen weights bit-identical everywhere
    flat_b, flat_a = traverse_util.flatten_dict(before), traverse_util.flatten_dict(after)
    for path in flat_b:
        if path[-1] == "kernel":
            assert np.array_equal(flat_b[path], flat_a[path]), path
    return flat_b, flat_a


def test_darts_supernet_spos_step_equals_standalone_step():
    layers, size = 3, 8
    supernet = D.make_network(channels=4, layers=layers, num_classes=10, bn_mode="fair")
    genotype = DartsSpace().parse("DARTS_V2")
    alone = D.make_network(channels=4, layers=layers, num_classes=10, bn_mode="fair", arch=genotype)
    rng = np.random.default_rng(0)
    batch = {"image": rng.standard_normal((16, size, size, 3)).astype(np.float32),
             "label": rng.integers(0, 10, 16).astype(np.int32)}
    before, after = _check(supernet, alone, lambda net: D.init_variables(net, 1, (size, size, 3)),
                              lambda v, a: D.subnet_variables(v, a, layers=layers), genotype, batch)
    # an edge DARTS_V2 does not use (normal cell 0, state 3 <- state 2) kept its BNs and running statistics
    unused = D.edge_position(False, 1, 2)
    for path in before:
        if path[1] == "cell_0" and path[2] == unused[0] and path[-2].endswith("bn"):
            np.testing.assert_array_equal(before[path][unused[1]], after[path][unused[1]])


def test_mobilenet_supernet_spos_step_equals_standalone_step():
    sk = SM.Skeleton("tiny", stem_channels=8, first_channels=0, widths=(8, 16), depths=(1, 3), strides=(1, 2),
                     mix_channels=16, stem_stride=1, input_size=16, num_classes=10)
    supernet = M.make_network(sk, bn_mode="fair")  # layers 2, 3 identical: scanned (layers_2_3)
    encoding = np.asarray([SM.SKIP, 3, 5, 0], np.int32)  # skip, k5e6, k7e6, k3e3
    alone = M.make_network(sk, bn_mode="fair", arch=encoding)
    rng = np.random.default_rng(1)
    batch = {"image": rng.standard_normal((16, 16, 16, 3)).astype(np.float32),
             "label": rng.integers(0, 10, 16).astype(np.int32)}

    def cut(v, a):
        return M.subnet_variables(v, a, net=supernet)

    before, after = _check(supernet, alone, lambda net: M.init_variables(net, 1, (16, 16, 3)), cut, encoding,
                              batch)
    unchosen = [p for p in before if p[1] == "layer_1" and p[2] == "k3e3" and p[-2].endswith("bn")]
    assert unchosen and all(np.array_equal(before[p], after[p]) for p in unchosen)
    # layer 3 (row 1 of the stacked run) chose k3e3, layer 2 (row 0) k7e6: row 0's k3e3 BNs untouched
    stacked = [p for p in before if p[1] == "layers_2_3" and p[2] == "k3e3" and p[-2].endswith("bn")]
    assert stacked and all(np.array_equal(before[p][0], after[p][0]) for p in stacked)
    assert any(not np.array_equal(before[p][1], after[p][1]) for p in stacked if p[0] == "params")
