"""CLI surface, configs and README snippets."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fbnas_jax.cli import build_parser, main
from fbnas_jax.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_cost_command_prints_json(capsys):
    arch = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|none~2|"
    assert main(["nb201", "cost", arch, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"params_m": 0.101306, "flops_m": 11.71521}
    assert main(["nb201", "cost", "0,0,0,0,0,0", "--json", "--classes", "100"]) == 0


@pytest.mark.parametrize("bad", ["|nor_conv_3x3~0|+|bogus~0|none~1|+|none~0|none~1|none~2|",
                                 "|none~0|+|none~0|", "1,2,3", "7,0,0,0,0,0"])
def test_bad_architectures_give_clear_errors(bad, capsys):
    assert main(["nb201", "cost", bad]) == 2
    err = capsys.readouterr().err
    assert "fbnas nb201 cost: error:" in err and len(err) < 400


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = list(sub.choices)
    assert {"demo", "train-supernet", "train-arch", "nb201", "score", "search", "bench", "theory"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        assert "usage: fbnas" in capsys.readouterr().out


def test_unknown_config_key_is_an_error_with_suggestion(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {epoch: 3}\n")
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_config(path)
    with pytest.raises(ConfigError, match="unknown config section"):
        load_config(None, ["optim.lr=1"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="bn_mode must be one of"):
        load_config(None, ["model.bn_mode=half"])
    with pytest.raises(ConfigError, match="not set"):
        load_config(None, ["data.source=${FBNAS_SURELY_UNSET_VAR}"])


def test_train_supernet_reports_config_errors(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {channelz: 4}\n")
    assert main(["train-supernet", "--config", str(cfg), "--workdir", str(tmp_path / "w")]) == 2
    assert "channelz" in capsys.readouterr().err
    cfg.write_text("data: {source: /nonexistent/cifar.tar.gz}\n")
    assert main(["train-supernet", "--config", str(cfg), "--workdir", str(tmp_path / "w")]) == 2
    assert "nonexistent" in capsys.readouterr().err


def test_all_shipped_configs_load(monkeypatch):
    monkeypatch.setenv("FBNAS_CIFAR10_ARCHIVE", "/data/cifar10.tar.gz")
    monkeypatch.setenv("FBNAS_IMAGENET_DIR", "/data/tfds")  # the ImageNet configs' TFDS data_dir
    paths = sorted((ROOT / "configs").glob("*.yaml"))
    assert len(paths) >= 4
    for path in paths:
        if "search" in (yaml.safe_load(path.read_text()) or {}):  # differentiable-search configs (issue 12)
            from fbnas_jax.search.differentiable import load_search_config

            cfg = load_search_config(path)[0]
        else:
            cfg = load_config(path)
        assert cfg.model.bn_mode in ("bnnas", "fair")


def test_import_fbnas_jax_stays_light():
    code = ("import sys, fbnas_jax, fbnas_jax.cli, fbnas_jax.scoring; fbnas_jax.cli.build_parser(); "
            "bad = [m for m in ('tensorflow', 'neural_tangents', 'theory') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_readme_quick_start_has_two_lines_and_library_snippet_runs():
    text = (ROOT / "README.md").read_text()
    quick = re.search(r"## Quick start\s+```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(quick) == 2 and "fbnas demo" in quick[0] and "pytest" in quick[1]
    snippet = re.search(r"## Library\s+```python\n(.*?)```", text, re.S).group(1)
    prefix = "from fbnas_jax.runtime import enable_compilation_cache; enable_compilation_cache()\n"
    out = subprocess.run([sys.executable, "-c", prefix + snippet], capture_output=True, text=True, cwd=ROOT,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Cost(params_m=0.802426" in out.stdout and "(16, 8, 10)" in out.stdout


def test_relative_links_of_the_docs_resolve():
    """Every relative link of README.md, docs/ and the results' READMEs names a file or folder of the
    repository (the performance record moved from README.md to docs/, links rewritten)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "benchmarks" / "results").glob("*/README.md"))]
    assert len(pages) > 3
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_theory_command_is_forwarded(capsys):
    with pytest.raises(SystemExit) as info:
        main(["theory", "--help"])
    assert info.value.code == 0
    assert "ntk-check" in capsys.readouterr().out


def test_demo_command_runs_and_prints_subnet_table(capsys, monkeypatch):
    import os

    truth = os.environ.get("FBNAS_NB201_CSV")
    monkeypatch.delenv("FBNAS_NB201_CSV", raising=False)
    extra = ["--truth", truth] if truth and os.path.isfile(truth) else []
    rc = main(["demo", "--no-progress", "--set", "train.max_steps=4", "model.channels=4"] + extra)
    out = capsys.readouterr().out
    assert rc == 0
    assert "epoch 1: training loss" in out and "(4 steps)" in out
    rows = [line for line in out.splitlines() if line.startswith("|") and line.count("~") == 6]
    assert len(rows) == 8
    gammas = [float(r.split()[3]) for r in rows]
    assert min(gammas) == 0.0 and max(gammas) > 0  # all-`none` has no BN; others do
    accs = [float(r.split()[-1]) for r in rows]
    assert all(0.0 <= a <= 100.0 for a in accs)
    if extra:
        taus = re.findall(r"(\S+)\s+Kendall tau ([+-]\d\.\d+)", out)
        assert [name for name, _ in taus] == ["gamma@fair", "trainability@fair", "params"]
        assert float(taus[2][1]) == pytest.approx(0.578, abs=0.01)  # the parameter count's tau is fixed
    else:
        assert "set FBNAS_NB201_CSV or pass --truth" in out
