"""TE-NAS / TEG-NAS searches on NB201 CIFAR-10 (issue 11): pick accuracy over seeds and search time.

Methods (``--methods``, all training-free, on freshly initialised NB201 supernets):

* ``tenas_prune``: TE-NAS pruning (``ntk_cond`` + ``linear_regions_tenas``, TE-NAS's count on a thin
  net and 3x3 crops; ``linear_regions`` where that is not registered: it saturates on full images),
  :func:`fbnas_jax.commands.search.run_prune`;
* ``teg_prune``: the same loop with TEG's three indicators (``--teg-indicators``);
* ``teg_ea``: TEG evolution (regularized evolution, parent = lowest rank sum of the three),
  :func:`fbnas_jax.search.evolution.rank_sum_evolution`;
* ``naswot_ea``: the same evolution driven by NASWOT alone (a baseline run at the same scale).

FBN-NAS (CPI) and BN-NAS (gamma) need trained supernets: their rows are *reused* from
``benchmarks/results/cpu_old_recipe/nb201_cifar10.md`` (its protocol is stated next to them), not rerun.

Presets: ``smoke`` (seconds-scale pipeline check), ``cpu`` (what this 2-core machine allows: C=4, N=1, CIFAR-10 images average-pooled
to 16x16, NTK batch 16, generalization 16 + 16 images, 3 repeats; evolution population 32,
sample 8, 64 steps; 5 seeds) and ``gpu`` (TE-NAS / TEG-NAS settings: C=16, N=5, 32x32, NTK
batch 72, 1,000 inputs, 3 repeats; evolution population 256, sample 64 and -- to fit a device
call -- 200 steps instead of 1,000; an ESTIMATE, never run). Results (JSON, rewritten after every
run, so a cut-off run keeps what finished) and a markdown table go to ``--out``.

    python benchmarks/teg_searches.py --preset cpu --out benchmarks/results/teg_searches
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESETS = {
    "smoke": dict(channels=4, cells=1, image_size=16, bn_mode="bnnas", repeats=1,
                  batch={"ntk_cond": 8, "linear_regions": 16}, teg_batch={}, prune_chunk=8, prune_execution="map",
                  population=6, sample=3, steps=4, seeds=1),
    "cpu": dict(channels=4, cells=1, image_size=16, bn_mode="bnnas", repeats=3,
                batch={"ntk_cond": 16, "linear_regions": 100}, teg_batch={"teg_generalization": 16}, prune_chunk=8,
                prune_execution="map",
                population=32, sample=8, steps=64, seeds=5),
    "gpu": dict(channels=16, cells=5, image_size=32, bn_mode="bnnas", repeats=3,
                batch={"ntk_cond": 72, "linear_regions": 1000}, teg_batch={}, prune_chunk=16, prune_execution="vmap",
                population=256, sample=64, steps=200, seeds=5),
}
METHODS = ("tenas_prune", "teg_prune", "teg_ea", "naswot_ea")
TRUTH_COLUMN = "cifar10_test_200ep"
PAPERS = {"tenas_prune": "TE-NAS 93.9 ± 0.47, 1,558 GPU-s", "teg_prune": "TE-NAS + TEG 93.94 ± 0.2, 3,330.5 GPU-s",
          "teg_ea": "Evolution + TEG 91.00 ± 0.33, 9,939.5 GPU-s", "naswot_ea": "NASWOT (random) 91.78 ± 1.45"}
#: rows of benchmarks/results/cpu_old_recipe/nb201_cifar10.md (Table 2), reused as they are
REUSED = [
    ("FBN-NAS (cpi)", "93.07 ± 0.39", "43.40", "best of 100 of a 300-arch pool by CPI of a trained C=8 N=1 fair supernet, 5 seeds"),
    ("BN-NAS (gamma_bnnas)", "92.93 ± 0.79", "0.00", "best of 100 of the pool by gamma of a trained C=8 N=1 supernet, 5 seeds"),
    ("NASWOT", "93.21 ± 0.29", "6.43", "best of 100 of the pool, C=8 N=1 32x32, 5 seeds"),
]


def _teg_default() -> list[str]:
    try:
        from fbnas_jax.indicators import teg
    except ImportError:
        return []
    return list(getattr(teg, "TEG_COMPONENTS", ()))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--out", default="benchmarks/results/teg_searches")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (preset)")
    p.add_argument("--teg-indicators", default=None,
                   help="comma-separated TEG indicators (default: fbnas_jax.indicators.teg.TEG_COMPONENTS)")
    p.add_argument("--data", default=os.environ.get("FBNAS_CIFAR10_ARCHIVE"), help="CIFAR-10 archive")
    p.add_argument("--truth", default=os.environ.get("FBNAS_NB201_CSV"), help="NB201 ground-truth CSV")
    p.add_argument("--deadline-s", type=float, default=None, help="start no run after this many seconds")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--report", action="store_true", help="only rewrite the markdown from the results JSON")
    args = p.parse_args(argv)
    args.cfg = dict(PRESETS[args.preset])
    if args.seeds is not None:
        args.cfg["seeds"] = args.seeds
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        p.error(f"unknown methods {bad}; choose from {METHODS}")
    args.teg = ([x.strip() for x in args.teg_indicators.split(",") if x.strip()] if args.teg_indicators
                else _teg_default())
    if not args.report and (not args.data or not args.truth):
        p.error("set FBNAS_CIFAR10_ARCHIVE and FBNAS_NB201_CSV (or --data / --truth)")
    return args


def load_images(cfg, data: str):
    """CIFAR-10 training split, average-pooled to the preset's size; returns (dataset, pooled images uint8-scale)."""
    from fbnas_jax.data import load_dataset

    ds = load_dataset(data, cache_dir=os.environ.get("FBNAS_CACHE_DIR"))
    x = ds.train_images.astype(np.float32)
    f = x.shape[1] // cfg["image_size"]
    if f > 1:
        x = x.reshape(x.shape[0], cfg["image_size"], f, cfg["image_size"], f, 3).mean(axis=(2, 4))
    return ds, x


class _PooledData:
    """The dataset view ``run_prune`` reads: pooled training images, labels, mean/std."""

    def __init__(self, ds, images):
        self.train_images, self.train_labels = images, ds.train_labels
        self.mean, self.std, self.num_classes = ds.mean, ds.std, ds.num_classes


def ea_objective(net, data, names, cfg, seed):
    """``objective(enc) -> {name: scores}`` of registered indicators on a fresh supernet (engine-scored)."""
    import jax

    from fbnas_jax import scoring
    from fbnas_jax.commands.search import _prune_images
    from fbnas_jax.indicators.base import ScoringContext
    from fbnas_jax.spaces import of_network

    sizes = {**cfg["batch"], **cfg["teg_batch"]}
    opts = {n: {"repeats": cfg["repeats"], **({"batch_size": sizes[n]} if n in sizes else {})} for n in names}
    opts.setdefault("naswot", {"batch_size": 64})
    # images the context needs: every repeat's batch (generalization: a training and a held-out batch)
    per = max([64] + [o.get("batch_size", 0) * (2 if n == "teg_generalization" else 1) for n, o in opts.items()])
    images, labels = _prune_images(data, per * cfg["repeats"], seed)
    variables = of_network(net).network().init_variables(net, int(seed), images.shape[1:])
    ctx = ScoringContext(net=net, init_variables=variables, images=images, labels=labels,
                         key=jax.random.key(int(seed)), options=opts)
    scorer = scoring.Scorer(ctx, chunk_size=1, progress=False)  # evolution scores one child per step
    return lambda enc: {n: scorer(n, enc) for n in names}


def run_one(method, args, net, data, gt, seed):
    from fbnas_jax.commands.search import _tenas_set, run_prune
    from fbnas_jax.search.evolution import rank_sum_evolution

    cfg = args.cfg
    t0 = time.perf_counter()
    if method.endswith("_prune"):
        names = list(_tenas_set()) if method == "tenas_prune" else args.teg
        batch = {n: {"batch_size": b} for n, b in {**cfg["batch"], **cfg["teg_batch"]}.items() if n in names}
        res = run_prune(net, data, names, seed=seed, repeats=cfg["repeats"], batch=batch,
                        chunk_size=cfg["prune_chunk"], execution=cfg["prune_execution"],
                        progress=not args.no_progress, log=None)
        enc, n_eval, detail = res.encoding, res.n_evaluated, {"rounds": res.to_dict()["rounds"]}
    else:
        names = args.teg if method == "teg_ea" else ["naswot"]
        objective = ea_objective(net, data, names, cfg, seed)
        res = rank_sum_evolution(objective, np.random.default_rng(seed), population=cfg["population"],
                                 sample=cfg["sample"], steps=cfg["steps"])
        enc, n_eval, detail = res.encoding, res.n_evaluated, {"scores": res.scores}
    wall = time.perf_counter() - t0
    from fbnas_jax.spaces import nb201

    acc = float(gt.values(TRUTH_COLUMN, np.asarray(enc)[None])[0])
    return {"method": method, "seed": seed, "indicators": names, "arch": nb201.encoding_to_string(enc),
            "encoding": [int(x) for x in enc], "acc": acc, "search_s": wall, "n_evaluated": int(n_eval),
            "load": list(os.getloadavg()), **detail}


def summarise(runs):
    out = {}
    for m in METHODS:
        rs = [r for r in runs if r["method"] == m]
        if rs:
            acc = np.asarray([r["acc"] for r in rs])
            t = np.asarray([r["search_s"] for r in rs])
            out[m] = {"n": len(rs), "acc_mean": float(acc.mean()), "acc_std": float(acc.std()),
                      "search_s_mean": float(t.mean()), "archs": [r["arch"] for r in rs]}
    return out


def write(args, meta, runs):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(runs)
    loads = [r["load"][0] for r in runs]
    if loads:
        meta["load_range"] = f"{min(loads):.1f}-{max(loads):.1f}"
    (out / f"{args.preset}.json").write_text(json.dumps({**meta, "summary": summary, "runs": runs}, indent=1))
    cfg = args.cfg
    lines = [f"# TE-NAS / TEG-NAS searches on NB201 CIFAR-10 ({meta['date']}, {meta['device']}, JAX {meta['jax']})", "",
             f"Preset `{args.preset}`: C={cfg['channels']}, N={cfg['cells']}, {cfg['image_size']}x{cfg['image_size']} "
             f"CIFAR-10 training images, bn_mode={cfg['bn_mode']}, {cfg['repeats']} repeats, batches {cfg['batch']} "
             f"{cfg['teg_batch'] or ''}; evolution population {cfg['population']}, sample {cfg['sample']}, "
             f"{cfg['steps']} steps. TEG indicators: {args.teg or 'not available'}. Truth: {TRUTH_COLUMN}. "
             f"Load average at the runs: {meta.get('load_range', '?')} (2 shared cores: times are upper bounds).", "",
             "| method | test acc % (mean ± std) | seeds | search s (mean) | paper (CIFAR-10) |", "|---|---|---|---|---|"]
    for m, s in summary.items():
        lines.append(f"| {m} | {s['acc_mean']:.2f} ± {s['acc_std']:.2f} | {s['n']} | {s['search_s_mean']:.0f} | "
                     f"{PAPERS[m]} |")
    lines += ["", "Protocol: each search starts from a fresh supernet initialised with its seed (pruning: repeat r from "
              "seed 1000 * seed + r; evolution: the indicators' own repeats from the seed) and training images drawn "
              "with that seed; linear_regions_tenas keeps TE-NAS's 3 x 1,000 3x3 crops on the thin C=1 net; pruning drops `none`, then per round "
              "measures every single-op removal (relative change, mean over repeats), ranks, prunes the op of "
              "lowest rank sum per edge (TE-NAS's prune_func_rank). Evolution: regularized (aging) evolution, "
              "parent = lowest rank sum within the sample, pick = best of the final population by the same rule. "
              "Search s = wall time of the whole search (data excluded, compilation included; later seeds reuse "
              "the XLA cache). The pick's accuracy is looked up in the NB201 table (best in the space 94.37).",
              "", "Reused from `benchmarks/results/cpu_old_recipe/nb201_cifar10.md` (trained supernets; a different protocol):", "",
              "| method | test acc % | search s | protocol |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in REUSED]
    (out / f"{args.preset}.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax

    out_json = Path(args.out) / f"{args.preset}.json"
    if args.report:
        saved = json.loads(out_json.read_text())
        write(args, {k: v for k, v in saved.items() if k not in ("summary", "runs")}, saved["runs"])
        return 0

    from fbnas_jax.groundtruth import load_ground_truth
    from fbnas_jax.models import nb201 as nb201_net
    from fbnas_jax.runtime import enable_compilation_cache

    enable_compilation_cache()  # every seed compiles the same programs: later seeds load them
    cfg = args.cfg
    t_start = time.perf_counter()
    ds, pooled = load_images(cfg, args.data)
    data = _PooledData(ds, pooled)
    gt = load_ground_truth(args.truth, columns=[TRUTH_COLUMN])
    net = nb201_net.build_network(channels=cfg["channels"], cells_per_stage=cfg["cells"], bn_mode=cfg["bn_mode"],
                                  num_classes=ds.num_classes)
    meta = {"date": dt.date.today().isoformat(), "device": jax.devices()[0].device_kind, "jax": jax.__version__,
            "preset": args.preset, "config": cfg, "teg_indicators": args.teg, "truth_column": TRUTH_COLUMN,
            "reused": REUSED, "papers": PAPERS}
    runs = json.loads(out_json.read_text())["runs"] if out_json.exists() else []
    done = {(r["method"], r["seed"]) for r in runs}
    methods = [m for m in args.methods if "teg" not in m or args.teg]
    for m in set(args.methods) - set(methods):
        print(f"skip {m}: no TEG indicators (fbnas_jax.indicators.teg missing; --teg-indicators)", flush=True)
    for seed in range(cfg["seeds"]):  # seeds outside: a run cut off by the deadline stays balanced
        for method in methods:
            if (method, seed) in done:
                continue
            if args.deadline_s is not None and time.perf_counter() - t_start > args.deadline_s:
                print(f"deadline: {method} seed {seed} not started", flush=True)
                continue
            r = run_one(method, args, net, data, gt, seed)
            runs.append(r)
            loads = [x for q in runs for x in q["load"][:1]]
            meta["load_range"] = f"{min(loads):.1f}-{max(loads):.1f}"
            write(args, meta, runs)
            print(f"{method} seed {seed}: {r['arch']} acc {r['acc']:.2f} in {r['search_s']:.0f} s "
                  f"(load {r['load'][0]:.1f})", flush=True)
    write(args, meta, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
