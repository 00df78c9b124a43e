"""CPI on CPU: how fast at which Monte-Carlo setting, and does a cheaper setting keep the ranks?

CPI = mean rank of expressivity, trainability and uncertainty (FBN-NAS). On CPU ~98 % of its
time is the uncertainty indicator: T forwards of ``concat([train_t, eval])`` (T MC
mini-batches of M training images, an evaluation batch of E images) per architecture, i.e.
work ~ T * (M + E) images. This script scores the same ``--archs`` NB201 architectures of a
trained supernet at several settings ``TxMeE`` (the first is the reference, by default the
engine's defaults 10x64e64), and reports for each

* speed: run seconds of expressivity and uncertainty (compile excluded), CPU seconds of the
  process, archs/s of CPI, the whole space (15,625) extrapolated at the measured load, and the
  speed ratio to the reference setting measured in the same process;
* ranks: Kendall tau of uncertainty and CPI vs the reference setting, and of each vs the NB201
  ground truth (``--gt-column`` of ``$FBNAS_NB201_CSV``).

A setting with a ``sS`` suffix (``10x64e64s1``) draws other images (``make_context``'s seed):
the reference redrawn this way measures how well the reference reproduces *itself*, the noise
floor against which "tau vs reference" must be read. Settings with the same E and seed share
the evaluation batch, hence the same expressivity (computed once per (E, seed)).

    PYTHONPATH=. python benchmarks/cpi_cpu.py --run runs/nb201_cifar10/cpu/fair --archs 200 \\
        --settings 10x64e64,10x64e64s1,4x32e64,4x32e32,5x64e64

Outputs ``<out>/cpi_cpu.json`` and ``.md`` (rewritten after every setting).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import time
from pathlib import Path

import numpy as np

SPACE = 15625
SETTING = re.compile(r"^(\d+)x(\d+)e(\d+)(?:s(\d+))?$")


def parse_setting(text: str) -> dict:
    m = SETTING.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"setting {text!r} is not TxMeE[sS], e.g. 10x64e64 or 4x32e64s1")
    t, mb, e, s = m.groups()
    return {"name": text.strip(), "mc_samples": int(t), "mc_batch_size": int(mb), "eval_batch_size": int(e),
            "seed": int(s or 0), "work": int(t) * (int(mb) + int(e))}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="trained supernet workdir (read only)")
    p.add_argument("--archs", type=int, default=200, help="random NB201 architectures (seed --arch-seed)")
    p.add_argument("--arch-seed", type=int, default=0)
    p.add_argument("--settings", default="10x64e64,10x64e64s1,4x32e64,4x32e32,5x64e64",
                   help="comma list of TxMeE[sS]; the first is the reference")
    p.add_argument("--chunk-size", type=int, default=16)
    p.add_argument("--gt", default=os.environ.get("FBNAS_NB201_CSV"), help="NB201 ground-truth CSV")
    p.add_argument("--gt-column", default="cifar10_test_200ep")
    p.add_argument("--out", default="benchmarks/results/cpi_cpu")
    args = p.parse_args(argv)
    args.setting_list = [parse_setting(s) for s in args.settings.split(",") if s.strip()]
    if not args.setting_list:
        p.error("--settings is empty")
    if args.archs < 2:
        p.error("--archs must be >= 2")
    return args


def tau(a, b) -> float:
    from scipy.stats import kendalltau

    from fbnas_jax.indicators.supernet import _finite_for_ranking

    a, b = _finite_for_ranking(a), _finite_for_ranking(b)
    ok = ~(np.isnan(a) | np.isnan(b))
    return float(kendalltau(a[ok], b[ok]).statistic)


def score_setting(run, data, enc, s, chunk, expressivity_cache) -> dict:
    """Uncertainty (and expressivity, once per eval batch) of ``enc`` at setting ``s``."""
    from fbnas_jax import scoring

    ctx = scoring.make_context(run, data, eval_batch_size=s["eval_batch_size"], mc_samples=s["mc_samples"],
                               mc_batch_size=s["mc_batch_size"], seed=s["seed"])
    row = dict(s, load_before=list(os.getloadavg()),
               date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    key = (s["eval_batch_size"], s["seed"])
    names = ["uncertainty"] + ([] if key in expressivity_cache else ["expressivity"])
    c0, w0 = time.process_time(), time.perf_counter()
    res = scoring.score_architectures(ctx, names, enc, chunk_size=chunk, progress=True)
    row["wall_s"], row["cpu_s"] = time.perf_counter() - w0, time.process_time() - c0
    if "expressivity" in names:
        expressivity_cache[key] = (np.asarray(res["expressivity"], np.float64), res.timings["expressivity"])
    expr, expr_t = expressivity_cache[key]
    unc_t = res.timings["uncertainty"]
    row.update(load_after=list(os.getloadavg()), uncertainty=np.asarray(res["uncertainty"], np.float64).tolist(),
               expressivity=expr.tolist(), uncertainty_run_s=float(unc_t["run_s"]),
               uncertainty_compile_s=float(unc_t["compile_s"]), expressivity_run_s=float(expr_t["run_s"]),
               expressivity_compile_s=float(expr_t["compile_s"]))
    n = len(enc)
    row["cpi_s_per_arch"] = (row["uncertainty_run_s"] + row["expressivity_run_s"]) / n
    row["cpi_archs_per_s"] = 1.0 / row["cpi_s_per_arch"]
    row["space_min_at_load"] = SPACE * row["cpi_s_per_arch"] / 60
    return row


def analyse(out: dict) -> None:
    from fbnas_jax.indicators.supernet import cpi_from_scores

    rows, trn, gt = out["settings"], np.asarray(out["trainability"]), np.asarray(out["ground_truth"])
    for r in rows:
        r["cpi"] = cpi_from_scores({"expressivity": np.asarray(r["expressivity"]), "trainability": trn,
                                    "uncertainty": np.asarray(r["uncertainty"])}).tolist()
    ref = rows[0]
    for r in rows:
        r["tau_vs_reference"] = {k: tau(r[k], ref[k]) for k in ("uncertainty", "expressivity", "cpi")}
        r["tau_vs_ground_truth"] = {k: tau(r[k], gt) for k in ("uncertainty", "expressivity", "cpi")}
        r["speedup_vs_reference"] = ref["cpi_s_per_arch"] / r["cpi_s_per_arch"]
    out["tau_trainability_vs_ground_truth"] = tau(trn, gt)


def markdown(out: dict) -> str:
    rows = out["settings"]
    lines = [f"# CPI on CPU: speed and rank agreement of Monte-Carlo settings ({out['device']}, JAX {out['jax']})", "",
             f"{out['date']}; supernet `{out['run']}` (step {out['step']}, C={out['channels']}, N={out['cells']}, "
             f"{out['bn_mode']}); {out['archs']} random NB201 architectures (seed {out['arch_seed']}); "
             f"chunk {out['chunk_size']}, execution {out['execution']}. Ground truth: `{out['gt_column']}`. "
             f"Reference setting: **{rows[0]['name']}** (T x M, eval E, image seed s).", "",
             "Times were measured on the shared 2-core machine at the load averages shown: absolute archs/s "
             "are for that load; the ratios to the reference (same process, same load range) are the fairer "
             "number. 'work' = T*(M+E) images forwarded per architecture.", "",
             "| setting | work | tau unc. vs ref | tau CPI vs ref | tau unc. vs GT | tau CPI vs GT | CPI archs/s "
             "| speed-up vs ref | space, min (at load) | CPU s/arch (incl. compile) | load 1-min before/after |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "tau_vs_reference" not in r:
            continue
        lines.append(
            f"| {r['name']} | {r['work']} | {r['tau_vs_reference']['uncertainty']:.3f} | "
            f"{r['tau_vs_reference']['cpi']:.3f} | {r['tau_vs_ground_truth']['uncertainty']:+.3f} | "
            f"{r['tau_vs_ground_truth']['cpi']:+.3f} | {r['cpi_archs_per_s']:.2f} | {r['speedup_vs_reference']:.2f} | "
            f"{r['space_min_at_load']:.0f} | {r['cpu_s'] / out['archs']:.3f} | "
            f"{r['load_before'][0]:.1f}/{r['load_after'][0]:.1f} |")
    lines += ["", f"Trainability vs ground truth: tau {out['tau_trainability_vs_ground_truth']:+.3f}; "
                  f"expressivity vs ground truth (reference eval batch): "
                  f"{rows[0]['tau_vs_ground_truth']['expressivity']:+.3f}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax

    from fbnas_jax import engine
    from fbnas_jax.groundtruth import load_ground_truth
    from fbnas_jax.runtime import enable_compilation_cache
    from fbnas_jax.scoring import make_context, score_architectures
    from fbnas_jax.spaces import nb201
    from fbnas_jax.training.loop import load_data, load_run

    enable_compilation_cache()
    if not args.gt:
        raise SystemExit("cpi_cpu: no ground truth: pass --gt or set FBNAS_NB201_CSV")
    run = load_run(args.run)
    data = load_data(run.config)
    enc = np.asarray(nb201.sample_encodings(np.random.default_rng(args.arch_seed), args.archs), np.int32)
    gt = load_ground_truth(args.gt).values(args.gt_column, enc)
    trn = score_architectures(make_context(run, None), ["trainability"], enc, progress=False)["trainability"]
    out = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "jax": jax.__version__,
           "device": str(jax.devices()[0]), "cores": os.cpu_count(), "run": args.run, "step": run.step,
           "channels": run.net.channels, "cells": run.net.cells_per_stage, "bn_mode": run.net.bn_mode,
           "archs": args.archs, "arch_seed": args.arch_seed, "chunk_size": args.chunk_size,
           "execution": engine.resolve_execution("auto"), "gt_column": args.gt_column,
           "encodings": enc.tolist(), "ground_truth": np.asarray(gt, np.float64).tolist(),
           "trainability": np.asarray(trn, np.float64).tolist(), "settings": [], "complete": False}
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    cache: dict = {}
    for s in args.setting_list:
        row = score_setting(run, data, enc, s, args.chunk_size, cache)
        out["settings"].append(row)
        analyse(out)
        r = out["settings"][-1]
        print(f"{s['name']}: CPI {r['cpi_archs_per_s']:.2f} archs/s (load {r['load_before'][0]:.1f}), "
              f"tau vs ref: unc {r['tau_vs_reference']['uncertainty']:.3f} cpi {r['tau_vs_reference']['cpi']:.3f}; "
              f"vs GT: unc {r['tau_vs_ground_truth']['uncertainty']:+.3f} cpi {r['tau_vs_ground_truth']['cpi']:+.3f}",
              flush=True)
        (path / "cpi_cpu.json").write_text(json.dumps(out, indent=1))
        (path / "cpi_cpu.md").write_text(markdown(out))
    out["complete"] = True
    (path / "cpi_cpu.json").write_text(json.dumps(out, indent=1))
    print(markdown(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
