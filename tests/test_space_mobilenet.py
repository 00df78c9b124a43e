"""MobileNet space as data: published costs exactly, strings both ways, EA moves, skeletons."""
import numpy as np
import pytest

from fbnas_jax.spaces import base
from fbnas_jax.spaces.base import SearchSpaceError
from fbnas_jax.spaces.mobilenet import (
    OPS, PROXYLESSNAS_GPU, PROXYLESSNAS_MOBILE, SKIP, MobileNetSpace, Skeleton, get_skeleton, make_divisible,
)


@pytest.fixture(scope="module")
def space():
    return base.get("mobilenet")


def reference_count(skeleton: Skeleton, choices: list[str]) -> tuple[int, int]:
    """Layer-by-layer count written independently of the cost table (ProxylessNAS rules)."""
    sk = skeleton
    size = (sk.input_size - 1) // sk.stem_stride + 1
    params = 3 * sk.stem_channels * sk.stem_kernel ** 2 + 2 * sk.stem_channels
    flops = 3 * sk.stem_channels * sk.stem_kernel ** 2 * size * size
    c = sk.stem_channels
    if sk.first_channels:  # dw3x3 + BN, pw + BN
        params += c * 9 + 2 * c + c * sk.first_channels + 2 * sk.first_channels
        flops += (c * 9 + c * sk.first_channels) * size * size
        c = sk.first_channels
    i = 0
    for width, depth, stride in zip(sk.widths, sk.depths, sk.strides):
        for j in range(depth):
            s = stride if j == 0 else 1
            choice = choices[i]
            i += 1
            if choice == "skip":
                continue
            k, e = int(choice[1]), int(choice[3])
            se = choice.endswith("_se") or sk.se == "all"
            mid = c * e
            out = (size - 1) // s + 1
            params += c * mid + 2 * mid + mid * k * k + 2 * mid + mid * width + 2 * width
            flops += c * mid * size * size + mid * k * k * out * out + mid * width * out * out
            if se:
                r = make_divisible(mid * sk.se_ratio)
                params += 2 * mid * r + r + mid
                flops += 2 * mid * r
            size, c = out, width
    params += c * sk.mix_channels + 2 * sk.mix_channels + sk.mix_channels * sk.num_classes + sk.num_classes
    flops += c * sk.mix_channels * size * size + sk.mix_channels * sk.num_classes
    return params, flops


def test_proxylessnas_published_costs_exact():
    mobile = MobileNetSpace("proxylessnas-mobile")
    gpu = MobileNetSpace("proxylessnas-gpu")
    assert mobile.exact_cost(mobile.parse(PROXYLESSNAS_MOBILE)) == (4_080_512, 320_427_584)
    assert gpu.exact_cost(gpu.parse(PROXYLESSNAS_GPU)) == (7_119_848, 465_260_160)
    cost = gpu.cost(gpu.parse(PROXYLESSNAS_GPU))
    assert cost.params_m == pytest.approx(7.119848, abs=1e-9) and cost.flops_m == pytest.approx(465.26016, abs=1e-9)
    # the default space is the GPU skeleton; `skeleton=` in cost() switches
    assert base.get("mobilenet").cost(gpu.parse(PROXYLESSNAS_MOBILE), skeleton="proxylessnas-mobile").flops_m \
        == pytest.approx(320.427584, abs=1e-9)


@pytest.mark.parametrize("se", ["none", "all", "search"])
def test_costs_match_independent_count(se):
    rng = np.random.default_rng(1)
    for name in ("proxylessnas-mobile", "proxylessnas-gpu"):
        sk = get_skeleton(name).replace(se=se)
        sp = MobileNetSpace(sk)
        encs = sp.sample(rng, 20)
        params, flops = sp.costs(encs)
        for enc, p, f in zip(encs, params, flops):
            ref = reference_count(sk, [OPS[i] for i in enc])
            assert (round(p * 1e6), round(f * 1e6)) == ref
    small = get_skeleton("proxylessnas-gpu").for_small_images(32, 10).scaled(0.25)
    sp = MobileNetSpace(small)
    enc = sp.sample(rng, 1)[0]
    assert sp.exact_cost(enc) == reference_count(small, [OPS[i] for i in enc])


def test_strings_names_and_bnnas_integers(space):
    enc = space.parse(PROXYLESSNAS_GPU)
    assert enc.shape == (21,) and enc.dtype == np.int32
    assert space.to_string(enc) == PROXYLESSNAS_GPU
    ints = ",".join(str(-1 if i == SKIP else int(i)) for i in enc)
    np.testing.assert_array_equal(space.parse(ints), enc)  # BN-NAS integers, -1 = skip
    parts = PROXYLESSNAS_GPU.split(",")
    staged = " / ".join(" ".join(parts[i:i + 4]) for i in range(0, 21, 4))  # stages, spaces
    np.testing.assert_array_equal(space.parse(staged), enc)
    assert space.describe(enc)["bnnas_integers"] == [int(x) for x in ints.split(",")]
    rng = np.random.default_rng(0)
    for e in space.sample(rng, 50):
        np.testing.assert_array_equal(space.parse(space.to_string(e)), e)


@pytest.mark.parametrize("text,match", [
    ("skip," + "k5e3," * 19 + "k5e3", "layer 0: skip is not allowed"),
    ("k5e3,k3e3", "expected 21 layer choices"),
    ("k9e3," + "k3e3," * 20, "unknown MobileNet op"),
    ("0," * 20 + "13", "not one of"),
    ("0," * 20, "expected 21 layer choices"),
])
def test_bad_strings(space, text, match):
    with pytest.raises(SearchSpaceError, match=match):
        space.parse(text)


def test_skip_only_where_stride_one_and_equal_widths(space):
    ok = [spec.skip_ok for spec in space.layers]
    # first layer of each of the six stages (and the single last layer) cannot be skip
    assert [i for i, v in enumerate(ok) if not v] == [0, 4, 8, 12, 16, 20]
    assert space.legal[:, SKIP].tolist() == ok
    no_skip = MobileNetSpace(get_skeleton("proxylessnas-gpu").replace(allow_skip=False))
    with pytest.raises(SearchSpaceError, match="no skip op"):
        no_skip.parse(PROXYLESSNAS_GPU)
    assert not (no_skip.sample(np.random.default_rng(0), 200) == SKIP).any()
    with pytest.raises(SearchSpaceError, match="se: search"):
        space.parse("k3e3_se," + "k3e3," * 20)


def test_ea_moves_and_fair_groups(space):
    rng = np.random.default_rng(3)
    pop = space.sample(rng, 200)
    space.validate_batch(pop)
    assert set(np.unique(pop[:, 1])) == set(range(7)) and set(np.unique(pop[:, 0])) == set(range(6))
    parent = pop[0]
    np.testing.assert_array_equal(space.mutate(rng, parent, 0.0), parent)
    children = np.stack([space.mutate(rng, parent, 1.0) for _ in range(50)])
    space.validate_batch(children)
    assert (children != parent).mean() > 0.7
    child = space.crossover(rng, pop[1], pop[2])
    assert np.all((child == pop[1]) | (child == pop[2]))
    group = space.fair_group(rng)
    assert group.shape == (7, 21)
    space.validate_batch(group)
    for i, spec in enumerate(space.layers):
        counts = np.bincount(group[:, i], minlength=7)
        if spec.skip_ok:
            assert counts.tolist() == [1] * 7  # strict fairness where all 7 choices are legal
        else:
            assert counts[SKIP] == 0 and (counts[:6] >= 1).all()
    strict = MobileNetSpace(get_skeleton("proxylessnas-gpu").replace(allow_skip=False)).fair_group(rng)
    assert strict.shape == (6, 21) and all(sorted(col) == list(range(6)) for col in strict.T)


def test_skeleton_yaml_and_options(tmp_path, space):
    sk = get_skeleton("proxylessnas-mobile")
    import yaml

    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in sk.to_dict().items() if k != "name"}))
    configured = space.configure(skeleton=str(path))
    assert configured.skeleton.name == "mine" and configured.skeleton.widths == sk.widths
    assert configured.exact_cost(configured.parse(PROXYLESSNAS_MOBILE)) == (4_080_512, 320_427_584)
    assert space.configure() is space
    assert [o.name for o in space.options] == ["skeleton"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"stem_channels": 8, "widths": [8], "depths": [1, 2], "strides": [1],
                                   "first_channels": 0, "mix_channels": 16}))
    with pytest.raises(SearchSpaceError, match="one length"):
        space.configure(skeleton=str(bad))
    bad.write_text(yaml.safe_dump({"stem_channel": 8}))
    with pytest.raises(SearchSpaceError, match="unknown skeleton key"):
        space.configure(skeleton=str(bad))
    with pytest.raises(SearchSpaceError, match="unknown skeleton 'nope'"):
        space.configure(skeleton="nope")
    with pytest.raises(SearchSpaceError, match="unknown mobilenet option"):
        space.configure(setting="cifar")
    with pytest.raises(SearchSpaceError, match="unknown MobileNet cost setting"):
        space.cost(space.parse(PROXYLESSNAS_GPU), channels=3)


def test_small_image_skeleton_geometry():
    sk = get_skeleton("proxylessnas-gpu").for_small_images(32, 10)
    assert sk.stem_size == 32 and sk.final_size() == 4 and sk.num_classes == 10
    tiny = sk.scaled(0.25)
    assert tiny.widths == (8, 16, 32, 32, 64, 112) and tiny.num_layers == 21
    assert MobileNetSpace(tiny).cost(np.zeros(21, np.int32)).params_m < 0.5


def test_evolutionary_search_respects_flops_limit(space):
    from fbnas_jax.search.algorithms import evolutionary_search

    rng = np.random.default_rng(0)
    _, flops = space.costs(space.sample(rng, 500))
    limit = float(np.quantile(flops, 0.3))

    def bigger_is_better(enc):  # an objective that pulls towards the limit: costlier = better
        return space.costs(enc)[1]

    res = evolutionary_search(bigger_is_better, rng, population=20, generations=5, top_k=5, mutations=10,
                              crossovers=10, max_flops=limit, space=space)
    _, evaluated = space.costs(res.evaluated)
    assert res.n_evaluated >= 60 and (evaluated <= limit).all()
    assert res.flops_m <= limit and res.flops_m > float(np.quantile(flops, 0.2))
    assert res.history == sorted(res.history)
