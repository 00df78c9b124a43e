"""``fbnas mobilenet cost`` / ``fbnas darts cost`` (the generic ``fbnas <space> cost``): the published costs through the CLI, both
input notations, and one-line errors (exit 2) for bad architectures."""
import json

import pytest

from fbnas_jax import cli

MOBILE = "k5e3,k3e3,skip,skip,k7e3,k3e3,k5e3,k5e3,k7e6,k5e3,k5e3,k5e3,k5e6,k5e3,k5e3,k5e3,k7e6,k7e6,k7e3,k7e3,k7e6"
# ProxylessNAS-GPU in BN-NAS's integers (-1 = skip, 0..5 = k3e3, k3e6, k5e3, k5e6, k7e3, k7e6)
GPU_INTS = "2,-1,-1,-1,4,-1,-1,0,5,-1,-1,2,3,-1,0,2,5,5,5,3,5"


def _json(capsys, argv):
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("argv, params, flops", [
    (["mobilenet", "cost", MOBILE, "--skeleton", "proxylessnas-mobile"], 4_080_512, 320_427_584),
    (["mobilenet", "cost", GPU_INTS, "--skeleton", "proxylessnas-gpu"], 7_119_848, 465_260_160),
    (["darts", "cost", "DARTS_V2", "--setting", "cifar"], 3_349_342, 528_359_040),
    (["darts", "cost", "DARTS_V2", "--setting", "imagenet"], 4_718_752, 529_911_552),
])
def test_published_costs(capsys, argv, params, flops):
    out = _json(capsys, argv + ["--json"])
    assert out["params_m"] == round(params / 1e6, 6) and out["flops_m"] == round(flops / 1e6, 6)


def test_darts_notation_and_names_agree(capsys):
    from fbnas_jax.spaces.darts import GENOTYPES

    by_name = _json(capsys, ["darts", "cost", "DARTS_V1", "--setting", "imagenet", "--json"])
    by_text = _json(capsys, ["darts", "cost", GENOTYPES["DARTS_V1"], "--setting", "imagenet", "--json"])
    assert by_name == by_text


@pytest.mark.parametrize("argv, message", [
    (["mobilenet", "cost", "k5e3,k9e3"], "expected 21 layer choices"),
    (["mobilenet", "cost", "skip," + MOBILE.split(",", 1)[1], "--skeleton", "proxylessnas-mobile"],
     "layer 0: skip is not allowed"),
    (["mobilenet", "cost", MOBILE, "--skeleton", "no-such.yaml"], "no-such.yaml"),
    (["darts", "cost", "Genotype(normal=[('sep_conv_3x3', 0)])"], "missing reduce"),
])
def test_bad_architectures_one_line(capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


# two searchable layers (XLA:CPU compile time grows with depth)
TINY_SKELETON = {"stem_channels": 8, "first_channels": 0, "widths": [8, 16], "depths": [1, 1], "strides": [1, 2],
                 "mix_channels": 16, "stem_stride": 1, "input_size": 16, "num_classes": 10}
SMALL_RUN = ["data.source=synthetic", "data.subset=64", "train.batch_size=32", "train.max_steps=2", "train.warmup_epochs=0.5",
             "train.epochs=1", "train.log_every=1"]


def _train_score_search(tmp_path, capsys, config, overrides):
    """``fbnas train-supernet`` -> ``fbnas score`` (the five supernet indicators) -> ``fbnas search``
    (the BN-NAS EA, smaller) under a FLOPs limit."""
    import csv

    import numpy as np

    work = tmp_path / "run"
    assert cli.main(["train-supernet", "--config", config, "--workdir", str(work), "--no-progress",
                     "--set", *SMALL_RUN, *overrides]) == 0
    capsys.readouterr()
    out = tmp_path / "scores.csv"
    assert cli.main(["score", "--checkpoint", str(work), "--archs", "6", "--indicators",
                     "gamma,trainability,expressivity,uncertainty,cpi", "--out", str(out), "--eval-batch-size", "8",
                     "--mc-samples", "2", "--mc-batch-size", "8", "--no-progress"]) == 0
    lines = out.read_text().splitlines()
    header = lines[0].split(",")
    assert header[0] == "arch" and {"gamma", "trainability", "expressivity", "uncertainty", "cpi"} <= set(header)
    rows = list(csv.DictReader(lines))
    assert len(rows) == 6 and all(np.isfinite(float(r[h])) for r in rows for h in header[1:])
    capsys.readouterr()
    return work


def test_fbnas_trains_scores_and_searches_mobilenet_under_flops_limit(tmp_path, capsys):
    import numpy as np
    import yaml

    from fbnas_jax.spaces.mobilenet import MobileNetSpace

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_SKELETON))
    work = _train_score_search(tmp_path, capsys, "configs/mobilenet_cifar10_cpu.yaml",
                               [f"model.skeleton={tmp_path / 'tiny.yaml'}", "model.width_mult=1.0"])
    space = MobileNetSpace(str(tmp_path / "tiny.yaml"))
    _, flops = space.costs(space.sample(np.random.default_rng(0), 200))
    limit = float(np.quantile(flops, 0.4))
    # trainability (|gamma| / sigma) reads only BN parameters: the EA's 18 evaluations cost nothing
    res = _json(capsys, ["search", "--checkpoint", str(work), "--indicator", "trainability", "--max-flops", str(limit),
                         "--population", "6", "--generations", "2", "--top-k", "2", "--mutations", "3",
                         "--crossovers", "3", "--json", "--no-progress"])
    assert res["flops_m"] <= limit and space.cost(space.parse(res["arch"])).flops_m == pytest.approx(res["flops_m"])
    assert res["n_evaluated"] >= 6

