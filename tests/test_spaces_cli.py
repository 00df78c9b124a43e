"""``fbnas mobilenet cost`` / ``fbnas darts cost``: the published costs through the CLI, both
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
])
def test_published_costs(capsys, argv, params, flops):
    out = _json(capsys, argv + ["--json"])
    assert (out["params"], out["flops"]) == (params, flops)
    assert out["params_m"] == round(params / 1e6, 6) and out["flops_m"] == round(flops / 1e6, 6)


def test_darts_notation_and_names_agree(capsys):
    from fbnas_jax.spaces.darts import GENOTYPES

    by_name = _json(capsys, ["darts", "cost", "DARTS_V1", "--setting", "imagenet", "--json"])
    by_text = _json(capsys, ["darts", "cost", GENOTYPES["DARTS_V1"], "--setting", "imagenet", "--json"])
    assert by_name == by_text and by_name["layers"] == 14 and by_name["input_size"] == 224
    smaller = _json(capsys, ["darts", "cost", "DARTS_V1", "--channels", "16", "--json"])
    assert smaller["params"] < _json(capsys, ["darts", "cost", "DARTS_V1", "--json"])["params"]


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
