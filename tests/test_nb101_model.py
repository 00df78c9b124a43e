"""The NB101 network: a subnet of the supernet is the stand-alone network (forward, BN statistics,
NASWOT codes), parameter counts are the cost model's, and gamma / trainability read the right BNs.

A tiny supernet (stem 4 channels, two stacks of one module: the downsampling and channel
doubling included, 8x8 images), compiled once: the supernet forwards are ``jax.vmap``-ed over
the test cells in one jitted function; stand-alone networks run eagerly. Variables come from
``jax.eval_shape`` filled at random (no compiled init), with BN statistics away from 0/1.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from fbnas_jax.indicators._proxies import relu_kernel
from fbnas_jax.models import nb101 as M
from fbnas_jax.models.layers import ForwardMode
from fbnas_jax.spaces import nb101

S = nb101.SPACE
SIZE, C, STACKS = 8, 4, 2
CELLS = [
    ("0100110001000000010010000010000001000000010000000:input|conv3x3-bn-relu|maxpool3x3|"
     "conv3x3-bn-relu|conv3x3-bn-relu|conv1x1-bn-relu|output"),   # 7 vertices, input feeds 3 of them
    "0110000100010000:input|conv1x1-bn-relu|maxpool3x3|output",   # 2 vertices feed the output
    "0100:input|output",                                          # only the output projection
    ("0111000001001000010000000100000001000000010000000:input|maxpool3x3|conv1x1-bn-relu|"
     "conv3x3-bn-relu|conv3x3-bn-relu|maxpool3x3|output"),        # chain + input->output projection
]


def _net(bn_mode, arch=None):
    return M.build_network(channels=C, cells_per_stage=1, num_stacks=STACKS, bn_mode=bn_mode, arch=arch)


def _random_variables(net, seed=0):
    """Shapes of ``net``'s variables filled at random: He-normal kernels, BN scale/shift and
    running statistics away from 1/0 (so masks, op choices and eval mode all matter)."""
    enc = None if net.arch is not None else jnp.zeros((26,), jnp.int32)
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)), enc))
    rng = np.random.default_rng(seed)
    out = {}
    for col, tree in shapes.items():
        flat = {}
        for path, s in traverse_util.flatten_dict(tree).items():
            if path[-1] == "kernel":
                x = rng.normal(size=s.shape) * np.sqrt(2.0 / np.prod(s.shape[:-1]))
            elif path[-1] == "var":
                x = 0.5 + rng.random(s.shape)
            else:
                x = (1.0 if path[-1] == "scale" else 0.0) + 0.3 * rng.normal(size=s.shape)
            flat[path] = jnp.asarray(x, jnp.float32)
        out[col] = traverse_util.unflatten_dict(flat)
    return out


@pytest.fixture(scope="module")
def supernet():
    net = _net("fair")
    v = _random_variables(net)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(6, SIZE, SIZE, 3)), jnp.float32)
    encs = jnp.asarray(np.stack([S.parse(c) for c in CELLS]))

    @jax.jit
    @jax.vmap
    def run(e):  # eval logits, train logits + updated statistics, NASWOT kernel; one cell
        ev = net.apply(v, x, e, mode=ForwardMode(train=False))
        tr, upd = net.apply(v, x, e, mode=ForwardMode(train=True), mutable=["batch_stats"])
        return ev, tr, upd["batch_stats"], relu_kernel(net, v, x, e)

    return dict(net=net, v=v, x=x, encs=encs, out=jax.device_get(run(encs)))


def _close(a, b):
    scale = float(np.max(np.abs(b))) or 1.0
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


def test_subnet_is_the_standalone_network(supernet):
    net, v, x = supernet["net"], supernet["v"], supernet["x"]
    ev_all, tr_all, stats_all, kernels = supernet["out"]
    before = traverse_util.flatten_dict(jax.device_get(v["batch_stats"]))
    for i, (cell, enc) in enumerate(zip(CELLS, supernet["encs"])):
        solo = _net("fair", cell)
        sv = M.subnet_variables(v, enc, net)
        shapes = jax.eval_shape(lambda: solo.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3))))
        assert jax.tree.structure(shapes) == jax.tree.structure(sv)
        assert [a.shape for a in jax.tree.leaves(shapes)] == [a.shape for a in jax.tree.leaves(sv)]
        _close(solo.apply(sv, x, mode=ForwardMode(train=False)), ev_all[i])
        solo_tr, solo_upd = solo.apply(sv, x, mode=ForwardMode(train=True), mutable=["batch_stats"])
        _close(solo_tr, tr_all[i])
        # BN statistics: the subnet's slices moved exactly like the stand-alone net's ...
        stats = jax.tree.map(lambda s: s[i], stats_all)
        want = traverse_util.flatten_dict(solo_upd["batch_stats"])
        got = traverse_util.flatten_dict(M.subnet_variables({"params": v["params"], "batch_stats": stats},
                                                            enc, net)["batch_stats"])
        assert want.keys() == got.keys()
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5)
        # ... and nothing else moved (unchosen ops, unused vertices, masked channels)
        after = traverse_util.flatten_dict(stats)
        moved = sum(int((np.asarray(before[k]) != np.asarray(after[k])).sum()) for k in before)
        assert moved == sum(int(np.asarray(a).size) for a in jax.tree.leaves(solo_upd["batch_stats"])), cell
        # NASWOT codes count exactly the stand-alone network's units
        _, st = solo.apply(sv, x, mode=ForwardMode(train=True, relu_kernel=True), mutable=["relu_kernel"])
        np.testing.assert_array_equal(sum(jax.tree.leaves(st["relu_kernel"])), kernels[i])


@pytest.mark.parametrize("bn_mode", ["bnnas", "fair"])
def test_parameter_counts_are_the_cost_models(bn_mode):
    for cell in CELLS:
        enc = S.parse(cell)
        solo = _net(bn_mode, cell)
        shapes = jax.eval_shape(lambda: solo.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3))))
        n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes["params"]))
        expect = round(S.cost(enc, channels=C, cells_per_stage=1, input_size=SIZE, num_stacks=STACKS).params_m * 1e6)
        if bn_mode == "fair":  # + a BN (2 per channel) after every live max-pool
            live = nb101.live_vertices(nb101.matrix_of(enc))
            for c_in, c in solo.cell_channels():
                ch = nb101.position_channels(enc, c_in, c)
                expect += sum(2 * int(ch[t]) for t in range(1, 6) if live[t] and enc[20 + t] == 2)
        assert n_params == expect, (bn_mode, cell)


@pytest.mark.parametrize("bn_mode", ["bnnas", "fair"])
def test_bn_scores_read_each_chosen_ops_last_bn(bn_mode):
    net = _net(bn_mode)
    v = _random_variables(net, seed=1)
    encs = np.stack([S.parse(c) for c in CELLS])
    scores = jax.jit(lambda p, s, e: {k: M.bn_scores(p, s, e, net=net, kind=k) for k in ("gamma", "trainability")})
    got = scores(v["params"], v["batch_stats"], encs)
    for i, enc in enumerate(encs):
        sub = M.subnet_variables(v, enc, net)
        want = {"gamma": 0.0, "trainability": 0.0}
        for cell, params in sub["params"].items():
            for name, vertex in params.items() if cell.startswith("cell_") else ():
                for op, tree in vertex.items() if name.startswith("vertex_") else ():
                    if op == "proj":
                        continue
                    bn = tree if op == "maxpool_bn" else tree["bn"]
                    stats = sub["batch_stats"][cell][name][op]
                    stats = stats if op == "maxpool_bn" else stats["bn"]
                    g = np.abs(np.asarray(bn["scale"]))
                    want["gamma"] += g.mean()
                    want["trainability"] += (g / np.sqrt(np.asarray(stats["var"]) + 1e-5)).mean()
        for kind in want:
            np.testing.assert_allclose(got[kind][i], want[kind], rtol=1e-5, err_msg=f"{kind} {CELLS[i]}")
    assert float(got["gamma"][2]) == 0.0  # input -> output: no op at all


def test_bad_inputs():
    with pytest.raises(ValueError, match="bn_mode"):
        M.build_network(bn_mode="other")
    net = _net("fair")
    with pytest.raises(ValueError, match="needs a cell `encoding`"):
        jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3))))
    with pytest.raises(nb101.SearchSpaceError):
        M.build_network(arch="0000:input|output")
