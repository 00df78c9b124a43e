"""FBN-NAS on NAS-Bench-101 through the generic layers: train (SPOS, FairNAS), score, search,
correlate -- from the shipped config and the command line, with a tiny supernet (stem 4, synthetic data)."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from fbnas_jax.spaces import nb101

ROOT = Path(__file__).resolve().parents[1]
S = nb101.SPACE
CSV = os.environ.get("FBNAS_NB101_CSV", str(ROOT.parent / "shared/data/nasbench101/nb101_subset.csv"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """``fbnas train-supernet`` from the shipped CPU config, shrunk: one FairNAS step of a stem-4
    fair supernet on the embedded synthetic data (SPOS shares the generic step, tested on NB201)."""
    from fbnas_jax.cli import main

    path = tmp_path_factory.mktemp("nb101run") / "w"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FBNAS_CIFAR10_ARCHIVE", "replaced-by-data.source")
        rc = main(["train-supernet", "--config", str(ROOT / "configs" / "nb101_fbn_cpu.yaml"), "--workdir", str(path),
                   "--no-progress", "--set", "model.channels=4", "data.source=synthetic", "data.subset=256",
                   "data.augment=false", "train.batch_size=32", "train.max_steps=1", "train.sampler=fairnas"])
    assert rc == 0
    return path


def test_fairnas_training_trains_every_vertex_op_of_the_group(workdir):
    from fbnas_jax.training.loop import load_run
    from fbnas_jax.training.samplers import make_sampler

    run = load_run(workdir)
    group = make_sampler("nb101", "fairnas", run.config.train.seed)(0)  # the group step 0 trained
    assert group.shape == (3, 26) and (group[:, :21] == group[0, :21]).all()
    live = nb101.live_vertices(nb101.matrix_of(group[0]))
    stats = run.variables["batch_stats"]["cell_0"]
    for t in range(1, 6):
        for name in ("conv3x3", "conv1x1", "maxpool_bn"):
            s = stats[f"vertex_{t}"][name]
            s = s if name == "maxpool_bn" else s["bn"]
            assert (not np.array_equal(s["mean"], 0)) == bool(live[t]), (t, name)  # each op once per vertex
    # resumable: the sampler is a function of (seed, step)
    np.testing.assert_array_equal(make_sampler("nb101", "fairnas", 0)(5), make_sampler("nb101", "fairnas", 0)(5))
    assert not np.array_equal(make_sampler("nb101", "fairnas", 0)(5), make_sampler("nb101", "fairnas", 0)(6))


def test_score_search_and_correlate_from_the_command_line(workdir, tmp_path, capsys):
    from fbnas_jax.cli import main

    archs = tmp_path / "archs.txt"
    cells = [S.to_string(e) for e in S.sample(np.random.default_rng(3), 6)]
    archs.write_text("\n".join(cells) + "\n")
    out = tmp_path / "scores.csv"
    rc = main(["score", "--checkpoint", str(workdir), "--indicators", "gamma,trainability,params,flops",
               "--out", str(out), "--archs", str(archs), "--no-progress", "--expect-space", "nb101"])
    assert rc == 0, capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert [r["arch"] for r in rows] == cells
    c = S.cost(S.parse(cells[0]), channels=4, cells_per_stage=1, input_size=32)
    assert float(rows[0]["params"]) == pytest.approx(c.params_m, rel=1e-6)
    assert float(rows[0]["gamma"]) > 0
    assert main(["score", "--checkpoint", str(workdir), "--out", str(out), "--archs", "all"]) == 2
    assert "not enumerated" in capsys.readouterr().err

    # search a scores CSV: the space is not enumerated, so its cells are the candidates
    capsys.readouterr()
    assert main(["search", "--scores", str(out), "--space", "nb101", "--indicator", "gamma", "--json",
                 "--population", "4", "--generations", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    best = max(rows, key=lambda r: float(r["gamma"]))
    assert res["arch"] == best["arch"] and res["n_evaluated"] == 6
    # search from the checkpoint, over a candidate CSV, under a params limit (the benchmark's network)
    limit = sorted(S.cost(S.parse(a)).params_m for a in cells)[3]
    assert main(["search", "--checkpoint", str(workdir), "--indicator", "gamma", "--candidates", str(out),
                 "--algo", "random", "--samples", "6", "--json", "--max-params", str(limit)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["arch"] in cells and res["params_m"] <= limit + 1e-9

    if not Path(CSV).is_file():
        pytest.skip("NB101 subset CSV absent: correlation against it not tested")
    truth_rows = list(csv.DictReader(open(CSV)))[:5]
    scores = tmp_path / "truth_scores.csv"
    with scores.open("w", newline="") as f:  # scores keyed by the benchmark's cells
        w = csv.writer(f)
        w.writerow(["arch", "proxy"])
        for r in truth_rows:
            w.writerow([f"{r['adjacency']}:{r['ops']}", float(r["val_acc_ep108"]) * 2])
    assert main(["bench", "correlation", "--scores", str(scores), "--truth", CSV, "--space", "nb101",
                 "--columns", "val_acc_ep108", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["n_common"] == 5 and table["rows"][0]["kendall_tau"] == pytest.approx(1.0)


def test_nb101_configs_load_and_build():
    from fbnas_jax.config import load_config
    from fbnas_jax.training.loop import network_from_config

    os.environ.setdefault("FBNAS_CIFAR10_ARCHIVE", "unused.tar.gz")
    for name in ("nb101_fbn_cpu", "nb101_bnnas_cpu", "nb101_fbn", "nb101_bnnas"):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        net = network_from_config(cfg, 10)
        assert net.space == "nb101" and net.bn_mode == cfg.model.bn_mode
    gpu = load_config(ROOT / "configs" / "nb101_fbn.yaml").model
    assert (gpu.channels, gpu.cells_per_stage) == (128, 3)  # the benchmark's width
