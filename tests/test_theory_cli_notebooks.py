"""CLI smoke tests and headless execution of the theory notebooks at small size."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_cli_help_exits_zero(capsys):
    from theory.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "ntk-check" in capsys.readouterr().out


def test_cli_ntk_check_json(capsys):
    from theory.cli import main

    assert main(["ntk-check", "--widths", "64", "256", "--seeds", "2", "--depth", "2",
                 "--mc-samples", "20000", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [r["width"] for r in res["rows"]] == [64, 256]
    assert res["rows"][1]["err_derived_mean"] < res["rows"][0]["err_derived_mean"] + 0.05
    assert "slope_derived" in res and "slope_eq4" in res


def test_cli_dynamics_table(capsys):
    from theory.cli import main

    assert main(["dynamics", "--widths", "64", "128", "--seeds", "1", "--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "kernel-drift log-log slope" in out and " bn " in out and " all " in out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["01_bn_ntk_kernel_convergence.ipynb", "02_bn_training_dynamics.ipynb"])
def test_notebook_executes_small(name, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("FBNAS_NB_SIZE", "small")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute()  # raises CellExecutionError if any cell (including its assertions) fails
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "small" in text
