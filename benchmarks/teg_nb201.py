"""Kendall tau / Spearman of the TEG indicators vs NB201 CIFAR-10 ground truth (issue 11).

Scores a fixed-seed random sample of NB201 architectures (``--preset gpu``: all 15,625) with

* ``ntk_cond``             -- TE-NAS trainability (negated NTK condition number), batch 64, 3 inits;
* ``teg_generalization``   -- TEG-NAS generalization (-MSE of NTK kernel regression), 64 + 64, 3 inits;
* ``linear_regions_tenas`` -- TE-NAS expressivity on the thin net (3 x 1,000 3x3 crops), 3 inits;
* ``linear_regions``       -- our older count on the scoring network itself (full images), for comparison;

all on TE-NAS's NTK network: the NB201 supernet with C=3, N=1 (one cell per stage), stem,
BN only inside conv ops (``bn_mode=bnnas``), 32x32 CIFAR-10 training images normalised; then
the TEG rank combination (mean of the three TEG ranks over the scored set) and TE-NAS's
(ntk_cond + linear_regions_tenas). Rows are appended to ``<out>.csv`` as they are scored (a
rerun with the same arguments resumes), so a time-boxed CPU run (``--max-minutes``) still
analyses what it scored. Writes ``<out>.json`` and ``<out>.md`` (protocol, load, date, JAX).

    export FBNAS_CIFAR10_ARCHIVE=../shared/data/cifar10/cifar10-jpeg.tar.gz
    export FBNAS_NB201_CSV=../shared/data/nasbench201/nb201_cifar10_accuracy.csv
    nohup nice -n 10 python benchmarks/teg_nb201.py --preset cpu --max-minutes 25 &   # CPU, a few hundred
    python benchmarks/teg_nb201.py --preset gpu                                        # all 15,625 (device)
    python benchmarks/teg_nb201.py --analyze-only                                      # tables from the CSV
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

PRESETS = {
    # CPU: a few hundred archs, per-architecture execution (lax.map, only the chosen ops run).
    # The NTK batch is 16, not the papers' 64: B per-sample backward passes of a batch of B cost
    # B^2 sample-backwards (64: ~60 s per architecture on this shared 2-core CPU; 16: ~16x less)
    "cpu": {"archs": 400, "chunk": 4, "execution": "map", "ntk_batch": 16},
    # GPU: the whole space with the papers' batch 64, vmapped chunks (every op computed)
    "gpu": {"archs": 15625, "chunk": 32, "execution": "vmap", "ntk_batch": 64},
    # smoke: a quick end-to-end check of the script
    "smoke": {"archs": 6, "chunk": 2, "execution": "map", "ntk_batch": 8},
}
COLUMNS = ("ntk_cond", "teg_generalization", "linear_regions_tenas", "linear_regions")
TRUTH = "cifar10_test_200ep"
PAPER = {  # Kendall tau with test accuracy, as published (orientation of the raw indicators)
    "ntk_cond": "TE-NAS: condition number -0.42 (ours is negated: expect +0.42); TEG-NAS Fig. 1: -0.59 (expect +0.59)",
    "linear_regions_tenas": "TE-NAS: #linear regions 0.50",
    "teg_generalization": "TEG-NAS Fig. 1: MSE negatively correlated with test accuracy (no number in the text)",
    "teg": "TEG-NAS Fig. 1: sum of rankings (no number in the text)",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--archs", type=int, default=None, help="number of random architectures (default: preset)")
    p.add_argument("--seed", type=int, default=0, help="architecture sample, images, inits")
    p.add_argument("--chunk", type=int, default=None, help="architectures per compiled call (default: preset)")
    p.add_argument("--ntk-batch", type=int, default=None,
                   help="batch of ntk_cond and of each teg_generalization half (default: preset; papers: 64)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop scoring after this long, then analyse")
    p.add_argument("--out", default=None, help="output prefix: <out>.csv (rows; a rerun resumes it), <out>.json, "
                                                "<out>.md (default: benchmarks/results/teg_nb201/teg_nb201_<preset>)")
    p.add_argument("--analyze-only", action="store_true", help="only recompute the tables from <out>.csv")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    preset = PRESETS[args.preset]
    args.archs = preset["archs"] if args.archs is None else args.archs
    args.chunk = preset["chunk"] if args.chunk is None else args.chunk
    args.execution = preset["execution"]
    args.out = args.out or f"benchmarks/results/teg_nb201/teg_nb201_{args.preset}"
    args.ntk_batch = preset["ntk_batch"] if args.ntk_batch is None else args.ntk_batch
    if args.archs < 1 or args.chunk < 1 or args.ntk_batch < 2:
        p.error("--archs and --chunk must be >= 1, --ntk-batch >= 2")
    return args


def _env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"error: set {name} (see the module docstring)")
    return value


def sample_encodings(n: int, seed: int) -> np.ndarray:
    from fbnas_jax.spaces import nb201

    allenc = nb201.all_encodings()
    rng = np.random.default_rng([seed, 0x7E6])
    return allenc[np.sort(rng.choice(len(allenc), size=min(n, len(allenc)), replace=False))]


def build_scorers(seed: int, execution: str, ntk_batch: int):
    """The four compiled per-chunk scorers and the protocol they implement."""
    import jax

    from fbnas_jax.data import load_dataset, normalize
    from fbnas_jax.indicators import REGISTRY, teg
    from fbnas_jax.indicators.base import ScoringContext
    from fbnas_jax.models import nb201 as nb201_model

    ds = load_dataset(_env("FBNAS_CIFAR10_ARCHIVE"))
    rng = np.random.default_rng([seed, 0xDA7A])
    idx = rng.choice(ds.num_train, size=3000, replace=False)  # random order: batches are random draws
    images = normalize(ds.train_images[idx], ds.mean, ds.std).astype(np.float32)
    labels = ds.train_labels[idx].astype(np.int32)
    net = nb201_model.build_network(channels=3, cells_per_stage=1, bn_mode="bnnas", num_classes=10,
                                    strategy="select" if execution == "vmap" else "switch")
    key = jax.random.key(seed)
    init = nb201_model.init_variables(net, jax.random.fold_in(key, 0), images.shape[1:])
    options = {"ntk_cond": {"batch_size": ntk_batch}, "teg_generalization": {"batch_size": ntk_batch}}
    ctx = ScoringContext(net=net, init_variables=init, images=images, labels=labels, key=key, options=options)
    scorers = {name: teg.map_archs(REGISTRY[name].build_arch(ctx), execution, REGISTRY[name].finish_fn(ctx))
               for name in COLUMNS}
    from fbnas_jax.indicators import training_free

    options = {n: (teg.resolve_options(n, ctx) if n in teg.DEFAULT_OPTIONS else training_free.resolve_options(n, ctx))
               for n in COLUMNS}
    protocol = {
        "network": "NB201 supernet C=3, N=1 (one cell per stage), stem, bn_mode=bnnas, 10 classes "
                   "(TE-NAS/TEG-NAS NTK network); linear_regions_tenas on the thin C=1 one-cell net",
        "images": "3,000 CIFAR-10 training images (seeded), normalised, 32x32, no augmentation; "
                  f"ntk_cond: batch r of {ntk_batch} per init; teg_generalization: train batch 2r and disjoint "
                  f"held-out batch 2r+1 of {ntk_batch} (papers: 64); linear_regions_tenas: 3 x 1,000 random 3x3 one-channel crops of them; "
                  "linear_regions: first 1,000 images per init",
        "inits": "3 per indicator (ntk_cond and teg_generalization share them); conv He-normal fan-in, "
                 "BN scale 1 / shift 0, head LeCun-normal",
        "options": options,
        "execution": execution,
        "seed": seed,
    }
    return scorers, protocol


def score(args, out: Path):
    import jax
    from tqdm import tqdm

    from fbnas_jax.spaces import nb201

    encodings = sample_encodings(args.archs, args.seed)
    csv_path = out.with_suffix(".csv")
    done = {}
    if csv_path.exists():
        with open(csv_path) as f:
            for row in csv.DictReader(f):
                done[row["arch"]] = row
    todo = [e for e in encodings if nb201.encoding_to_string(e) not in done]
    t_start = time.time()
    load_start = os.getloadavg()
    scorers, protocol = build_scorers(args.seed, args.execution, args.ntk_batch)
    setup_s = time.time() - t_start
    new = not csv_path.exists()
    f = open(csv_path, "a", newline="")
    writer = csv.writer(f)
    if new:
        writer.writerow(["arch", *COLUMNS])
    chunks = [todo[i:i + args.chunk] for i in range(0, len(todo), args.chunk)]
    t0, scored, stopped = time.time(), 0, False
    for chunk in tqdm(chunks, desc="TEG indicators", unit="chunk", disable=args.no_progress):
        if args.max_minutes is not None and time.time() - t_start > 60 * args.max_minutes:
            stopped = True
            break
        enc = np.asarray(chunk, np.int32)
        pad = np.concatenate([enc, np.repeat(enc[:1], args.chunk - len(enc), axis=0)])
        vals = {n: np.asarray(jax.device_get(fn(pad)))[:len(enc)] for n, fn in scorers.items()}
        for i, e in enumerate(enc):
            writer.writerow([nb201.encoding_to_string(e), *(repr(float(vals[n][i])) for n in COLUMNS)])
        f.flush()
        scored += len(enc)
    f.close()
    run_s = time.time() - t0
    timing = {"setup_and_compile_s": round(setup_s, 1), "scoring_s": round(run_s, 1), "archs_scored_now": scored,
              "s_per_arch": round(run_s / scored, 3) if scored else None, "stopped_by_time_budget": stopped,
              "loadavg_start": [round(x, 2) for x in load_start],
              "loadavg_end": [round(x, 2) for x in os.getloadavg()]}
    return protocol, timing


def _rankable(x: np.ndarray) -> np.ndarray:
    from fbnas_jax.indicators.supernet import _finite_for_ranking

    return _finite_for_ranking(x)


def analyze(out: Path, protocol=None, timing=None, args=None):
    import jax
    from scipy import stats

    from fbnas_jax.groundtruth import load_ground_truth
    from fbnas_jax.indicators.supernet import cpi_from_scores
    from fbnas_jax.spaces import nb201

    with open(out.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"error: no scored architectures in {out.with_suffix('.csv')}")
    enc = np.stack([nb201.string_to_encoding(r["arch"]) for r in rows])
    scores = {n: np.array([float(r[n]) for r in rows]) for n in COLUMNS}
    scores["teg"] = cpi_from_scores(scores, ("ntk_cond", "linear_regions_tenas", "teg_generalization"))
    scores["tenas"] = cpi_from_scores(scores, ("ntk_cond", "linear_regions_tenas"))
    gt = load_ground_truth(_env("FBNAS_NB201_CSV"))
    rows_gt = gt.lookup(enc)
    acc = gt.column(TRUTH)[rows_gt]
    # degenerate architectures (the cell output does not depend on its input: singular kernels,
    # -inf generalization, TE-NAS's 1e5 condition) are trivially last for every indicator; the
    # correlation among the others says more about the indicators
    connected = np.isfinite(scores["teg_generalization"]) & (scores["ntk_cond"] > -1e5)
    results = {}
    for name, s in scores.items():
        x = _rankable(s)
        ok = np.isfinite(x) & np.isfinite(acc)
        tau = stats.kendalltau(x[ok], acc[ok])[0]
        rho = stats.spearmanr(x[ok], acc[ok])[0]
        okc = ok & connected
        tau_c = stats.kendalltau(x[okc], acc[okc])[0] if okc.sum() > 2 else float("nan")
        results[name] = {"kendall_tau": round(float(tau), 4), "spearman": round(float(rho), 4), "n": int(ok.sum()),
                         "kendall_tau_connected": round(float(tau_c), 4), "n_connected": int(okc.sum()),
                         "n_minus_inf": int(np.isneginf(s).sum()), "n_nan": int(np.isnan(s).sum()),
                         "paper": PAPER.get(name, "")}
    # how the indicators relate to each other (do they carry different information?)
    names = ["ntk_cond", "teg_generalization", "linear_regions_tenas", "linear_regions"]
    between = {f"{a}~{b}": round(float(stats.kendalltau(_rankable(scores[a]), _rankable(scores[b]),
                                                          nan_policy="omit")[0]), 4)
               for i, a in enumerate(names) for b in names[i + 1:]}
    meta = {"benchmark": "benchmarks/teg_nb201.py", "issue": 11, "truth": f"{TRUTH} of $FBNAS_NB201_CSV",
            "n_archs": len(rows), "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "jax": jax.__version__, "device": str(jax.devices()[0]), "python": platform.python_version(),
            "host": {"cpus": os.cpu_count(), "loadavg_at_analysis": [round(x, 2) for x in os.getloadavg()]},
            "protocol": protocol, "timing": timing, "correlations": results, "tau_between_indicators": between}
    if args is not None:
        meta["args"] = {k: v for k, v in vars(args).items()}
    json_path = out.with_suffix(".json")
    old = json.loads(json_path.read_text()) if json_path.exists() else {}
    for k in ("protocol", "timing", "args"):  # --analyze-only keeps the scoring run's record
        if meta.get(k) is None and k in old:
            meta[k] = old[k]
    json_path.write_text(json.dumps(meta, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(meta))
    print(markdown(meta))
    return meta


def markdown(meta) -> str:
    t = meta.get("timing") or {}
    lines = [f"# TEG indicators vs NB201 CIFAR-10 ({meta['n_archs']} random architectures)", "",
             f"{meta['date_utc']}, JAX {meta['jax']}, {meta['device']}, {meta['host']['cpus']} CPUs; "
             f"load average at start {t.get('loadavg_start')}, end {t.get('loadavg_end')} "
             f"(shared machine: timings are indicative only); {t.get('s_per_arch')} s per architecture "
             "for the four indicators together.", "",
             f"Ground truth: {meta['truth']}. Rank correlations; -inf scores (singular kernels) rank lowest. "
             "'Connected': without the architectures whose cell output does not depend on the input "
             "(singular NTK: generalization -inf, condition number 1e5), which every indicator ranks last.", "",
             "| indicator | Kendall tau | Spearman | n | -inf | tau, connected cells only (n) | published |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, r in meta["correlations"].items():
        lines.append(f"| {name} | {r['kendall_tau']:+.3f} | {r['spearman']:+.3f} | {r['n']} | {r['n_minus_inf']} "
                     f"| {r.get('kendall_tau_connected', float('nan')):+.3f} ({r.get('n_connected')}) "
                     f"| {r['paper']} |")
    lines += ["", "`teg` = mean rank of ntk_cond, linear_regions_tenas, teg_generalization (TEG-NAS's sum of ranks); "
              "`tenas` = mean rank of ntk_cond and linear_regions_tenas.", "",
              "Kendall tau between indicators: " + ", ".join(f"{k} {v:+.2f}"
                                                             for k, v in meta["tau_between_indicators"].items()),
              ""]
    p = meta.get("protocol") or {}
    if p:
        lines += ["Protocol: " + p["network"] + ". " + p["images"] + ". Inits: " + p["inits"] + ".", ""]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    protocol = timing = None
    if not args.analyze_only:
        protocol, timing = score(args, out)
    analyze(out, protocol, timing, args)


if __name__ == "__main__":
    main()
