"""DARTS, BaLeNAS and BaLeNAS-TF on NAS-Bench-201 / CIFAR-10 (issue 12), several seeds.

For every seed: a DARTS search and a BaLeNAS search from ``configs/{darts,balenas}_nb201_cifar10_<preset>.yaml``
(``fbnas_jax.search.differentiable``), then the picks (``fbnas_jax.search.balenas.read_off``):
DARTS argmax alpha; BaLeNAS argmax mu; BaLeNAS-TF(k): best by synflow of the first k of 100
draws from q; zero-cost NAS(k): best by synflow of the first k of 100 random architectures
(the paper's control). Each pick's accuracy is looked up in ``$FBNAS_NB201_CSV``
(``cifar10_test_200ep``). Results are written after every run to ``<out>/balenas_nb201_<preset>.json``
(with date, load average, JAX version, device) and summarised in ``.md`` beside it, next to the
paper's numbers. Workdirs live under ``--workdir-root``: a killed benchmark resumes.

    export FBNAS_CIFAR10_ARCHIVE=../shared/data/cifar10/cifar10-jpeg.tar.gz
    export FBNAS_NB201_CSV=../shared/data/nasbench201/nb201_cifar10_accuracy.csv
    python benchmarks/balenas_nb201.py --preset cpu --seeds 0,1,2,3      # 2 CPU cores: ~1 h
    python benchmarks/balenas_nb201.py --preset gpu --seeds 0,1,2,3      # one GPU, paper scale
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAPER = {  # CIFAR-10 test accuracy (%) on NB201, mean ± std over 4 seeds
    "darts": ("54.30 ± 0.00", "DARTS (1st/2nd), BaLeNAS Table 1 / FBN-NAS Table 2"),
    "balenas_argmax": ("93.62 ± 0.12", "BaLeNAS (1st), Table 1"),
    "tf10": ("94.08 ± 0.13", "BaLeNAS-TF(10), Table 2"),
    "tf50": ("94.33 ± 0.03", "BaLeNAS-TF(50), Table 2"),
    "tf100": ("94.33 ± 0.03", "BaLeNAS-TF (100), Table 1"),
    "zero_cost10": ("92.12 ± 1.25", "Zero-cost NAS(10), Table 2"),
    "zero_cost50": ("92.52 ± 0.05", "Zero-cost NAS(50), Table 2"),
    "zero_cost100": ("93.45 ± 0.16", "Zero-cost NAS(100), Table 2"),
}
LABELS = {"darts": "DARTS (argmax alpha)", "balenas_argmax": "BaLeNAS (argmax mu)",
          "tf10": "BaLeNAS-TF(10)", "tf50": "BaLeNAS-TF(50)", "tf100": "BaLeNAS-TF(100)",
          "zero_cost10": "Zero-cost NAS(10), random + synflow", "zero_cost50": "Zero-cost NAS(50)",
          "zero_cost100": "Zero-cost NAS(100)"}
COLUMN = "cifar10_test_200ep"


def run_one(algo: str, preset: str, seed: int, root: Path, extra: list[str], truth) -> dict:
    from fbnas_jax.search import balenas as B
    from fbnas_jax.search.differentiable import load_search_config, search, weights_of

    cfg, acfg = load_search_config(ROOT / "configs" / f"{algo}_nb201_cifar10_{preset}.yaml",
                                   [f"train.seed={seed}"] + extra)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    res = search(cfg, acfg, root / f"{algo}-seed{seed}", progress=False, log=lambda m: print(m, flush=True))
    search_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    picks = B.read_off(res, log=lambda m: print(m, flush=True))
    select_s = time.perf_counter() - t1
    # every epoch of the run, also those of an earlier (interrupted) call: seconds include compiling
    epochs = [json.loads(line) for line in (root / f"{algo}-seed{seed}" / "epochs.jsonl").read_text().splitlines()]
    if len(epochs) > len(res.epochs):  # resumed: this call's wall time misses the earlier epochs
        search_s = sum(e["seconds"] for e in epochs)
    out = {"algo": algo, "seed": seed, "steps": int(res.state.step), "search_s": round(search_s, 1),
           "select_s": round(select_s, 1), "loadavg_start": [round(x, 2) for x in load0],
           "loadavg_end": [round(x, 2) for x in os.getloadavg()], "epochs": epochs,
           "op_weights": np.round(weights_of(res), 4).tolist(), "picks": {}}
    if algo == "balenas":
        out["sigma_mean"] = float(np.mean(np.asarray(res.arch_opt.std(res.state.arch_opt_state))))
    for name, p in picks.items():
        enc = np.asarray(p["encoding"])
        row = {"arch": res.space.to_string(enc), COLUMN: float(truth.values(COLUMN, enc[None])[0])}
        row.update({k: p[k] for k in ("score", "unique") if k in p})
        out["picks"][("darts" if algo == "darts" else "balenas_argmax") if name == "argmax" else name] = row
    return out


def summarise(runs: list[dict]) -> dict[str, dict]:
    acc: dict[str, list[float]] = {}
    secs: dict[str, list[float]] = {}
    for r in runs:
        for name, p in r["picks"].items():
            acc.setdefault(name, []).append(p[COLUMN])
            if name.startswith("zero_cost"):  # no search: the synflow selection only
                sec = r["select_s"]
            else:
                sec = r["search_s"] + (r["select_s"] if name.startswith("tf") else 0.0)
            secs.setdefault(name, []).append(sec)
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v), "values": v,
                "search_s_mean": float(np.mean(secs[k]))} for k, v in acc.items()}


def write(out_dir: Path, preset: str, meta: dict, runs: list[dict]) -> None:
    summary = summarise(runs)
    doc = {**meta, "runs": runs, "summary": summary, "paper": {k: v[0] for k, v in PAPER.items()}}
    path = out_dir / f"balenas_nb201_{preset}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)
    lines = [f"# DARTS / BaLeNAS / BaLeNAS-TF on NAS-Bench-201, CIFAR-10 ({preset} preset)", "",
             f"Written by `benchmarks/balenas_nb201.py --preset {preset}` on {meta['date']} "
             f"({meta['device']}, JAX {meta['jax']}). Protocol: {meta['protocol']}", "",
             "Accuracy = the pick's NB201 `cifar10_test_200ep` (mean ± std over seeds, population std). "
             "Time = one search (+ the synflow selection for BaLeNAS-TF; zero-cost NAS: the selection alone), seconds on this "
             f"machine under the load recorded per run in the JSON (load averages {meta['load_range']}).", "",
             "| method | ours: CIFAR-10 test % | seeds | time s | paper (GPU, 50 epochs) |", "|---|---|---|---|---|"]
    for key in PAPER:
        if key in summary:
            s = summary[key]
            lines.append(f"| {LABELS[key]} | {s['mean']:.2f} ± {s['std']:.2f} | {s['n']} | {s['search_s_mean']:.0f} | "
                         f"{PAPER[key][0]} ({PAPER[key][1]}) |")
    lines += ["", "Picks per seed:", ""]
    for r in runs:
        picks = "; ".join(f"{k}: {p[COLUMN]:.2f}" for k, p in r["picks"].items())
        lines.append(f"- {r['algo']} seed {r['seed']} ({r['steps']} steps, {r['search_s']:.0f} s): {picks}")
    (out_dir / f"balenas_nb201_{preset}.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--seeds", default="0,1,2,3", help="comma-separated train.seed values")
    p.add_argument("--algos", default="darts,balenas")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "balenas"))
    p.add_argument("--workdir-root", default="/tmp/fbnas_balenas_bench", help="search workdirs (resumable)")
    p.add_argument("--set", nargs="*", default=[], help="config overrides for every run (stated in the JSON)")
    args = p.parse_args(argv)

    import jax

    from fbnas_jax.groundtruth import load_ground_truth
    from fbnas_jax.runtime import enable_compilation_cache

    enable_compilation_cache()
    csv_path = os.environ.get("FBNAS_NB201_CSV")
    if not csv_path:
        p.error("set FBNAS_NB201_CSV to the NB201 ground-truth CSV")
    truth = load_ground_truth(csv_path, columns=[COLUMN], space="nb201")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    protocol = (f"configs/{{darts,balenas}}_nb201_cifar10_{args.preset}.yaml"
                + (f" with {' '.join(args.set)}" if args.set else "")
                + "; train split halved (weight-train / arch-train); BaLeNAS-TF and zero-cost NAS picks use synflow "
                  "on a freshly initialised supernet of the searched sizes; draws keyed by the seed.")
    meta = {"preset": args.preset, "seeds": seeds, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "jax": jax.__version__, "device": f"{jax.devices()[0].platform} ({platform.processor() or platform.machine()}, "
                                              f"{os.cpu_count()} cores visible)",
            "protocol": protocol, "overrides": args.set, "ground_truth": COLUMN}
    runs: list[dict] = []
    for seed in seeds:
        for algo in args.algos.split(","):
            print(f"=== {algo} seed {seed} ===", flush=True)
            runs.append(run_one(algo, args.preset, seed, Path(args.workdir_root) / args.preset, list(args.set), truth))
            loads = [x for r in runs for x in (r["loadavg_start"][0], r["loadavg_end"][0])]
            meta["load_range"] = f"{min(loads):.1f}-{max(loads):.1f} (1-min, 2 cores)"
            write(out_dir, args.preset, meta, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
