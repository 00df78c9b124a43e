"""NAS-Bench-201 / CIFAR-10 benchmark: train BN-NAS and FBN supernets, score, correlate, search.

Stages (each resumable; outputs under --out, default benchmarks/results):

1. ``train``: train a BN-NAS supernet (``bn_mode=bnnas``) and an FBN supernet (``bn_mode=fair``)
   BN-only on the CIFAR-10 archive (configs given by flags).
2. ``score``: score NB201 architectures with every indicator. Parameter-only indicators
   (``gamma_bnnas``, ``gamma_fair``, ``trainability``) and the cost columns cover all 15,625;
   forward/gradient indicators cover ``--pool`` architectures drawn uniformly (all 15,625 when
   ``--pool 15625``; on 2 CPU cores we use a smaller pool and say so). CPI ranks are taken
   over the scored pool. Writes ``nb201_cifar10_scores.csv`` (NaN = not scored) + sidecar JSON.
3. ``analyze``: Kendall tau / Spearman vs ground truth (Fig. 4), gamma scatter plots
   (Figs. 2, 3), top-10 table (Table 1) and the search table (Table 2), as JSON + markdown.

Example (CPU, see README "Results")::

    FBNAS_CIFAR10_ARCHIVE=../shared/data/cifar10/cifar10-jpeg.tar.gz \\
    python benchmarks/nb201_cifar10.py --truth ../shared/data/nasbench201/nb201_cifar10_accuracy.csv \\
        --fbn-config configs/fbn_cifar10_cpu.yaml --bnnas-config configs/bnnas_cifar10_cpu.yaml --pool 1000
"""
from __future__ import annotations

import argparse
import dataclasses
import csv
import datetime as dt
import json
import time
import warnings
from pathlib import Path

import numpy as np

SUPERNET_FWD = ("expressivity", "uncertainty", "supernet_accuracy")
BASELINES = ("naswot", "jacob_cov", "synflow", "snip", "grasp", "fisher", "grad_norm", "ntk_cond",
             "linear_regions")
TRUTH_COLUMN = "cifar10_test_200ep"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", default="train,score,analyze")
    p.add_argument("--fbn-config", default="configs/fbn_cifar10.yaml")
    p.add_argument("--bnnas-config", default="configs/bnnas_cifar10.yaml")
    p.add_argument("--workdirs", default="runs/nb201_cifar10", help="where supernet checkpoints go")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--truth", required=True, help="NB201 ground-truth CSV (arch + accuracy columns)")
    p.add_argument("--pool", type=int, default=15625, help="architectures for forward/gradient indicators")
    p.add_argument("--chunk-size", type=int, default=64)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--mc-samples", type=int, default=10)
    p.add_argument("--mc-batch-size", type=int, default=64)
    p.add_argument("--baselines", default=",".join(BASELINES))
    p.add_argument("--indicator-options", default="{}",
                   help='JSON per-indicator options, e.g. \'{"grasp": {"batch_size": 16}}\' (recorded)')
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--search-seeds", type=int, default=5)
    p.add_argument("--search-budget", type=int, default=100, help="archs per pool-restricted search")
    p.add_argument("--devices", default=None, help="'all' to shard over local devices")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- train

def stage_train(args, log):
    from fbnas_jax.config import load_config
    from fbnas_jax.training.loop import train

    out = {}
    for name, path in (("bnnas", args.bnnas_config), ("fair", args.fbn_config)):
        cfg = load_config(path)
        t0 = time.perf_counter()
        result = train(cfg, Path(args.workdirs) / name)
        out[name] = {"config": cfg.to_dict(), "steps": int(result.state.step), "seconds": time.perf_counter() - t0,
                     "last": result.history[-1] if result.history else None}
        log(f"trained {name}: {out[name]['steps']} steps in {out[name]['seconds']:.0f} s")
    return out


# ----------------------------------------------------------------------------- score

def _dataset_for(run):
    from fbnas_jax.training.loop import load_data

    return load_data(run.config)


def stage_score(args, log):
    from fbnas_jax import scoring
    from fbnas_jax.spaces import cost, nb201
    from fbnas_jax.training.loop import load_run

    all_enc = nb201.all_encodings()
    n = len(all_enc)
    rng = np.random.default_rng(args.seed)
    pool = np.sort(rng.choice(n, size=min(args.pool, n), replace=False))
    cols: dict[str, np.ndarray] = {}
    timings: dict[str, dict] = {}

    def put(name, values, rows=None):
        full = np.full(n, np.nan)
        full[slice(None) if rows is None else rows] = values
        cols[name] = full

    runs = {m: load_run(Path(args.workdirs) / m) for m in ("bnnas", "fair")}
    data = _dataset_for(runs["fair"])
    ctx_kw = dict(eval_batch_size=args.eval_batch_size, mc_samples=args.mc_samples,
                  mc_batch_size=args.mc_batch_size, seed=args.seed)
    ctx_b = scoring.make_context(runs["bnnas"], data, **ctx_kw)
    ctx_f = scoring.make_context(runs["fair"], data, fresh_init=True, **ctx_kw)
    ctx_f = dataclasses.replace(ctx_f, options={**ctx_f.options, **json.loads(args.indicator_options)})

    res = scoring.score_architectures(ctx_b, ["gamma"], all_enc, devices=args.devices)
    put("gamma@bnnas", res["gamma"])
    timings["gamma@bnnas"] = res.timings["gamma"]
    res = scoring.score_architectures(ctx_f, ["gamma", "trainability"], all_enc, devices=args.devices)
    put("gamma@fair", res["gamma"])
    put("trainability", res["trainability"])
    timings["gamma@fair"], timings["trainability"] = res.timings["gamma"], res.timings["trainability"]

    names = list(SUPERNET_FWD) + ["cpi"] + [b for b in args.baselines.split(",") if b]
    res = scoring.score_architectures(ctx_f, names, all_enc[pool], chunk_size=args.chunk_size,
                                      devices=args.devices, log=log)
    for name in names:
        put(name, res[name], pool)
        timings[name] = res.timings.get(name, {})
    params_m, flops_m = cost.nb201_costs(all_enc)
    cols["params_m"], cols["flops_m"] = params_m, flops_m

    order = ["gamma@bnnas", "gamma@fair", "trainability", "expressivity", "uncertainty", "cpi",
             "supernet_accuracy"] + [b for b in args.baselines.split(",") if b] + ["params_m", "flops_m"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "nb201_cifar10_scores.csv"
    archs = [nb201.encoding_to_string(e) for e in all_enc]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch"] + order)
        for i in range(n):
            w.writerow([archs[i]] + [f"{cols[c][i]:.6g}" for c in order])
    log(f"wrote {path}")
    from fbnas_jax.indicators import training_free

    used = {b: training_free.resolve_options(b, ctx_f) for b in args.baselines.split(",") if b}
    return {"pool_size": int(len(pool)), "pool_seed": args.seed, "timings": timings,
            "options": ctx_f.options, "baseline_options_used": used, "columns": order,
            "pool_note": "forward/gradient indicators and cpi scored on the pool only (NaN elsewhere); "
                         "cpi ranks are over the pool"}


# ----------------------------------------------------------------------------- analyze

def _topk_table(enc, acc, params, flops, score, k=10):
    from fbnas_jax.spaces import nb201

    ok = ~np.isnan(score)
    idx = np.flatnonzero(ok)[np.argsort(-score[ok], kind="stable")[:k]]
    counts = nb201.op_counts(enc[idx]).sum(axis=0)
    return {"op_counts": {op: int(c) for op, c in zip(nb201.OPS, counts)},
            "mean_params_m": float(params[idx].mean()), "mean_flops_m": float(flops[idx].mean()),
            "mean_acc": float(acc[idx].mean()), "archs": [nb201.encoding_to_string(e) for e in enc[idx]]}


def stage_analyze(args, log, score_meta):
    from fbnas_jax.bench import correlation, plots
    from fbnas_jax.groundtruth import load_ground_truth
    from fbnas_jax.search import evolutionary_search

    out = Path(args.out)
    table = correlation.read_scores_csv(out / "nb201_cifar10_scores.csv")
    gt = load_ground_truth(args.truth)
    ti, qi = gt.align(table.archs)
    enc = gt.encodings[ti]
    acc = gt.column(TRUTH_COLUMN)[ti]
    scores = {k: np.asarray(v)[qi] for k, v in table.columns.items()}
    summary: dict = {}
    # NaN = outside the scored pool (expected, so the per-architecture warnings are muted);
    # -inf (e.g. a singular NASWOT kernel) is a legitimate worst score and is ranked.
    pool = ~np.isnan(scores["cpi"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", correlation.NaNScoreWarning)
        full = correlation.correlate(scores, {TRUTH_COLUMN: acc}, archs=table.archs)
        on_pool = correlation.correlate({k: np.where(pool, v, np.nan) for k, v in scores.items()},
                                        {TRUTH_COLUMN: acc})
    rows = [{"indicator": f.indicator, "n": f.n, "kendall_tau": f.kendall_tau, "spearman_rho": f.spearman_rho,
             "top10_precision": f.top_precision, "kendall_tau_pool": p.kendall_tau}
            for f, p in zip(full, on_pool)]
    summary["correlation"] = rows
    plots.tau_bar_chart({r["indicator"]: r["kendall_tau_pool"] for r in rows}, out / "fig4_kendall_tau.png",
                        column=TRUTH_COLUMN, title="Kendall tau vs NB201 CIFAR-10 test acc (scored pool)")
    params, flops = scores["params_m"], scores["flops_m"]
    plots.scatter_plot(scores["gamma@bnnas"], acc, out / "fig2_gamma_bnnas.png", color=params,
                       color_label="params (M)", xlabel="gamma indicator (BN-NAS supernet)",
                       ylabel="test accuracy (%)", title="Fig. 2: gamma on the BN-NAS supernet")
    plots.scatter_plot(scores["gamma@fair"], acc, out / "fig3_gamma_fair.png", color=params,
                       color_label="params (M)", xlabel="gamma indicator (fair supernet)",
                       ylabel="test accuracy (%)", title="Fig. 3: gamma on the fair (FBN) supernet")
    summary["table1"] = {"gamma_bnnas (all 15,625)": _topk_table(enc, acc, params, flops, scores["gamma@bnnas"]),
                         "gamma_bnnas (pool)": _topk_table(enc, acc, params, flops,
                                                           np.where(pool, scores["gamma@bnnas"], np.nan)),
                         "cpi (pool)": _topk_table(enc, acc, params, flops, scores["cpi"])}
    # Table 2: search. Pool-restricted best-of-B for every method (the pool is what was scored);
    # plus the real evolutionary search over all 15,625 for the parameter-only gamma.
    per_arch_s = {k: v.get("run_s", np.nan) / max(score_meta["pool_size"], 1)
                  for k, v in score_meta["timings"].items() if isinstance(v, dict)}
    methods = {"FBN-NAS (cpi)": "cpi", "BN-NAS (gamma_bnnas)": "gamma@bnnas", "NASWOT": "naswot",
               "random": None}
    pool_idx = np.flatnonzero(pool)
    table2 = {}
    for label, col in methods.items():
        picks = []
        for seed in range(args.search_seeds):
            rng = np.random.default_rng(1000 + seed)
            cand = rng.choice(pool_idx, size=min(args.search_budget, len(pool_idx)), replace=False)
            if col is None:
                best = cand[0]
            else:
                s = scores[col][cand]
                if col == "cpi":  # CPI ranks among the candidates themselves
                    from fbnas_jax.indicators.supernet import cpi_from_scores

                    s = cpi_from_scores({c: scores[c][cand] for c in ("expressivity", "trainability", "uncertainty")})
                best = cand[int(np.nanargmax(s))]
            picks.append(acc[best])
        comp = {"cpi": ("expressivity", "trainability", "uncertainty")}.get(col, (col,) if col else ())
        secs = float(sum(per_arch_s.get(c, 0.0) for c in comp) * args.search_budget)
        table2[label] = {"acc_mean": float(np.mean(picks)), "acc_std": float(np.std(picks)),
                         "search_s_est": secs, "picks": [float(a) for a in picks],
                         "protocol": f"best of {args.search_budget} pool archs, {args.search_seeds} seeds"}
    lookup = dict(zip(map(tuple, enc), scores["gamma@bnnas"]))
    picks, secs = [], []
    for seed in range(args.search_seeds):
        r = evolutionary_search(lambda e: np.array([lookup[tuple(x)] for x in e]), np.random.default_rng(seed))
        picks.append(float(gt.values(TRUTH_COLUMN, [r.arch])[0]))
        secs.append(r.wall_s)
    table2["BN-NAS (gamma_bnnas), EA over all 15,625"] = {
        "acc_mean": float(np.mean(picks)), "acc_std": float(np.std(picks)), "search_s_est": float(np.mean(secs)),
        "picks": picks, "protocol": f"SPOS/BN-NAS EA (50x20), {args.search_seeds} seeds, precomputed scores"}
    summary["table2"] = table2
    summary["best_in_space"] = float(np.nanmax(acc))
    return summary


def write_markdown(path: Path, meta: dict) -> None:
    a = meta.get("analyze", {})
    lines = [f"# NB201 CIFAR-10 benchmark ({meta['date']}, {meta['device']['device']}, JAX {meta['device']['jax']})",
             "", f"Configs: {meta['train']['fair']['config']['model']} (fair), BN-NAS alike with bn_mode=bnnas; pool "
             f"{meta.get('score', {}).get('pool_size')} archs; truth column {TRUTH_COLUMN}.", "",
             "| indicator | n | Kendall tau | tau on pool | Spearman | top-10% precision |", "|---|---|---|---|---|---|"]
    for r in a.get("correlation", []):
        lines.append(f"| {r['indicator']} | {r['n']} | {r['kendall_tau']:.3f} | {r['kendall_tau_pool']:.3f} | "
                     f"{r['spearman_rho']:.3f} | {r['top10_precision']:.3f} |")
    lines += ["", "Table 1 (top-10 architectures):", "", "| ranking | none | skip | conv1x1 | conv3x3 | pool | "
              "params M | FLOPs M | acc % |", "|---|---|---|---|---|---|---|---|---|"]
    for k, t in a.get("table1", {}).items():
        c = t["op_counts"]
        lines.append(f"| {k} | {c['none']} | {c['skip_connect']} | {c['nor_conv_1x1']} | {c['nor_conv_3x3']} | "
                     f"{c['avg_pool_3x3']} | {t['mean_params_m']:.3f} | {t['mean_flops_m']:.1f} | {t['mean_acc']:.2f} |")
    lines += ["", "Table 2 (search, test accuracy of the pick, mean ± std over seeds):", "",
              "| method | acc % | search s | protocol |", "|---|---|---|---|"]
    for k, t in a.get("table2", {}).items():
        lines.append(f"| {k} | {t['acc_mean']:.2f} ± {t['acc_std']:.2f} | {t['search_s_est']:.2f} | {t['protocol']} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    from fbnas_jax.runtime import device_summary, enable_compilation_cache

    enable_compilation_cache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "nb201_cifar10_scores.csv.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    stages = args.stages.split(",")
    meta.update({"date": dt.date.today().isoformat(), "device": device_summary()})
    # each stage keeps the arguments it ran with (a later analyze-only call must not
    # overwrite the scoring settings)
    meta.setdefault("args_by_stage", {}).update({stage: vars(args) for stage in stages})
    t0 = time.perf_counter()
    if "train" in stages:
        meta["train"] = stage_train(args, print)
    if "score" in stages:
        s0 = time.perf_counter()
        meta["score"] = stage_score(args, print)
        meta["score"]["seconds"] = time.perf_counter() - s0
    if "analyze" in stages:
        meta["analyze"] = stage_analyze(args, print, meta["score"])
        write_markdown(out / "nb201_cifar10.md", meta)
    meta["seconds_this_call"] = time.perf_counter() - t0
    meta_path.write_text(json.dumps(meta, indent=2, default=str))
    print(f"wrote {meta_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
