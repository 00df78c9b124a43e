"""MobileNet and DARTS through the whole pipeline at tiny size: BN-only supernet training
(SPOS, FairNAS), every supernet indicator, the EA under a FLOPs limit, and the ImageNet
input path on a fake TFDS ``imagenet2012`` written in the test."""
import importlib
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml
from flax import traverse_util

from fbnas_jax.config import load_config
from fbnas_jax.data import make_synthetic

# two searchable layers: 8 -> 8 (skip legal), 8 -> 16 stride 2 (XLA:CPU compile time grows with depth)
TINY_SKELETON = {"stem_channels": 8, "first_channels": 0, "widths": [8, 16], "depths": [1, 1], "strides": [1, 2],
                 "mix_channels": 16, "stem_stride": 1, "input_size": 16, "num_classes": 10}


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("skeleton") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SKELETON))
    return path


def test_mobilenet_fairnas_supernet_indicators_and_search(tiny_yaml):
    from fbnas_jax import scoring
    from fbnas_jax.search.algorithms import evolutionary_search
    from fbnas_jax.spaces import of_network
    from fbnas_jax.training.loop import train

    ds = make_synthetic(num_train=96, num_test=16, image_size=16, seed=0)
    cfg = load_config(None, ["model.space=mobilenet", f"model.skeleton={tiny_yaml}", "train.batch_size=32",
                             "train.epochs=1", "train.max_steps=2", "train.log_every=1", "train.sampler=fairnas",
                             "train.learning_rate=0.5"])
    res = train(cfg, None, dataset=ds, progress=False)
    space = of_network(res.net)
    assert space.encoding_shape == (2,) and res.net.skeleton.name == "tiny"
    assert len(res.history) == 2 and np.isfinite(res.history[-1]["loss"])
    # FairNAS trains 7 architectures per step (6 MBConvs + skip): every candidate BN moved
    params = traverse_util.flatten_dict(jax.device_get(res.state.params))
    moved = {p[1] for p, v in params.items() if p[0].startswith("layer_") and p[-1] == "scale" and
             not np.allclose(v, 1.0)}
    assert {"k3e3", "k5e6", "k7e6", "skip_bn"} <= moved

    class Run:  # what make_context reads from a loaded run
        net, variables, input_shape, num_classes, config = res.net, res.state.variables, (16, 16, 3), 10, cfg

    ctx = scoring.make_context(Run, ds, eval_batch_size=16, mc_samples=2, mc_batch_size=16)
    encs = space.sample(np.random.default_rng(1), 5)
    out = scoring.score_architectures(ctx, ["gamma", "trainability", "cpi"], encs, progress=False)
    for name in ("gamma", "trainability", "expressivity", "uncertainty", "cpi"):
        assert np.isfinite(out.scores[name]).all(), name
    assert np.ptp(out.scores["trainability"]) > 0

    scorer = scoring.Scorer(ctx)
    _, flops = space.costs(space.sample(np.random.default_rng(2), 200))
    limit = float(np.median(flops))
    found = evolutionary_search(lambda e: scorer("trainability", e), np.random.default_rng(3), population=8,
                                generations=3, top_k=3, mutations=4, crossovers=4, max_flops=limit, space=space)
    assert (space.costs(found.evaluated)[1] <= limit).all() and found.flops_m <= limit


def test_darts_bn_only_training_and_bn_tables():
    """BN-only training of a stand-alone DARTS_V2 net (the supernet's training step is the same
    generic step; its forward is checked against stand-alone nets in test_models_mobilenet_darts,
    and compiling its gradient takes minutes on CPU)."""
    from fbnas_jax.data import train_batches
    from fbnas_jax.models import darts as D
    from fbnas_jax.training import steps

    net = D.make_network(channels=4, layers=3, num_classes=10, bn_mode="fair", arch="DARTS_V2")
    ds = make_synthetic(num_train=64, num_test=16, image_size=8, seed=0)
    tx = steps.make_optimizer(learning_rate=0.5, total_steps=2)
    state, labels = steps.init_state(net, 0, (8, 8, 3), tx)
    before = traverse_util.flatten_dict(jax.device_get(state.params))
    step = steps.make_train_step(net, tx, labels, sampler="fixed", seed=0)
    for batch in train_batches(ds, 32, seed=0, epoch=0):
        state, metrics = step(state, batch)
        assert bool(metrics["finite"])
    after = traverse_util.flatten_dict(jax.device_get(state.params))
    frozen = [p for p in before if p[-1] == "kernel"]
    assert frozen and all(np.array_equal(before[p], after[p]) for p in frozen)  # BN-only: bit-identical
    assert any(not np.array_equal(before[p], after[p]) for p in before if p[-1] == "scale")
    # the supernet's BN tables read the trained stand-alone BNs at the same paths
    supernet = D.make_network(channels=4, layers=3, num_classes=10, bn_mode="fair")
    sup = D.init_variables(supernet, 0, (8, 8, 3))
    trained = {"params": jax.device_get(state.params), "batch_stats": jax.device_get(state.batch_stats)}
    merged = D.merge_subnet_variables(sup, trained, layers=3)  # the supernet stacks its edges
    params, stats = merged["params"], merged["batch_stats"]
    space = D.DartsSpace()
    encs = np.stack([space.parse("DARTS_V2"), space.parse("DARTS_V1")])
    gamma = np.asarray(D.bn_scores(params, stats, encs, net=supernet, kind="gamma"))
    trained = sum(float(np.mean(np.abs(v))) for p, v in after.items()
                  if p[-1] == "scale" and p[-2] in ("bn", "skip_connect_bn", "max_pool_3x3_bn", "avg_pool_3x3_bn")
                  and p[0].startswith("cell_") and p[1].startswith("edge_") and len(p) <= 5)
    assert gamma[0] == pytest.approx(trained, rel=1e-5)  # DARTS_V2's gamma = its ops' last-BN |gamma|
    assert gamma[1] != gamma[0]


# --------------------------------------------------------------------------- ImageNet input path

def _fake_imagenet(root: Path) -> Path:
    tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets not installed")
    pytest.importorskip("tensorflow", reason="tensorflow not installed")
    try:  # TFDS's writer imports importlib_resources (see tests/test_data.py)
        importlib.import_module("importlib_resources")
    except ImportError:
        importlib.import_module("importlib.resources.abc")
        sys.modules["importlib_resources"] = importlib.resources
    reference = tfds.builder("imagenet2012", data_dir=str(root))
    rng = np.random.default_rng(0)

    def example(i, split):  # JPEGs of varied sizes, labels spread over the 1,000 classes
        h, w = rng.integers(36, 72, 2)
        return {"file_name": f"{split}_{i}.JPEG", "image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                "label": (i * 37) % 1000}

    tfds.dataset_builders.store_as_tfds_dataset(
        name="imagenet2012", version=str(reference.version), config=None, features=reference.info.features,
        split_datasets={s: [(i, example(i, s)) for i in range(n)] for s, n in (("train", 32), ("validation", 8))},
        data_dir=str(root))
    return root


def test_imagenet_tfds_path_trains_and_evaluates(tmp_path, tiny_yaml):
    from fbnas_jax import data as fdata
    from fbnas_jax.scores_io import load_scoring_data
    from fbnas_jax.training import steps
    from fbnas_jax.training.loop import load_data, train

    root = _fake_imagenet(tmp_path / "tfds")
    skeleton = tmp_path / "tiny_imagenet.yaml"  # ImageNet-style stem stride 2: 32 -> 16
    skeleton.write_text(yaml.safe_dump(dict(TINY_SKELETON, stem_stride=2, input_size=32, num_classes=1000)))
    arch = "skip,k5e6"
    cfg = load_config(None, ["model.space=mobilenet", f"model.skeleton={skeleton}", f"model.arch={arch}",
                             "data.source=imagenet2012", f"data.data_dir={root}", "data.image_size=32",
                             "train.sampler=fixed", "train.params=all", "train.batch_size=8", "train.epochs=1",
                             "train.log_every=1", "train.learning_rate=0.05"])
    ds = load_data(cfg)
    assert (ds.num_train, ds.num_test, ds.num_classes, ds.image_shape) == (32, 8, 1000, (32, 32, 3))
    first = next(fdata.train_batches(ds, 8, seed=0, epoch=0))
    assert first["image"].shape == (8, 32, 32, 3) and first["image"].dtype == np.float32
    again = next(fdata.train_batches(ds, 8, seed=0, epoch=0))
    np.testing.assert_array_equal(first["image"], again["image"])  # augmentation is seeded
    assert not np.array_equal(first["image"], next(fdata.train_batches(ds, 8, seed=0, epoch=1))["image"])
    res = train(cfg, None, dataset=ds, progress=False)
    assert len(res.history) == 4 and all(np.isfinite(h["loss"]) for h in res.history)
    acc = steps.evaluate(res.net, res.state.variables, fdata.eval_batches(ds, 5), None)
    assert acc["count"] == 8 and 0.0 <= acc["accuracy"] <= 1.0

    class Run:
        config, input_shape = cfg, (32, 32, 3)

    held = load_scoring_data(Run, None)  # the indicators' in-memory sample of a streamed dataset
    assert held.train_images.shape[1:] == (32, 32, 3) and held.train_images.dtype == np.uint8
