"""One clear error and exit code for every bad input and fault a newcomer can hit (issue 8).

Each test runs the command line as a user would (``fbnas_jax.cli.main`` in process; a real
process where a signal is the point) and asserts the exit code and the message. Exit codes:
2 bad input, 1 the work failed (disk full), 3 workdir in use, 130 interrupted.

Every training here uses one tiny image-folder dataset (16x16 PNGs, 10 classes, 260 train
images) and the tiny network and settings of ``conftest.TINY_OVERRIDES``: the XLA programs are
those of the library tests on the 16x16 synthetic set, compiled once per suite and then loaded
from the compilation cache.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from fbnas_jax.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
TINY = ["model.channels=4", "model.cells_per_stage=1", "train.batch_size=32", "train.epochs=1",
        "train.log_every=1", "train.learning_rate=0.2", "train.momentum=0.9", "train.schedule=cosine",
        "train.max_steps=2", "train.checkpoint_every=1", "model.bn_mode=fair"]


def _images(root: Path, size: int, per_class: tuple[int, int] = (26, 2), classes: int = 10) -> Path:
    """``root/train/<class>/*.png`` and ``root/test/...``: ``size`` x ``size`` images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in zip(("train", "test"), per_class):
        for c, name in enumerate(f"class{k}" for k in range(classes)):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                px = np.clip(rng.normal(20 + 20 * c, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(px).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return _images(tmp_path_factory.mktemp("images16"), 16)


# A config file of defaults only (every key comes from --set): independent of the shipped configs.
DEMO = str(Path(tempfile.mkdtemp(prefix="fbnas_bad_inputs_")) / "tiny.yaml")
Path(DEMO).write_text("# tiny test config: values come from --set\nmodel: {}\n")


def _tiny(data_dir: Path, cache: Path, *extra: str) -> list[str]:
    return ["--config", DEMO, "--set", *TINY, f"data.source={data_dir}", f"data.cache_dir={cache}", *extra]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, data_dir):
    """A trained tiny BN-only fair supernet (2 steps, checkpoints at 1 and 2)."""
    w = tmp_path_factory.mktemp("run") / "w"
    cache = tmp_path_factory.mktemp("cache")
    assert main(["train-supernet", "--workdir", str(w), "--no-progress"] + _tiny(data_dir, cache)) == 0
    return w


def _err(capsys) -> str:
    return capsys.readouterr().err


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error" in line.lower()]


# --------------------------------------------------------------------------- configs

@pytest.mark.parametrize("text, message", [
    ("train: {epochs: 2\n", "YAML syntax error at line 2"),
    ("model: 5\n", "config section 'model' must be a mapping"),
    ("train:\n  batch_size: 3.7\n", "train.batch_size: expected an integer, got 3.7"),
])
def test_bad_config_files(tmp_path, capsys, text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    rc = main(["train-supernet", "--config", str(cfg), "--workdir", str(tmp_path / "w")])
    err = _err(capsys)
    assert rc == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=0", "train.batch_size must be >= 1, got 0"),
    ("train.batch_size=-3", "train.batch_size must be >= 1, got -3"),
    ("model.channels=0", "model.channels must be >= 1, got 0"),
    ("model.cells_per_stage=0", "model.cells_per_stage must be >= 1, got 0"),
    ("train.checkpoint_every=0", "train.checkpoint_every must be >= 1, got 0"),
    ("train.log_every=0", "train.log_every must be >= 1, got 0"),
    ("train.epochs=0", "train.epochs must be >= 1, got 0"),
    ("train.epochs=-1", "train.epochs must be >= 1, got -1"),
    ("train.max_steps=0", "train.max_steps must be >= 1, got 0"),
    ("train.learning_rate=nan", "train.learning_rate must be finite"),
])
def test_bad_values_fail_before_any_work(tmp_path, capsys, override, message):
    rc = main(["train-supernet", "--config", DEMO, "--workdir", str(tmp_path / "w"), "--set", override])
    err = _err(capsys)
    assert rc == 2 and message in err and "compiling" not in err, err
    assert not (tmp_path / "w").exists()


def test_demo_with_a_misspelt_key_suggests_the_right_one(capsys):
    assert main(["demo", "--set", "train.epoch=1"]) == 2
    err = _err(capsys)
    assert "unknown key in section 'train': 'epoch'; did you mean 'epochs'?" in err and "Traceback" not in err


def test_repeated_set_options_all_apply():
    from fbnas_jax.commands.core import _config

    args = build_parser().parse_args(["train-supernet", "--config", DEMO, "--workdir", "w", "--set", "train.epochs=3",
                                      "--set", "model.channels=8", "train.seed=5"])
    assert args.set == ["train.epochs=3", "model.channels=8", "train.seed=5"]
    cfg = _config(args)
    assert (cfg.train.epochs, cfg.model.channels, cfg.train.seed) == (3, 8, 5)


# --------------------------------------------------------------------------- architectures

@pytest.mark.parametrize("argv", [["nb201", "arch", "3,,3,4,0,3,1"], ["nb201", "cost", "3,,3,4,0,3"],
                                  ["train-arch", "3,,3,4,0,3", "--workdir", "w"]])
def test_empty_entry_in_an_encoding_is_rejected(capsys, argv):
    assert main(argv) == 2
    assert "empty entry between commas" in _err(capsys)


def test_train_arch_takes_encodings_and_options_on_either_side(capsys, tmp_path):
    from fbnas_jax.commands import _common

    parser = build_parser()
    for argv in (["train-arch", "3,3,4,0,3,4", "--workdir", "w", "--set", "train.epochs=1"],
                 ["train-arch", "--workdir", "w", "--set", "train.epochs=1", "3,3,4,0,3,4"],
                 ["train-arch", "--set", "train.epochs=1", "--workdir", "w", "3,3,4,0,3,4"]):
        args = parser.parse_args(argv)
        _common.take_loose(parser, args)
        assert args.arch == "3,3,4,0,3,4" and args.set == ["train.epochs=1"] and args.workdir == "w"
    assert main(["train-arch", "--workdir", str(tmp_path / "w")]) == 2
    assert "needs an architecture" in _err(capsys)


def test_train_arch_trains_an_encoding(data_dir, tmp_path, capsys):
    # the architecture of test_training.test_fixed_sampler_needs_arch, as an encoding
    rc = main(["train-arch", "3,1,0,4,2,0", "--workdir", str(tmp_path / "a"), "--no-progress"]
              + _tiny(data_dir, tmp_path, "train.max_steps=2"))
    out = capsys.readouterr()
    assert rc == 0, out.err
    summary = json.loads(out.out)
    assert summary["steps"] == 2 and 0.0 <= summary["test"]["accuracy"] <= 1.0
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    from fbnas_jax.spaces import nb201

    assert run["config"]["model"]["arch"] == nb201.encoding_to_string([3, 1, 0, 4, 2, 0]) == \
        "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"


# --------------------------------------------------------------------------- data

def test_images_whose_size_does_not_fit_the_network(tmp_path, capsys):
    data = _images(tmp_path / "img30", 30, (2, 1), classes=2)
    rc = main(["train-supernet", "--workdir", str(tmp_path / "w")] + _tiny(data, tmp_path))
    err = _err(capsys)
    assert rc == 2 and "30x30" in err and "multiples of 4" in err and "Traceback" not in err, err


def test_run_json_holds_absolute_paths_and_scoring_needs_data_only_when_used(workdir, data_dir, tmp_path,
                                                                            monkeypatch, capsys):
    # train with a *relative* data path from data_dir's parent ...
    monkeypatch.chdir(data_dir.parent)
    w = tmp_path / "rel"
    assert main(["train-supernet", "--workdir", str(w), "--no-progress"]
                + _tiny(Path(data_dir.name), tmp_path, "train.max_steps=1")) == 0
    source = json.loads((w / "run.json").read_text())["config"]["data"]["source"]
    assert source == str(data_dir)
    # ... and score from elsewhere: gamma reads no data; expressivity reads it by absolute path
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    out = tmp_path / "s.csv"
    assert main(["score", "--checkpoint", str(w), "--indicators", "gamma", "--tag", "fair", "--archs", "5",
                 "--out", str(out), "--no-progress"]) == 0
    err = _err(capsys)
    assert "no data needed" in err
    assert out.read_text().splitlines()[0] == "arch,gamma@fair"
    os.rename(data_dir, str(data_dir) + ".moved")  # gamma still works without the data ...
    try:
        assert main(["score", "--checkpoint", str(w), "--indicators", "gamma", "--archs", "3",
                     "--out", str(out), "--no-progress"]) == 0
        # ... and an indicator that needs it says which path is missing
        assert main(["score", "--checkpoint", str(w), "--indicators", "expressivity", "--archs", "3",
                     "--out", str(out), "--no-progress"]) == 2
        assert "dataset path not found" in _err(capsys)
    finally:
        os.rename(str(data_dir) + ".moved", data_dir)


def test_score_says_what_is_coming(workdir, tmp_path, capsys):
    out = tmp_path / "s.csv"
    rc = main(["score", "--checkpoint", str(workdir), "--indicators", "expressivity", "--archs", "12",
               "--chunk-size", "4", "--eval-batch-size", "4", "--out", str(out)])
    err = _err(capsys)
    assert rc == 0, err
    assert "expressivity: compiling" in err
    assert "expressivity: 12 archs at ~" in err and "archs/s on cpu: about" in err


def test_out_not_writable_is_found_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    rc = main(["score", "--checkpoint", str(tmp_path / "no_such_run"), "--out", str(blocker / "s.csv")])
    err = _err(capsys)
    assert rc == 2 and "cannot create the output directory" in err and "no_such_run" not in err, err


def test_run_json_with_missing_keys(tmp_path, capsys):
    (tmp_path / "run.json").write_text(json.dumps({"config": {}}))
    rc = main(["score", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "s.csv")])
    err = _err(capsys)
    assert rc == 2 and "lacks the key(s) ['num_classes', 'input_shape']" in err and "KeyError" not in err


# --------------------------------------------------------------------------- workdirs

def _checkpoint_files(w: Path) -> dict[str, float]:
    return {str(p.relative_to(w)): p.stat().st_mtime for p in (w / "checkpoints").rglob("*") if p.is_file()}


@pytest.mark.parametrize("change, shown", [
    ("train.seed=1", "train.seed: 0 -> 1"),
    ("train.batch_size=16", "train.batch_size: 32 -> 16"),
    ("train.params=all", "train.params: 'bn_only' -> 'all'"),
])
def test_resume_with_another_config_is_refused_and_changes_nothing(workdir, data_dir, tmp_path, capsys,
                                                                   change, shown):
    before = _checkpoint_files(workdir)
    run_json = (workdir / "run.json").read_text()
    rc = main(["train-supernet", "--workdir", str(workdir), "--no-progress"]
              + _tiny(data_dir, tmp_path, "train.max_steps=3", change))
    err = _err(capsys)
    assert rc == 2 and "holds a run with another config" in err and shown in err, err
    assert "corrupt" not in err and "--auto-workdir" in err
    assert _checkpoint_files(workdir) == before and (workdir / "run.json").read_text() == run_json


def test_auto_workdir_starts_the_changed_run_elsewhere(workdir, data_dir, tmp_path, capsys):
    # the workdir fixture's config but no augmentation (done in NumPy: same XLA program)
    argv = ["train-supernet", "--workdir", str(workdir), "--auto-workdir", "--no-progress"] + _tiny(
        data_dir, tmp_path, "data.augment=false", "train.max_steps=1")
    before = _checkpoint_files(workdir)
    assert main(argv) == 0
    out = capsys.readouterr()
    other = workdir.with_name(workdir.name + "-2")
    assert json.loads(out.out)["workdir"] == str(other) and f"this run uses {other}" in out.err
    assert json.loads((other / "run.json").read_text())["config"]["data"]["augment"] is False
    assert _checkpoint_files(workdir) == before


def test_a_workdir_in_use_is_locked(workdir, data_dir, tmp_path, capsys):
    from fbnas_jax.training.loop import WorkdirLock

    with WorkdirLock(workdir):  # as if another process were training here
        rc = main(["train-supernet", "--workdir", str(workdir), "--no-progress"] + _tiny(data_dir, tmp_path))
    err = _err(capsys)
    assert rc == 3 and "is in use by another run (pid" in err, err


@pytest.mark.parametrize("edit, message", [
    ({"channels": 8}, "array(s) of another shape"),
    ({"bn_mode": "bnnas"}, "array(s) the config does not have"),
])
def test_checkpoint_of_another_network_is_named_a_mismatch(workdir, tmp_path, capsys, edit, message):
    import shutil

    w = tmp_path / "copy"
    shutil.copytree(workdir, w)
    run = json.loads((w / "run.json").read_text())
    run["config"]["model"].update(edit)
    (w / "run.json").write_text(json.dumps(run))
    for indicator in ("gamma", "expressivity"):
        rc = main(["score", "--checkpoint", str(w), "--indicators", indicator, "--archs", "3",
                   "--out", str(tmp_path / "s.csv")])
        err = _err(capsys)
        assert rc == 2 and "written by another network or optimiser" in err and message in err, err
        assert "corrupt" not in err and "Traceback" not in err


def test_disk_full_while_saving_is_one_line_and_keeps_older_checkpoints(data_dir, tmp_path, capsys,
                                                                       monkeypatch):
    import orbax.checkpoint as ocp

    from fbnas_jax.training.loop import load_run

    w = tmp_path / "w"
    real_save = ocp.CheckpointManager.save

    def save(self, step, *a, **k):
        if step >= 2:  # the disk fills up after the first checkpoint
            raise OSError(errno.ENOSPC, "No space left on device", str(self.directory / f"{step}"))
        return real_save(self, step, *a, **k)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    rc = main(["train-supernet", "--workdir", str(w), "--no-progress"] + _tiny(data_dir, tmp_path))
    err = _err(capsys)
    lines = _error_lines(err)
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert str(w / "checkpoints") in lines[0] and "no space left" in lines[0]
    assert "older checkpoints (steps [1]) are intact" in lines[0]
    monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
    assert load_run(w).step == 1


# --------------------------------------------------------------------------- bench and names

def _scores_csv(path: Path, columns: dict[str, list]) -> Path:
    from fbnas_jax.spaces import nb201

    archs = nb201.all_strings()[: len(next(iter(columns.values())))]
    lines = [",".join(["arch", *columns])]
    lines += [",".join([a, *(str(columns[c][i]) for c in columns)]) for i, a in enumerate(archs)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bench_names_the_rows_of_a_column_that_is_not_numeric(tmp_path, capsys):
    n = 20
    acc = list(np.linspace(50, 90, n))
    bad = [str(v) for v in range(n)]
    bad[3], bad[11] = "oops", "n/a?"
    scores = _scores_csv(tmp_path / "s.csv", {"naswot": list(range(n)), "broken": bad})
    truth = _scores_csv(tmp_path / "t.csv", {"acc": acc})
    rc = main(["bench", "correlation", "--scores", str(scores), "--truth", str(truth), "--indicators", "broken"])
    err = _err(capsys)
    assert rc == 2 and "'broken'" in err and "not numeric: 2 of 20 rows are not numbers" in err, err
    assert "line 5 ('oops')" in err and "line 13 ('n/a?')" in err and "unknown indicator" not in err
    rc = main(["bench", "correlation", "--scores", str(scores), "--truth", str(truth)])
    err = _err(capsys)
    assert rc == 0 and "column 'broken' left out: 2 of 20 rows" in err


def test_bench_warns_about_a_constant_column(tmp_path, capsys):
    scores = _scores_csv(tmp_path / "s.csv", {"gamma@fair": [1.5] * 10, "naswot": list(range(10))})
    truth = _scores_csv(tmp_path / "t.csv", {"acc": list(range(10))})
    rc = main(["bench", "correlation", "--scores", str(scores), "--truth", str(truth), "--json"])
    out = capsys.readouterr()
    assert rc == 0
    assert "indicator 'gamma@fair' is constant (1.5 for all 10 architectures)" in out.err
    rows = {r["indicator"]: r for r in json.loads(out.out)["rows"]}
    assert rows["gamma@fair"]["kendall_tau"] is None and rows["naswot"]["kendall_tau"] == pytest.approx(1.0)


def test_column_names_travel_between_score_bench_and_search(tmp_path, capsys):
    scores = _scores_csv(tmp_path / "s.csv", {"gamma@bnnas": list(range(30)), "gamma@fair": list(range(30))[::-1],
                                              "naswot@fair": list(range(30))})
    truth = _scores_csv(tmp_path / "t.csv", {"acc": list(range(30))})
    base = ["bench", "correlation", "--scores", str(scores), "--truth", str(truth), "--json", "--indicators"]
    assert main(base + ["gamma@fair,naswot"]) == 0  # exact name, and a bare name with one tag
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["indicator"] for r in rows] == ["gamma@fair", "naswot@fair"]
    assert rows[0]["kendall_tau"] == pytest.approx(-1.0)
    assert main(base + ["gamma"]) == 2
    err = _err(capsys)
    assert "'gamma' is ambiguous" in err and "gamma@bnnas" in err and "gamma@fair" in err
    for name in ("naswot", "gamma@bnnas"):  # the 30 scored archs are the first 30 of the space
        rc = main(["search", "--scores", str(scores), "--indicator", name, "--algo", "random",
                   "--samples", "15625", "--json", "--no-progress"])
        out = capsys.readouterr()
        assert rc == 0, out.err
        assert json.loads(out.out)["score"] == 29.0


def test_committed_benchmark_scores_use_the_names(capsys):
    truth = os.environ.get("FBNAS_NB201_CSV")
    header = (ROOT / "benchmarks/results/cpu_old_recipe/nb201_cifar10_scores.csv").open().readline().strip().split(",")
    assert "gamma@bnnas" in header and "gamma@fair" in header
    if not truth or not os.path.isfile(truth):
        pytest.skip("set FBNAS_NB201_CSV to check the committed scores against the ground truth")
    rc = main(["bench", "correlation", "--scores", str(ROOT / "benchmarks/results/cpu_old_recipe/nb201_cifar10_scores.csv"),
               "--truth", truth, "--indicators", "gamma@bnnas", "--columns", "cifar10_test_200ep", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert json.loads(out.out)["rows"][0]["kendall_tau"] == pytest.approx(0.508, abs=5e-4)


# --------------------------------------------------------------------------- Ctrl-C

def test_ctrl_c_stops_search_within_seconds(workdir, tmp_path):
    """A search scoring 15,625 reference architectures with the three CPI components takes
    minutes; SIGINT while it compiles or scores ends the process in a few seconds."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "fbnas_jax.cli", "search", "--checkpoint", str(workdir), "--indicator", "cpi",
         "--reference", "0", "--chunk-size", "64", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        # a shell's background job (nohup, `cmd &` in a script, some CI runners) inherits SIGINT
        # ignored, and Python then keeps ignoring it: give the child the default disposition
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # wait until it is working (compiling an indicator)
        line = proc.stderr.readline()
        seen.append(line)
        if "compiling" in line or not line:
            break
    assert "compiling" in seen[-1], "".join(seen)
    time.sleep(1.0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("search still running 30 s after Ctrl-C")
    elapsed = time.monotonic() - t0
    rest = proc.stderr.read()
    assert rc == 130 and "interrupted" in rest, rest
    assert elapsed < 8.0, f"stopped {elapsed:.1f} s after SIGINT"
