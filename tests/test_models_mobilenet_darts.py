"""MobileNet and DARTS networks: parameter counts equal the cost models, a subnet of a fresh
supernet is the stand-alone net with the same weights, BN partition and BN tables."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from fbnas_jax.models import darts as D
from fbnas_jax.models import mobilenet as M
from fbnas_jax.models.layers import ForwardMode
from fbnas_jax.spaces import mobilenet as SM
from fbnas_jax.spaces.darts import GENOTYPES, DartsSpace
from fbnas_jax.training import partition

TRAIN, EVAL = ForwardMode(train=True), ForwardMode(train=False)


def n_params(net, size, enc=None):
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), enc))
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(shapes["params"])))


@pytest.mark.parametrize("skeleton,arch,expected", [
    ("proxylessnas-mobile", SM.PROXYLESSNAS_MOBILE, 4_080_512),
    ("proxylessnas-gpu", SM.PROXYLESSNAS_GPU, 7_119_848),
])
def test_mobilenet_params_equal_cost_model(skeleton, arch, expected):
    net = M.make_network(skeleton, num_classes=1000, arch=arch, bn_mode="bnnas")
    assert n_params(net, 224) == expected
    se = SM.get_skeleton(skeleton).replace(se="all")
    space = SM.MobileNetSpace(se)
    net = M.make_network(se, arch=arch, bn_mode="bnnas")
    assert n_params(net, 224) == space.exact_cost(space.parse(arch))[0]


@pytest.mark.parametrize("setting,size,expected", [("cifar", 32, 3_349_342), ("imagenet", 224, 4_718_752)])
def test_darts_params_equal_cost_model(setting, size, expected):
    net = D.make_network(setting=setting, arch="DARTS_V2", bn_mode="bnnas")
    assert n_params(net, size) == expected
    # fair BN adds 2 C per pool / identity edge: 5 pool edges in each of 2 reduction cells, 2 skips per normal cell
    fair = D.make_network(setting=setting, arch="DARTS_V2", bn_mode="fair")
    assert n_params(fair, size) > expected


def _copy_subtree(super_params, sub_params):
    flat_super = traverse_util.flatten_dict(super_params)
    flat_sub = traverse_util.flatten_dict(sub_params)
    missing = [p for p in flat_sub if p not in flat_super]
    assert not missing, f"stand-alone parameters absent from the supernet: {missing[:3]}"
    return traverse_util.unflatten_dict({p: flat_super[p] for p in flat_sub})


def _check_subnet_equals_standalone(supernet, make_standalone, encodings, images, init, modes=(True, False),
                                    vmapped=False, cut=None):
    """The supernet's forward for one encoding (single path: ``nn.switch``) and, with
    ``vmapped``, for all encodings at once (``jax.vmap``: the switch becomes a select of every
    op) equals the stand-alone net's on the same weights."""
    variables = init(supernet)
    # perturb BN parameters so an op mix-up cannot go unnoticed
    flat = traverse_util.flatten_dict(variables["params"])
    rng = np.random.default_rng(0)
    flat = {p: (v + 0.3 * rng.standard_normal(v.shape).astype(np.float32)) if p[-1] in ("scale", "bias") else v
            for p, v in flat.items()}
    variables = {"params": traverse_util.unflatten_dict(flat), "batch_stats": variables["batch_stats"]}
    apply_super = jax.jit(lambda v, x, e, train: supernet.apply(v, x, e, mode=TRAIN if train else EVAL),
                          static_argnums=3)
    batched = None
    if vmapped:
        batched = jax.jit(jax.vmap(lambda e: supernet.apply(variables, images, e, mode=EVAL)))(jnp.asarray(encodings))
    for i, enc in enumerate(encodings):
        alone = make_standalone(enc)
        alone_vars = init(alone)
        if cut is None:  # the stand-alone net's variables are a sub-tree of the supernet's
            params = _copy_subtree(variables["params"], alone_vars["params"])
            stats = _copy_subtree(variables["batch_stats"], alone_vars["batch_stats"])
        else:
            cut_vars = cut(variables, alone_vars)
            params, stats = cut_vars["params"], cut_vars["batch_stats"]
        for train in modes:
            want = apply_super(variables, images, jnp.asarray(enc), train)
            got = alone.apply({"params": params, "batch_stats": stats}, images, None, mode=TRAIN if train else EVAL)
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-4, atol=2e-4)
            if batched is not None and not train:
                np.testing.assert_allclose(np.asarray(got), np.asarray(batched[i]), rtol=2e-4, atol=2e-4)


def tiny_skeleton(**changes):
    """4 searchable layers at 16x16: 8 -> 8 (skip legal), 8 -> 16 stride 2, twice 16 -> 16 (skip
    legal; the supernet scans over these two: ``layers_2_3``)."""
    sk = SM.Skeleton("tiny", stem_channels=8, first_channels=0, widths=(8, 16), depths=(1, 3), strides=(1, 2),
                     mix_channels=16, stem_stride=1, input_size=16, num_classes=10)
    return sk.replace(**changes)


def test_mobilenet_subnet_of_fresh_supernet_equals_standalone():
    sk = tiny_skeleton(se="search")
    space = SM.MobileNetSpace(sk)
    assert [s.skip_ok for s in space.layers] == [True, False, True, True]
    assert M.layer_runs(space) == [(0, 0), (1, 1), (2, 3)] and M.layer_position(space, 3) == ("layers_2_3", 1)
    supernet = M.make_network(sk, bn_mode="fair")
    # skip, k5e6, k7e6_se, k3e6 / k7e3, k3e3_se, skip, k5e3_se
    encs = np.asarray([[SM.SKIP, 3, 12, 1], [4, 7, SM.SKIP, 8]], np.int32)
    space.validate_batch(encs)
    images = jax.random.normal(jax.random.key(2), (6, 16, 16, 3))
    _check_subnet_equals_standalone(
        supernet, lambda e: M.make_network(sk, bn_mode="fair", arch=e), encs, images,
        lambda net: M.init_variables(net, 3, (16, 16, 3)), vmapped=True,
        cut=lambda sup, alone: M.subnet_variables(sup, alone, net=supernet))


def test_darts_subnet_of_fresh_supernet_equals_standalone():
    supernet = D.make_network(channels=4, layers=3, num_classes=10, bn_mode="fair")
    space = DartsSpace()
    encs = [space.parse("DARTS_V2"), space.sample(np.random.default_rng(4), 1)[0]]
    images = jax.random.normal(jax.random.key(5), (4, 8, 8, 3))
    _check_subnet_equals_standalone(  # the supernet stacks its edges: cut the subnet's with subnet_variables
        supernet, lambda e: D.make_network(channels=4, layers=3, num_classes=10, bn_mode="fair", arch=e), encs,
        images, lambda net: D.init_variables(net, 6, (8, 8, 3)), vmapped=True,
        cut=lambda sup, alone: D.subnet_variables(sup, alone, layers=3))


def test_darts_supernet_layout_mapping():
    """subnet_variables / merge_subnet_variables: edge (i, j) of a cell is row edge_position(i, j)
    of its group's stack; the round trip writes exactly the stand-alone sub-tree."""
    supernet = D.make_network(channels=4, layers=3, bn_mode="fair")
    alone = D.make_network(channels=4, layers=3, bn_mode="fair", arch="DARTS_V2")
    sup = D.init_variables(supernet, 0, (8, 8, 3))
    sub = D.init_variables(alone, 1, (8, 8, 3))
    assert D.edge_position(False, 3, 4) == ("edges", 13) and D.edge_position(True, 3, 4) == ("edges", 5)
    assert D.edge_position(True, 2, 1) == ("strided_edges", 5)
    with pytest.raises(ValueError, match="no edge"):
        D.edge_position(False, 0, 2)
    merged = D.merge_subnet_variables(sup, sub, layers=3)
    back = D.subnet_variables(merged, sub, layers=3)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(sub)):
        np.testing.assert_array_equal(a, b)
    # cell 1 is a reduction cell; DARTS_V2's reduce node 0 takes max_pool_3x3 from state 0 (strided row 0)
    got = merged["params"]["cell_1"]["strided_edges"]["max_pool_3x3_bn"]["scale"]
    np.testing.assert_array_equal(got[0], sub["params"]["cell_1"]["edge_0_0"]["max_pool_3x3_bn"]["scale"])
    np.testing.assert_array_equal(got[2], sup["params"]["cell_1"]["strided_edges"]["max_pool_3x3_bn"]["scale"][2])
    assert merged["params"]["cell_0"]["edges"]["sep_conv_3x3"]["bn"]["scale"].shape == (14, 4)


def test_bn_partition_and_tables():
    sk = tiny_skeleton(se="all")
    for bn_mode in ("fair", "bnnas"):
        net = M.make_network(sk, bn_mode=bn_mode)
        variables = M.init_variables(net, 0, (16, 16, 3))  # no compilation (init_from_shapes)
        flat = traverse_util.flatten_dict(variables["params"])
        labels = traverse_util.flatten_dict(partition.param_labels(variables["params"]))
        trainable = {p for p, l in labels.items() if l == partition.TRAINABLE}
        # exactly the BatchNorm scale/bias leaves are trainable; every conv / SE / classifier weight frozen
        assert trainable == {p for p in flat if p[-1] in ("scale", "bias") and p[-2].endswith("bn")}
        assert any("skip_bn" in p for p in flat) == (bn_mode == "fair")
        # a table entry equals mean |gamma| of that op's last BN
        rng = np.random.default_rng(0)
        params = jax.tree.map(lambda v: v * (1 + rng.random(v.shape).astype(np.float32)), variables["params"])
        space = SM.MobileNetSpace(sk)
        encs = space.sample(rng, 5)
        got = np.asarray(M.bn_scores(params, variables["batch_stats"], encs, net=net, kind="gamma"))
        for enc, score in zip(encs, got):
            want = 0.0
            for layer, op in enumerate(enc):
                path = M.last_bn_path(int(op), bn_mode)
                if path is None:
                    continue
                name, pos = M.layer_position(space, layer)  # layers 2, 3 stacked in layers_2_3
                node = params[name]
                for key in path:
                    node = node[key]
                want += float(np.mean(np.abs(node["scale"] if pos is None else node["scale"][pos])))
            assert score == pytest.approx(want, rel=1e-5)
    dnet = D.make_network(channels=4, layers=3, bn_mode="bnnas")
    dvars = D.init_variables(dnet, 0, (8, 8, 3))
    enc = DartsSpace().parse(GENOTYPES["DARTS_V2"])
    # bnnas, fresh (gamma = 1): the normal cell's 5 sep + 1 dil convs carry a BN, its two stride-1 skips
    # do not; DARTS_V2's reduction cell is pools and stride-1 skips (no BN). 1 normal, 2 reduction cells.
    reduce_bns = sum(1 for op, src in enc[1] if _has_bn(op, src < 2))
    assert float(D.bn_scores(dvars["params"], dvars["batch_stats"], enc[None], net=dnet)[0]) == \
        pytest.approx(6 * 1 + reduce_bns * 2)


def _has_bn(op, from_input):
    from fbnas_jax.spaces.darts import OPS

    name = OPS[op]
    return name.startswith(("sep", "dil")) or (name == "skip_connect" and from_input)


def test_darts_supernet_naswot_kernel_equals_standalone():
    """The ReLUs inside the scanned edges sow one kernel per edge (stacked); relu_kernel_total
    sums them, masked to the chosen ops: the supernet's NASWOT kernel = the stand-alone net's."""
    from fbnas_jax.indicators._proxies import relu_kernel

    supernet = D.make_network(channels=4, layers=3, bn_mode="fair")
    enc = DartsSpace().parse("DARTS_V1")
    alone = D.make_network(channels=4, layers=3, bn_mode="fair", arch=enc)
    sup = D.init_variables(supernet, 2, (8, 8, 3))
    images = jax.random.normal(jax.random.key(7), (6, 8, 8, 3))
    cut = D.subnet_variables(sup, D.init_variables(alone, 0, (8, 8, 3)), layers=3)
    want = jax.jit(lambda v, x: relu_kernel(alone, v, x, None))(cut, images)
    got = jax.jit(lambda v, x, e: relu_kernel(supernet, v, x, e))(sup, images, jnp.asarray(enc))
    assert got.shape == (6, 6) and float(got[0, 0]) > 0
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
