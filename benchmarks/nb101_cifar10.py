"""NAS-Bench-101 / CIFAR-10 benchmark: BN-only supernets, every indicator on the 1,001-cell subset,
Kendall tau against the benchmark's validation accuracy, and the paper's Table 3 analogue.

Stages (each resumable; outputs under --out, default benchmarks/results/nb101):

1. ``train``: BN-only supernets from configs: BN-NAS (``bn_mode=bnnas``) and FBN (``fair``), SPOS;
   and with ``--fairnas`` a third, the FBN supernet trained with FairNAS groups (3 cells sharing
   a topology, every vertex op once per group; see :meth:`NB101Space.fair_group`).
2. ``score``: the 1,001 cells of the ground-truth CSV (canonical placement) with gamma (both
   supernets), trainability, expressivity, uncertainty, CPI, supernet accuracy, the
   training-free baselines on a fresh fair supernet, and params / FLOPs (the benchmark's
   network). Writes ``nb101_cifar10_scores.csv`` + sidecar JSON.
3. ``analyze``: Kendall tau / Spearman / top-10% precision of every indicator vs
   ``val_acc_ep108`` (and the other epochs), the Table 3 analogue -- the SPOS/BN-NAS
   evolutionary search restricted to the 1,001 cells, ``--search-seeds`` seeds, for CPI, gamma
   (BN-NAS), NASWOT, and a random pick: mean +- std of the pick's validation accuracy and its
   rank among the 1,001 -- and the EA under a parameter limit; plots; JSON + markdown.

Presets (``--preset``) pick configs, data sizes and scoring options; flags override them:

* ``smoke``: stem 4, 8 training steps on 512 synthetic images, 24 cells (a minute; checks the
  pipeline end to end);
* ``cpu``: ``configs/nb101_{bnnas,fbn}_cpu.yaml`` (stem 8, one module per stack, 3 epochs on
  a 10k CIFAR-10 subset), all 1,001 cells, CPU-sized batches. Measured on the shared 2-core
  CPU at load 9-15 (2026-11-26): 8-12 s per training step, 18 min for expressivity on 1,001
  cells, uncertainty 3 s per cell; the committed run therefore used ``--cells 300
  --supernet-indicators expressivity,uncertainty --baselines naswot`` after the first columns;
* ``gpu``: ``configs/nb101_{bnnas,fbn}.yaml`` (the benchmark's width: stem 128, 3x3 modules,
  10 epochs on CIFAR-10), FairNAS too, the papers' batch sizes.

Example::

    FBNAS_CIFAR10_ARCHIVE=../shared/data/cifar10/cifar10-jpeg.tar.gz nice -n 10 \\
    python benchmarks/nb101_cifar10.py --preset cpu --truth ../shared/data/nasbench101/nb101_subset.csv
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

TRUTH = "val_acc_ep108"
SUPERNET_FWD = ("expressivity", "uncertainty", "supernet_accuracy")
BASELINES = ("naswot", "jacob_cov", "synflow", "snip", "grasp", "fisher", "grad_norm", "ntk_cond",
             "linear_regions")

PRESETS = {
    "smoke": dict(
        bnnas_config=None, fbn_config=None,
        overrides=["model.space=nb101", "model.channels=4", "model.cells_per_stage=1", "data.source=synthetic", "data.subset=512",
                   "train.max_steps=8", "train.batch_size=64", "train.log_every=4", "train.checkpoint_every=4"],
        cells=24, chunk_size=8, eval_batch_size=16, mc_samples=2, mc_batch_size=16,
        baselines="naswot,synflow,snip,grad_norm,fisher", fairnas=True,
        indicator_options={n: {"batch_size": 8} for n in ("snip", "grad_norm", "fisher", "naswot")},
        search_seeds=3, search_population=6, search_generations=3),
    "cpu": dict(
        bnnas_config="configs/nb101_bnnas_cpu.yaml", fbn_config="configs/nb101_fbn_cpu.yaml", overrides=[],
        cells=None, chunk_size=16, eval_batch_size=64, mc_samples=4, mc_batch_size=32,
        baselines="naswot,jacob_cov,synflow,snip,grasp,fisher,grad_norm,linear_regions", fairnas=False,
        indicator_options={"grasp": {"batch_size": 16}, "snip": {"batch_size": 32},
                           "grad_norm": {"batch_size": 32}, "fisher": {"batch_size": 32},
                           "jacob_cov": {"batch_size": 32}, "linear_regions": {"batch_size": 64, "repeats": 1}},
        search_seeds=10, search_population=20, search_generations=5),
    "gpu": dict(
        bnnas_config="configs/nb101_bnnas.yaml", fbn_config="configs/nb101_fbn.yaml", overrides=[],
        cells=None, chunk_size=64, eval_batch_size=64, mc_samples=10, mc_batch_size=64,
        baselines=",".join(BASELINES), fairnas=True, indicator_options={},
        search_seeds=10, search_population=20, search_generations=5),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=tuple(PRESETS), default="cpu")
    p.add_argument("--stages", default="train,score,analyze")
    p.add_argument("--truth", default=os.environ.get("FBNAS_NB101_CSV"),
                   help="NB101 subset CSV (adjacency, ops, val_acc_ep108, ...); default $FBNAS_NB101_CSV")
    p.add_argument("--fbn-config", default=None, help="override the preset's FBN config")
    p.add_argument("--bnnas-config", default=None, help="override the preset's BN-NAS config")
    p.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                   help="config overrides applied to every supernet (e.g. train.epochs=1)")
    p.add_argument("--workdirs", default="runs/nb101_cifar10", help="where supernet checkpoints go")
    p.add_argument("--out", default="benchmarks/results/nb101")
    p.add_argument("--cells", type=int, default=None,
                   help="score only the first N cells of the CSV (columns already scored on more are cut)")
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--eval-batch-size", type=int, default=None)
    p.add_argument("--mc-samples", type=int, default=None)
    p.add_argument("--mc-batch-size", type=int, default=None)
    p.add_argument("--baselines", default=None, help="comma-separated training-free baselines")
    p.add_argument("--supernet-indicators", default=",".join(SUPERNET_FWD),
                   help="forward indicators of the fair supernet (expressivity and uncertainty feed CPI)")
    p.add_argument("--indicator-options", default=None, help="JSON per-indicator options (recorded)")
    p.add_argument("--fairnas", action=argparse.BooleanOptionalAction, default=None,
                   help="also train and score a FairNAS-trained FBN supernet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--search-seeds", type=int, default=None)
    p.add_argument("--search-population", type=int, default=None)
    p.add_argument("--search-generations", type=int, default=None)
    p.add_argument("--max-params", type=float, default=None,
                   help="params limit (M, benchmark network) of the constrained EA; default: the median cell's")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    preset = PRESETS[args.preset]
    for key in ("chunk_size", "eval_batch_size", "mc_samples", "mc_batch_size", "baselines", "fairnas",
                "search_seeds", "search_population", "search_generations", "cells"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    args.fbn_config = args.fbn_config or preset["fbn_config"]
    args.bnnas_config = args.bnnas_config or preset["bnnas_config"]
    args.overrides = list(preset["overrides"]) + list(args.set)
    args.indicator_options = (json.loads(args.indicator_options) if args.indicator_options
                              else preset["indicator_options"])
    if not args.truth:
        p.error("--truth (or FBNAS_NB101_CSV) is required: the NB101 subset CSV")
    return args


def _configs(args) -> dict:
    from fbnas_jax.config import load_config

    cfgs = {"bnnas": load_config(args.bnnas_config, args.overrides + ["model.bn_mode=bnnas"]),
            "fair": load_config(args.fbn_config, args.overrides + ["model.bn_mode=fair"])}
    if args.fairnas:
        cfgs["fair_fairnas"] = load_config(args.fbn_config, args.overrides + ["model.bn_mode=fair",
                                                                              "train.sampler=fairnas"])
    for name, cfg in cfgs.items():
        if cfg.model.space != "nb101":
            raise SystemExit(f"{name} config is a {cfg.model.space!r} model; this benchmark needs model.space=nb101")
    return cfgs


def _load_truth(args):
    from fbnas_jax.groundtruth import load_ground_truth

    with open(args.truth, newline="") as f:  # the accuracy columns (hash, ops, source are text)
        header = next(csv.reader(f), [])
    gt = load_ground_truth(args.truth, space="nb101", columns=[c for c in header if c.startswith("val_acc_ep")])
    n = len(gt) if not args.cells else min(args.cells, len(gt))
    return gt, n


# ----------------------------------------------------------------------------- train

def stage_train(args, log):
    from fbnas_jax.training.loop import train

    out = {}
    for name, cfg in _configs(args).items():
        t0 = time.perf_counter()
        seen = []  # the loop's lines; "resumed from step N" says this call did not train from 0

        def tee(msg, seen=seen):
            seen.append(msg)
            log(msg)

        result = train(cfg, Path(args.workdirs) / name, progress=not args.no_progress, log=tee)
        resumed = [int(m.split()[3]) for m in seen if m.startswith("resumed from step ")]
        out[name] = {"config": cfg.to_dict(), "steps": int(result.state.step),
                     "resumed_from_step": resumed[0] if resumed else 0,
                     "seconds": time.perf_counter() - t0,  # this call only (the steps after resumed_from_step)
                     "load_after": os.getloadavg(), "last": result.history[-1] if result.history else None}
        log(f"trained {name}: {out[name]['steps']} steps in {out[name]['seconds']:.0f} s")
    return out


# ----------------------------------------------------------------------------- score

def stage_score(args, log):
    """Every indicator, one at a time; each finished column is kept in ``<out>/score_partial.npz``
    so a killed run resumes where it stopped (the file goes once the CSV is written)."""
    from fbnas_jax import scoring
    from fbnas_jax.indicators import training_free
    from fbnas_jax.indicators.supernet import cpi_from_scores
    from fbnas_jax.spaces import get
    from fbnas_jax.training.loop import load_data, load_run

    space = get("nb101")
    gt, n = _load_truth(args)
    enc = gt.encodings[:n]
    names = list(_configs(args))
    runs = {m: load_run(Path(args.workdirs) / m) for m in names}
    data = load_data(runs["fair"].config)
    ctx_kw = dict(eval_batch_size=args.eval_batch_size, mc_samples=args.mc_samples,
                  mc_batch_size=args.mc_batch_size, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "score_partial.npz"
    # what the values depend on; cells are scored independently, so columns of the first N >= n
    # cells serve a smaller n (``--cells``) too
    setup = {"ctx": ctx_kw, "options": args.indicator_options, "steps": {m: r.step for m, r in runs.items()}}
    fingerprint = json.dumps(dict(setup, n=int(n)), sort_keys=True)
    cols, timings = {}, {}
    if partial.exists():
        saved = np.load(partial, allow_pickle=False)
        saved_setup = json.loads(str(saved["__fingerprint__"]))
        saved_n = int(saved_setup.pop("n"))
        if json.dumps(saved_setup, sort_keys=True) == json.dumps(setup, sort_keys=True) and saved_n >= n:
            cols = {k: saved[k][:n] for k in saved.files if not k.startswith("__")}
            timings = {k: dict({"cells": saved_n}, **t) for k, t in json.loads(str(saved["__timings__"])).items()}
            log(f"resuming: {len(cols)} columns already scored on {saved_n} cells, {n} used ({', '.join(cols)})")
    ctx = {}

    def context(m):
        if m not in ctx:
            c = scoring.make_context(runs[m], data, fresh_init=(m == "fair"), **ctx_kw)
            ctx[m] = dataclasses.replace(c, options={**c.options, **args.indicator_options}) if m == "fair" else c
        return ctx[m]

    baselines = [b for b in args.baselines.split(",") if b]
    plan = [("bnnas", "gamma", "gamma_bnnas"), ("fair", "gamma", "gamma_fair"), ("fair", "trainability", "trainability")]
    fwd = [k for k in args.supernet_indicators.split(",") if k]
    missing = {"expressivity", "uncertainty"} - set(fwd)
    if missing:
        raise SystemExit(f"--supernet-indicators must include {sorted(missing)} (CPI needs them)")
    plan += [("fair", k, k) for k in fwd] + [("fair", b, b) for b in baselines]
    if "fair_fairnas" in names:
        plan += [("fair_fairnas", k, f"fairnas_{k}") for k in ("gamma", "trainability", "expressivity", "uncertainty")]
    for m, indicator, column in plan:
        if column in cols:
            continue
        res = scoring.score_architectures(context(m), [indicator], enc, chunk_size=args.chunk_size,
                                          progress=not args.no_progress, log=log)
        cols[column] = res[indicator]
        timings[column] = dict(res.timings.get(indicator, {}), load=os.getloadavg(), cells=int(n))
        np.savez(partial, __fingerprint__=fingerprint, __timings__=json.dumps(timings), **cols)
        log(f"scored {column} ({m}): {timings[column].get('compile_s', 0):.0f} s compile, "
            f"{timings[column].get('run_s', 0):.0f} s run")
    cols["cpi"] = cpi_from_scores(cols)  # ranks over the scored cells
    if "fair_fairnas" in names:
        cols["fairnas_cpi"] = cpi_from_scores({k: cols[f"fairnas_{k}"] for k in ("expressivity", "trainability",
                                                                               "uncertainty")})
    params_m, flops_m = space.costs(enc)  # the benchmark's network (stem 128, 3x3 modules)
    cols["params_m"], cols["flops_m"] = params_m, flops_m
    path = out / "nb101_cifar10_scores.csv"
    order = list(cols)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "nb101_hash"] + order)
        for i in range(n):
            w.writerow([gt.archs[i], space.key(enc[i])] + [f"{cols[c][i]:.6g}" for c in order])
    log(f"wrote {path}")
    partial.unlink()
    used = {b: training_free.resolve_options(b, context("fair")) for b in baselines}
    return {"num_cells": int(n), "timings": timings, "options": context("fair").options,
            "baseline_options_used": used, "columns": order, "supernets": names,
            "checkpoint_steps": {m: r.step for m, r in runs.items()}}


# ----------------------------------------------------------------------------- analyze

def _rank_among(acc: np.ndarray, value: float) -> int:
    """1 = the most accurate cell of the set."""
    return int(np.sum(acc > value)) + 1


def _search_table(args, space, enc, acc, scores, log):
    """Table 3 analogue: the EA restricted to the scored cells, per method and seed."""
    from fbnas_jax.search import ReferenceRankObjective, evolutionary_search

    lookup = {space.key(e): i for i, e in enumerate(enc)}

    def column(name):
        col = scores[name]
        return lambda e: np.asarray([col[lookup[space.key(x)]] for x in e])

    objectives = {
        "FBN-NAS (CPI)": lambda: ReferenceRankObjective(
            {c: column(c) for c in ("expressivity", "trainability", "uncertainty")}, enc, space=space),
        "BN-NAS (gamma)": lambda: column("gamma_bnnas"),
        "gamma (fair supernet)": lambda: column("gamma_fair"),
        "NASWOT": lambda: column("naswot") if "naswot" in scores else None,
    }
    ea = dict(population=args.search_population, top_k=max(2, args.search_population // 4),
              mutations=args.search_population // 2, crossovers=args.search_population // 2,
              generations=args.search_generations, space=space, candidates=enc)
    table = {}
    for label, make in objectives.items():
        obj = make()
        if obj is None:
            continue
        picks, ranks, evals, secs = [], [], [], []
        for seed in range(args.search_seeds):
            r = evolutionary_search(obj, np.random.default_rng(seed), **ea)
            i = lookup[space.key(r.encoding)]
            picks.append(float(acc[i]))
            ranks.append(_rank_among(acc, acc[i]))
            evals.append(r.n_evaluated)
            secs.append(r.wall_s)
        table[label] = _summary(picks, ranks, f"EA {ea['population']}x{ea['generations']} over the cells, "
                                              f"{args.search_seeds} seeds", evals, secs)
    rng = np.random.default_rng(12345)
    picks = [float(acc[i]) for i in rng.integers(0, len(acc), args.search_seeds)]
    table["random pick"] = _summary(picks, [_rank_among(acc, a) for a in picks],
                                    f"one uniformly random cell, {args.search_seeds} seeds", [1] * len(picks), [0.0])
    log("search table done")
    return table


def _summary(picks, ranks, protocol, evals, secs):
    return {"acc_mean": float(np.mean(picks)), "acc_std": float(np.std(picks)),
            "rank_mean": float(np.mean(ranks)), "rank_std": float(np.std(ranks)), "picks": picks, "ranks": ranks,
            "n_evaluated_mean": float(np.mean(evals)), "search_s_mean": float(np.mean(secs)), "protocol": protocol}


def stage_analyze(args, log, meta):
    from fbnas_jax.bench import correlation, plots
    from fbnas_jax.search import ReferenceRankObjective, evolutionary_search
    from fbnas_jax.spaces import get

    space = get("nb101")
    out = Path(args.out)
    gt, n = _load_truth(args)
    table = correlation.read_scores_csv(out / "nb101_cifar10_scores.csv", space="nb101")
    ti, qi = gt.align(table.encodings)
    if len(ti) != len(table):
        raise SystemExit(f"{len(table) - len(ti)} scored cells are not in {args.truth}")
    enc = gt.encodings[ti]
    truth_cols = [c for c in gt.column_names if c.startswith("val_acc_ep")]
    truth = {c: gt.column(c)[ti] for c in truth_cols}
    scores = {k: np.asarray(v)[qi] for k, v in table.columns.items()}
    acc = truth[TRUTH]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", correlation.NaNScoreWarning)
        warnings.simplefilter("ignore", correlation.MissingTruthWarning)
        rows = correlation.correlate(scores, truth, archs=[table.archs[i] for i in qi])
    summary = {"correlation": [r.to_dict() for r in rows]}
    main = {r.indicator: r.kendall_tau for r in rows if r.column == TRUTH}
    plots.tau_bar_chart(main, out / "fig_kendall_tau.png", column=TRUTH,
                        title=f"Kendall tau vs NB101 {TRUTH} ({len(acc)} cells)")
    for col, label in (("gamma_bnnas", "gamma (BN-NAS supernet)"), ("gamma_fair", "gamma (fair supernet)"),
                       ("cpi", "CPI (fair supernet)")):
        plots.scatter_plot(scores[col], acc, out / f"fig_{col}.png", color=scores["params_m"],
                           color_label="params (M)", xlabel=label, ylabel=f"{TRUTH}",
                           title=f"NB101: {label} vs validation accuracy")
    summary["table3"] = _search_table(args, space, enc, acc, scores, log)
    # The EA under a parameter limit (CPI), the paper's constrained setting.
    limit = args.max_params or float(np.median(scores["params_m"]))
    lookup = {space.key(e): i for i, e in enumerate(enc)}
    obj = ReferenceRankObjective({c: (lambda e, c=c: np.asarray([scores[c][lookup[space.key(x)]] for x in e]))
                                  for c in ("expressivity", "trainability", "uncertainty")}, enc, space=space)
    picks, ranks, params, evals, secs = [], [], [], [], []
    for seed in range(args.search_seeds):
        r = evolutionary_search(obj, np.random.default_rng(seed), population=args.search_population,
                                generations=args.search_generations, top_k=max(2, args.search_population // 4),
                                mutations=args.search_population // 2, crossovers=args.search_population // 2,
                                max_params=limit, space=space, candidates=enc)
        i = lookup[space.key(r.encoding)]
        picks.append(float(acc[i]))
        ranks.append(_rank_among(acc, acc[i]))
        params.append(r.params_m)
        evals.append(r.n_evaluated)
        secs.append(r.wall_s)
    feasible = scores["params_m"] <= limit
    summary["constrained_ea"] = dict(
        _summary(picks, ranks, f"CPI EA, params <= {limit:.3f} M (the median cell's), {args.search_seeds} seeds",
                 evals, secs),
        max_params=limit, pick_params_m=params, feasible_cells=int(feasible.sum()),
        best_feasible_acc=float(acc[feasible].max()))
    summary["best_acc"] = float(acc.max())
    summary["num_cells"] = int(len(acc))
    return summary


def write_markdown(path: Path, meta: dict) -> None:
    a = meta.get("analyze", {})
    train = meta.get("train", {})
    fair = train.get("fair", {}).get("config", {})
    lines = [f"# NB101 CIFAR-10 benchmark ({meta['date']}, {meta['device']['device']}, JAX {meta['device']['jax']}, "
             f"preset {meta['args_by_stage'].get('analyze', {}).get('preset')})", "",
             f"Supernets: {fair.get('model')} (fair), BN-NAS alike with bn_mode=bnnas; data "
             f"{fair.get('data', {}).get('source')} (subset {fair.get('data', {}).get('subset')}), "
             "training steps / s of the last call: " + ", ".join(
                 f"{k} {v['steps']} / {v['seconds']:.0f}"
                 + (f" (resumed at step {v['resumed_from_step']})" if v.get("resumed_from_step") else "")
                 for k, v in train.items())
             + f" (load {train.get('fair', {}).get('load_after', [float('nan')])[0]:.1f}). "
             f"{a.get('num_cells')} cells of the NB101 subset; truth `{TRUTH}` (one run, validation).", "",
             "Scoring time per column (s, compile + run; 1-min load average when it finished): " + ", ".join(
                 f"{k} {t.get('compile_s', 0) + t.get('run_s', 0):.0f} ({t['load'][0]:.1f}"
                 + (f"; {t['cells']} cells" if t.get("cells", a.get("num_cells")) != a.get("num_cells") else "") + ")"
                 for k, t in meta.get("score", {}).get("timings", {}).items() if "load" in t) + ".", "",
             "| indicator | n | Kendall tau | Spearman | top-10% precision |", "|---|---|---|---|---|"]
    for r in a.get("correlation", []):
        if r["column"] == TRUTH:
            tau = "nan" if r["kendall_tau"] is None else f"{r['kendall_tau']:.3f}"
            rho = "nan" if r["spearman_rho"] is None else f"{r['spearman_rho']:.3f}"
            prec = "nan" if r["top_precision"] is None else f"{r['top_precision']:.3f}"
            lines.append(f"| {r['indicator']} | {r['n']} | {tau} | {rho} | {prec} |")
    lines += ["", f"Table 3 analogue (search restricted to the {a.get('num_cells')} cells; validation accuracy "
                  f"of the pick, its rank among them (1 = best; best {100 * a.get('best_acc', float('nan')):.2f} %)):",
              "", "| method | val acc % | rank | archs scored | protocol |", "|---|---|---|---|---|"]
    for k, t in list(a.get("table3", {}).items()) + [("CPI, params-limited EA", a.get("constrained_ea"))]:
        if not t:
            continue
        lines.append(f"| {k} | {100 * t['acc_mean']:.2f} ± {100 * t['acc_std']:.2f} | {t['rank_mean']:.1f} ± "
                     f"{t['rank_std']:.1f} | {t['n_evaluated_mean']:.0f} | {t['protocol']} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    from fbnas_jax.runtime import device_summary, enable_compilation_cache

    enable_compilation_cache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "nb101_cifar10_scores.csv.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    stages = args.stages.split(",")
    meta.update({"date": dt.date.today().isoformat(), "device": device_summary()})
    meta.setdefault("args_by_stage", {}).update({s: vars(args) for s in stages})
    t0 = time.perf_counter()
    log = print
    if "train" in stages:
        meta["train"] = stage_train(args, log)
    if "score" in stages:
        s0 = time.perf_counter()
        meta["score"] = stage_score(args, log)
        meta["score"]["seconds"] = time.perf_counter() - s0
        meta["score"]["load_after"] = os.getloadavg()
    if "analyze" in stages:
        meta["analyze"] = stage_analyze(args, log, meta)
        write_markdown(out / "nb101_cifar10.md", meta)
    meta["seconds_this_call"] = time.perf_counter() - t0
    meta_path.write_text(json.dumps(meta, indent=2, default=str))
    print(f"wrote {meta_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
