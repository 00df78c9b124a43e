"""The scoring engine across devices, the context checks and `fbnas score` end to end."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

SHARDED_SCRIPT = textwrap.dedent("""
    import os, sys, json
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_indicators_supernet import _perturbed_supernet
    from fbnas_jax.indicators.base import ScoringContext
    from fbnas_jax.scoring import score_architectures
    from fbnas_jax.spaces import nb201
    assert len(jax.local_devices()) == 4, jax.local_devices()
    net, v = _perturbed_supernet("fair")
    rng = np.random.default_rng(0)
    ctx = ScoringContext(net=net, variables=v, images=rng.normal(size=(10, 16, 16, 3)).astype(np.float32),
                         train_images=rng.normal(size=(2, 6, 16, 16, 3)).astype(np.float32))
    encs = np.concatenate([nb201.sample_encodings(rng, 9), np.zeros((1, 6), np.int32)])
    # gamma: a table; expressivity: kernels on 4 devices, log-det on the host; uncertainty: shard_map over 4
    names = ["gamma", "expressivity", "uncertainty"]
    one = score_architectures(ctx, names, encs, chunk_size=6, progress=False)
    many = score_architectures(ctx, names, encs, chunk_size=6, devices="all", progress=False)
    print(json.dumps({"devices": many.devices, "chunk": many.chunk_size,
                      "one": {k: v.tolist() for k, v in one.scores.items()},
                      "many": {k: v.tolist() for k, v in many.scores.items()}}))
""")


def test_sharded_equals_single_device(tmp_path):
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, str(script), str(ROOT / "tests")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out["devices"]) == 4 and out["chunk"] == 8  # 6 rounded up to a multiple of 4
    for name in ("gamma", "expressivity", "uncertainty"):
        a, b = np.array(out["one"][name]), np.array(out["many"][name])
        assert a.shape == (10,)
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9)
    assert out["one"]["expressivity"][-1] == -np.inf


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory):
    from fbnas_jax.config import load_config
    from fbnas_jax.data import make_synthetic
    from fbnas_jax.training.loop import train

    from conftest import TINY_OVERRIDES

    workdir = tmp_path_factory.mktemp("run")
    cfg = load_config(None, TINY_OVERRIDES + ["train.max_steps=2", "model.bn_mode=fair"])
    train(cfg, workdir, dataset=make_synthetic(num_train=256, num_test=64, image_size=16), progress=False,
          log=lambda m: None)
    return workdir


def test_score_cli_end_to_end(tiny_workdir, tmp_path, capsys):
    from fbnas_jax.cli import main
    from fbnas_jax.spaces import nb201

    out = tmp_path / "scores.csv"
    rc = main(["score", "--checkpoint", str(tiny_workdir), "--indicators", "gamma,cpi", "--out", str(out),
               "--archs", "6", "--chunk-size", "4", "--eval-batch-size", "8", "--mc-samples", "2",
               "--mc-batch-size", "8", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6
    assert list(rows[0]) == ["arch", "gamma", "cpi", "expressivity", "trainability", "uncertainty"]
    for r in rows:
        nb201.string_to_encoding(r["arch"])
        assert float(r["gamma"]) >= 0 and np.isfinite(float(r["trainability"]))
        assert float(r["uncertainty"]) <= 0
    cpis = np.array([float(r["cpi"]) for r in rows])
    assert np.all((cpis >= 1) & (cpis <= 6))
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["jax_version"] and side["num_archs"] == 6 and side["options"]["mc_samples"] == 2
    assert "gamma" in side["timings"]["indicators"] and side["config"]["model"]["bn_mode"] == "fair"

    # an archs file, and the same architectures score the same
    archs = tmp_path / "archs.txt"
    archs.write_text("\n".join(r["arch"] for r in rows[:2]) + "\n")
    out2 = tmp_path / "s2.csv"
    assert main(["score", "--checkpoint", str(tiny_workdir), "--indicators", "gamma", "--out", str(out2),
                 "--archs", str(archs), "--no-progress"]) == 0
    rows2 = list(csv.DictReader(out2.open()))
    assert [r["arch"] for r in rows2] == [r["arch"] for r in rows[:2]]
    assert [r["gamma"] for r in rows2] == [r["gamma"] for r in rows[:2]]


def test_score_cli_errors(tiny_workdir, tmp_path, capsys):
    from fbnas_jax.cli import main

    out = tmp_path / "x.csv"
    rc = main(["score", "--checkpoint", str(tiny_workdir), "--indicators", "gama", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown indicator 'gama'" in err and "gamma" in err
    rc = main(["score", "--checkpoint", str(tiny_workdir), "--indicators", "gamma", "--out", str(out),
               "--expect-bn-mode", "bnnas"])
    err = capsys.readouterr().err
    assert rc == 2 and "bn_mode='fair'" in err and "bnnas" in err
    rc = main(["score", "--checkpoint", str(tmp_path / "nope"), "--indicators", "gamma", "--out", str(out)])
    assert rc == 2 and "not a training workdir" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit) as e:
        main(["score", "--help"])
    assert e.value.code == 0 and "--indicators" in capsys.readouterr().out


def test_data_shape_mismatch(tiny_workdir):
    from fbnas_jax.data import make_synthetic
    from fbnas_jax.scoring import DataMismatchError, check_run, make_context
    from fbnas_jax.training.loop import load_run

    run = load_run(tiny_workdir)
    check_run(run, expect_bn_mode="fair", expect_space="nb201")
    with pytest.raises(DataMismatchError, match=r"\(32, 32, 3\).*\(16, 16, 3\)"):
        make_context(run, make_synthetic(num_train=64, num_test=16, image_size=32))
    ctx = make_context(run, make_synthetic(num_train=256, num_test=64, image_size=16), eval_batch_size=16,
                       mc_samples=3, mc_batch_size=8, seed=1)
    assert ctx.images.shape == (16, 16, 16, 3) and ctx.train_images.shape == (3, 8, 16, 16, 3)
    assert ctx.options["mc_samples"] == 3


def test_search_cli_on_checkpoint(tiny_workdir, capsys):
    """`fbnas search --checkpoint`: a per-arch indicator and CPI (reference-rank objective)."""
    from fbnas_jax.cli import main
    from fbnas_jax.spaces import nb201

    small = ["--generations", "2", "--population", "6", "--top-k", "2", "--mutations", "2",
             "--crossovers", "2", "--chunk-size", "4", "--seed", "1", "--json"]
    for indicator in ("gamma", "cpi"):
        extra = ["--reference", "8"] if indicator == "cpi" else []
        rc = main(["search", "--checkpoint", str(tiny_workdir), "--indicator", indicator, "--algo", "ea"]
                  + small + extra)
        out = capsys.readouterr()
        assert rc == 0, out.err
        res = json.loads(out.out)
        nb201.string_to_encoding(res["arch"])
        assert res["n_evaluated"] == 12 and np.isfinite(res["score"])
        if indicator == "cpi":
            assert 0.0 <= res["score"] <= 1.0
