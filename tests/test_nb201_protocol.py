"""The NB201 protocol end to end at smoke size: the device script, the benchmark, its outputs.

Runs ``benchmarks/device/nb201_gpu.sh`` exactly as the device machine would (``PYTHONPATH=.``,
data from a ``.data``-style folder, results packed into a tarball under ``$OUT``) with
``FBNAS_PRESET=smoke``, then checks what came back: every column present, 15,625 rows with
finite values for the parameter-only columns, the pool columns on their pool, finite Kendall
taus, Tables 1-2, per-epoch training curves, and no tensorflow / neural-tangents import.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from nb201_protocol import presets  # noqa: E402
from nb201_protocol.columns import ColumnError, parse, parse_all  # noqa: E402

ARCHIVE = os.environ.get("FBNAS_CIFAR10_ARCHIVE")
TRUTH = os.environ.get("FBNAS_NB201_CSV")
needs_data = pytest.mark.skipif(not (ARCHIVE and Path(ARCHIVE).is_file() and TRUTH and Path(TRUTH).is_file()),
                                reason="needs FBNAS_CIFAR10_ARCHIVE and FBNAS_NB201_CSV (../shared/data)")
PARAM_ONLY = ["gamma@bnnas", "gamma@fair", "gamma@fairnas", "trainability@fair", "trainability@fairnas",
              "params", "flops"]


def test_column_names_follow_indicator_at_network():
    assert parse("gamma@bnnas").context_key == "bnnas"
    assert parse("naswot").context_key == "fresh:bnnas"  # the standard NB201 network
    assert parse("naswot@fair").context_key == "fresh:fair"  # the named fair-network extra
    assert parse("params").context_key is None
    assert [c.name for c in parse_all(["cpi@fair"])] == [
        "expressivity@fair", "trainability@fair", "uncertainty@fair", "cpi@fair"]
    for bad, match in [("gamma", "trained supernet"), ("cpi@std", "trained supernet"), ("naswot@fairnas", "standard"),
                       ("params@fair", "no network tag"), ("gamma_bnnas", "unknown indicator")]:
        with pytest.raises(ColumnError, match=match):
            parse(bad)
    for preset in presets.PRESETS.values():  # every preset names valid, distinct columns
        parse_all(preset["columns"])


def _run_device_script(tmp_path: Path, stage: str, **extra_env) -> tuple[subprocess.CompletedProcess, Path]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for src, name in ((ARCHIVE, "cifar10-jpeg.tar.gz"), (TRUTH, "nb201_cifar10_accuracy.csv")):
        if src and not (data / name).exists():  # the perf stages need no data
            (data / name).symlink_to(Path(src).resolve())
    from fbnas_jax.data.image_folder import default_cache_dir

    env = {k: v for k, v in os.environ.items() if not k.startswith("FBNAS_")}
    # the suite's cache: decoded images and compiled programs are shared with the other tests
    env.update(FBNAS_PRESET="smoke", FBNAS_DATA_DIR=str(data), OUT=str(tmp_path / "out"),
               FBNAS_WORK_DIR=str(tmp_path / "work"), FBNAS_CACHE_DIR=str(default_cache_dir()),
               PYTHON=sys.executable, FBNAS_STAGE_BUDGET_S="1200", **extra_env)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks/device/nb201_gpu.sh"), "--stage", stage], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1500)
    return proc, tmp_path / "out" / f"nb201_{stage}_smoke.tar.gz"


@needs_data
def test_device_script_supernets_stage_at_smoke_size(tmp_path):
    proc, tarball = _run_device_script(tmp_path, "supernets")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with tarfile.open(tarball) as tf:
        tf.extractall(tmp_path / "unpacked")
    res = tmp_path / "unpacked" / "smoke"
    with (res / "nb201_cifar10_scores.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15625
    columns = [c.name for c in parse_all(presets.PRESETS["smoke"]["columns"])]
    assert list(rows[0]) == ["arch"] + columns
    values = {c: np.array([float(r[c]) for r in rows]) for c in columns}
    for c in PARAM_ONLY:
        assert np.all(np.isfinite(values[c])), c
    pool = presets.PRESETS["smoke"]["pool"]
    for c in set(columns) - set(PARAM_ONLY):
        scored = ~np.isnan(values[c])
        assert 0.8 * pool <= scored.sum() <= pool, (c, scored.sum())  # jacob_cov may be NaN on dead cells
    meta = json.loads((res / "nb201_cifar10_scores.csv.json").read_text())
    assert meta["forbidden_modules_imported"] == [] and meta["preset"] == "smoke"
    assert set(meta["train"]) == {"bnnas", "fair", "fairnas"}
    assert all(t["epochs"] and np.isfinite(t["epochs"][-1]["loss"]) for t in meta["train"].values())
    corr = {r["indicator"]: r for r in meta["analyze"]["correlation"]}
    assert set(corr) == set(columns)
    assert all(np.isfinite(r["kendall_tau"]) for r in corr.values()), corr
    assert corr["gamma@bnnas"]["n"] == 15625
    t2 = meta["analyze"]["table2"]
    assert {"FBN-NAS, SPOS (cpi@fair)", "BN-NAS (gamma@bnnas)", "NASWOT (naswot)", "random architecture"} <= set(t2)
    assert all(len(t["picks"]) == presets.PRESETS["smoke"]["search_seeds"] for t in t2.values())
    assert t2["BN-NAS (gamma@bnnas)"]["domain_size"] == 15625
    assert {"gamma@bnnas", "cpi@fair"} <= set(meta["analyze"]["table1"])
    for name in ("nb201_cifar10.md", "fig4_kendall_tau.png", "fig2_gamma_bnnas.png", "device_supernets.log"):
        assert (res / name).is_file(), name
    assert set(meta["stage_seconds"]) == {"train", "score", "analyze"}
    assert meta["score"]["skipped"] == {}

    # a deadline already passed: the parameter-only columns still run, the others are skipped
    # and listed, and the analysis runs on what was scored (the device run's guard)
    out2 = tmp_path / "deadline"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/nb201_cifar10.py"), "--preset", "smoke",
                           "--stages", "score,analyze", "--deadline-s", "0", "--out", str(out2), "--truth", TRUTH,
                           "--workdirs", str(tmp_path / "work" / "runs" / "smoke"), "--no-progress"],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    meta2 = json.loads((out2 / "nb201_cifar10_scores.csv.json").read_text())
    assert set(meta2["score"]["skipped"]) == set(columns) - set(PARAM_ONLY)
    assert {r["indicator"] for r in meta2["analyze"]["correlation"]} == set(PARAM_ONLY)


@needs_data
@pytest.mark.skipif(os.environ.get("FBNAS_FULL_PROTOCOL_TESTS") != "1",
                    reason="3-5 CPU-minutes of XLA compilation (the vmapped BN-only step of both placements): "
                           "beyond the CI budget; FBNAS_FULL_PROTOCOL_TESTS=1 runs it. The stand-alone trainer "
                           "itself is tested in tests/test_training_many.py")
def test_device_script_standalone_stage_at_smoke_size(tmp_path):
    proc, tarball = _run_device_script(tmp_path, "standalone")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with tarfile.open(tarball) as tf:
        tf.extractall(tmp_path / "unpacked")
    res = tmp_path / "unpacked" / "smoke"
    meta = json.loads((res / "standalone.json").read_text())["standalone"]
    archs = presets.PRESETS["smoke"]["standalone_archs"]
    assert meta["networks"] == {"bnnas": archs, "fair": archs}
    with (res / "standalone.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * archs
    by_mode = {m: [r for r in rows if r["bn_mode"] == m] for m in ("bnnas", "fair")}
    assert [r["arch"] for r in by_mode["bnnas"]] == [r["arch"] for r in by_mode["fair"]]  # same nets, both placements
    for r in rows:
        assert float(r["gamma"]) >= 0 and 0 <= float(r["test_acc"]) <= 1 and np.isfinite(float(r["train_loss"]))
    # after a few BN-only steps every |gamma| is still near its init 1, so a network's gamma is
    # about (cells = 3) x (ops carrying a BN): convolutions (bnnas), every non-none op (fair)
    for mode, ops in (("bnnas", ("nor_conv_1x1", "nor_conv_3x3")),
                      ("fair", ("nor_conv_1x1", "nor_conv_3x3", "skip_connect", "avg_pool_3x3"))):
        for r in by_mode[mode]:
            count = 3 * sum(r["arch"].count(op) for op in ops)
            assert abs(float(r["gamma"]) - count) <= 0.2 * count + 1e-6, (mode, r["arch"], r["gamma"])
    taus = meta["kendall_tau"]
    assert set(taus) == {"bnnas", "fair"} and all(np.isfinite(t["gamma_vs_truth_200ep"]) for t in taus.values())
    assert (res / "fig2_standalone_gamma_bnnas.png").is_file() and (res / "standalone.md").is_file()


def test_device_script_perf_next_stage_at_smoke_size(tmp_path):
    """The next GPU session's stage (issue 14) end to end on the CPU at smoke size: every step runs
    in order and leaves its results; a second call goes on after the steps already done."""
    proc, tarball = _run_device_script(tmp_path, "perf_next")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with tarfile.open(tarball) as tf:
        tf.extractall(tmp_path / "unpacked")
    res = tmp_path / "unpacked" / "smoke"
    log = (res / "device_perf_next.log").read_text()
    steps = ["cpi_route_bf16", "cpi_route_fp32", "lagging_route", "gpu_candidates", "bf16_c16_route", "cost_model_gpu"]
    ends = [log.index(f"== {s}: rc=") for s in steps]  # each ran (none skipped), in priority order
    assert ends == sorted(ends), log[-3000:]
    perf = res / "perf"
    for prec, tag in (("bfloat16", "bf16"), ("float32", "fp32")):  # (a) CPI, routed, both precisions
        cpi = json.loads((perf / f"vs_pytorch_next_cpi_route_{tag}.json").read_text())
        assert cpi["complete"] and cpi["args"]["execution"] == "route" and cpi["args"]["precision"] == prec
        c = cpi["sizes"][0]["cpi"]
        assert c["archs"] == 8 and c["compile_s"] > 0 and c["run_s"] > 0 and c["finite"] == 8
    # (b) the routed gradient proxies against the PyTorch loop (smoke: one proxy of each routed job kind;
    # routed grad_norm and grasp are checked against vmap in test_routing_grads)
    assert "== lagging_route: rc=0" in log, log[-3000:]
    lag = json.loads((perf / "vs_pytorch_next_lagging_route.json").read_text())
    assert lag["args"]["execution"] == "route"
    assert {r["proxy"] for r in lag["sizes"][0]["rows"]} == {"snip", "ntk_cond"}
    ab = json.loads((perf / "gpu_ab_next.json").read_text())
    assert ab["complete"] and [r["cotangent_block"] for r in ab["rows"] if r.get("proxy") == "ntk_cond"] == [2]
    tau = json.loads((perf / "bf16_ranks_next_bf16_c16_route.json").read_text())
    assert "expressivity" in json.dumps(tau)
    cm = json.loads((perf / "cost_model_gpu.json").read_text())  # (c)
    assert cm["complete"] and {(r["proxy"], r["execution"]) for r in cm["rows"]} == {
        ("expressivity", "vmap"), ("expressivity", "route")}
    assert all(r["flops"] > 0 and r["while_loops"] == 0 for r in cm["rows"])

    # call 2: the steps marked done are skipped; FBNAS_PERF_FROM skips the ones before it
    proc, _ = _run_device_script(tmp_path, "perf_next", FBNAS_PERF_FROM="gpu_candidates")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log2 = (tmp_path / "work" / "results" / "smoke" / "device_perf_next.log").read_text()
    assert "== cpi_route_bf16: skipped (FBNAS_PERF_FROM=gpu_candidates)" in log2
    assert "== lagging_route: skipped (FBNAS_PERF_FROM=gpu_candidates)" in log2
    for s in ("gpu_candidates", "cost_model_gpu"):
        assert f"== {s}: done in an earlier call, skipped" in log2


def test_train_stage_records_a_diverged_supernet_and_trains_the_next(tmp_path, monkeypatch):
    """On a budgeted device run one unstable recipe must not cost the other supernets."""
    import argparse

    from nb201_protocol import train_stage

    common = ("model: {space: nb201, channels: 4, cells_per_stage: 1, bn_mode: %s}\n"
              "data: {source: synthetic, subset: 64}\n"
              "train: {epochs: 1, batch_size: 32, max_steps: 3, checkpoint_every: 1, schedule: constant, "
              "learning_rate: %s}\n")
    for tag, mode, lr in (("fair", "fair", "1e30"), ("bnnas", "bnnas", "0.1")):
        (tmp_path / f"{tag}.yaml").write_text(common % (mode, lr))
    monkeypatch.setattr(train_stage, "TRAINED", ("fair", "bnnas"))
    args = argparse.Namespace(configs={t: str(tmp_path / f"{t}.yaml") for t in ("fair", "bnnas")}, overrides=[],
                              fairnas_overrides=[], override=[], workdirs=str(tmp_path / "runs"), progress=False,
                              train_budget_s=None)
    saved = []
    out = train_stage.run(args, lambda m: None, lambda v: saved.append(dict(v)))
    assert "diverged at step" in out["fair"]["diverged"] and out["fair"]["checkpoint_step"] >= 1
    assert out["bnnas"]["steps"] == out["bnnas"]["scheduled_steps"] > 0
    assert np.isfinite(out["bnnas"]["epochs"][-1]["loss"]) and "diverged" not in out["bnnas"]
    assert set(saved[-1]) == {"fair", "bnnas"}  # each supernet saved as it finished
