"""End-to-end A/B of CPI on CPU through the CLI: `fbnas score --indicators cpi` on N architectures of a
trained supernet, the same command run by two source trees (BEFORE and AFTER, e.g. main and a
branch), back to back, each in its own process (its compile, data decoding and scoring all
counted). Records wall / user / sys seconds (``/usr/bin/time``-style, via ``resource``), the
engine's per-indicator archs/s from each CSV's JSON sidecar, the load average and the date, the
largest difference of the scores against the first run, and the extrapolation to all 15,625
NB201 architectures (fixed costs once + per-architecture run time x 15,625).

    python benchmarks/cpi_cli_ab.py --run RUN --before /tmp/main_src --after . --archs 1000 \\
        --variants "before=before:;one=after:;cores=after:--devices cores --chunk-size 64" --repeats 1

Writes ``<out>.json`` and ``<out>.md`` (rewritten after every run).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SPACE = 15625


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="trained supernet workdir (read only)")
    p.add_argument("--before", required=True, help="source tree (holding fbnas_jax/) of the baseline")
    p.add_argument("--after", default=".", help="source tree of the candidate")
    p.add_argument("--archs", type=int, default=1000)
    p.add_argument("--mc", default="--mc-samples 4 --mc-batch-size 32 --eval-batch-size 64",
                   help="MC flags (default: the cpu preset's 4x32, eval 64)")
    p.add_argument("--variants", default="before=before:;one=after:;cores=after:--devices cores --chunk-size 64",
                   help="';'-list of NAME=TREE:EXTRA FLAGS, TREE 'before' or 'after'")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--out", default="benchmarks/results/cpi_cpu/cpi15_ab")
    p.add_argument("--work", default="/tmp/cpi_cli_ab", help="scratch folder for the CSVs")
    a = p.parse_args(argv)
    a.variant_list = []
    for item in filter(None, (s.strip() for s in a.variants.split(";"))):
        name, rest = item.split("=", 1)
        tree, extra = rest.split(":", 1)
        if tree not in ("before", "after"):
            p.error(f"variant {name}: tree must be 'before' or 'after', got {tree!r}")
        a.variant_list.append((name, tree, shlex.split(extra)))
    return a


def run_one(args, name, tree, extra, rep):
    src = Path(args.before if tree == "before" else args.after).resolve()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    csv = work / f"{name}_r{rep}.csv"
    cmd = ["nice", "-n", str(args.nice), sys.executable, "-m", "fbnas_jax.cli", "score", "--checkpoint", args.run,
           "--indicators", "cpi", "--archs", str(args.archs), *shlex.split(args.mc), "--no-progress",
           "--out", str(csv), *extra]
    env = dict(os.environ, PYTHONPATH=str(src), FBNAS_COMPILATION_CACHE="0")  # every run compiles
    load0, start = os.getloadavg(), dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    side = json.loads(Path(str(csv) + ".json").read_text())
    ind = side["timings"]["indicators"]
    per_arch = sum(ind[k]["run_s"] for k in ("expressivity", "trainability", "uncertainty", "cpi") if k in ind)
    fixed = wall - per_arch
    return {"name": name, "tree": tree, "extra": extra, "repeat": rep, "start": start, "wall_s": wall,
            "user_s": r1.ru_utime - r0.ru_utime, "sys_s": r1.ru_stime - r0.ru_stime,
            "load_before": load0, "load_after": os.getloadavg(), "devices": side["devices"],
            "chunk_size": side["options"]["chunk_size"],
            "archs_per_s": {k: ind[k].get("archs_per_s") for k in ("expressivity", "uncertainty") if k in ind},
            "compile_s": {k: ind[k].get("compile_s") for k in ind if "compile_s" in ind[k]},
            "run_s": {k: ind[k]["run_s"] for k in ind}, "fixed_s": fixed,
            "space_min": (fixed + per_arch / args.archs * SPACE) / 60, "csv": str(csv)}


def max_diff(a_csv, b_csv):
    import csv

    def load(path):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        return {k: np.asarray([float(r[k]) for r in rows]) for k in rows[0] if k != "arch"}

    a, b = load(a_csv), load(b_csv)
    out = {}
    for k in a:
        fin = np.isfinite(a[k]) & np.isfinite(b[k])
        out[k] = {"max_abs": float(np.max(np.abs(a[k][fin] - b[k][fin]))) if fin.any() else 0.0,
                  "same_nonfinite": bool(np.array_equal(np.isfinite(a[k]), np.isfinite(b[k])))}
    return out


def write(args, runs):
    ref = runs[0]
    for r in runs:
        r["diff_vs_first"] = max_diff(ref["csv"], r["csv"])
    meta = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "run": args.run,
            "archs": args.archs, "mc": args.mc, "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=2))
    lines = [f"# CPI through `fbnas score` on CPU: before / after ({meta['date']})", "",
             f"`fbnas score --indicators cpi --archs {args.archs} {args.mc}` on `{args.run}`; each row one process "
             "(compile, CIFAR decoding and scoring all counted; compilation cache off). Archs/s are the engine's "
             "own (run time of the job, compile excluded). 'space' = fixed costs once + per-architecture time x "
             "15,625.", "",
             "| run | flags | start (UTC) | load 1-min before/after | wall s | user+sys s | expressivity archs/s | "
             "uncertainty archs/s | fixed s | space, min | max abs diff of cpi vs first |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        a = r["archs_per_s"]
        d = r["diff_vs_first"].get("cpi", {}).get("max_abs", float("nan"))
        lines.append(f"| {r['name']} (r{r['repeat']}) | {' '.join(r['extra']) or '-'} | {r['start'][11:19]} | "
                     f"{r['load_before'][0]:.1f}/{r['load_after'][0]:.1f} | {r['wall_s']:.0f} | "
                     f"{r['user_s'] + r['sys_s']:.0f} | {a.get('expressivity', float('nan')):.1f} | "
                     f"{a.get('uncertainty', float('nan')):.1f} | {r['fixed_s']:.0f} | {r['space_min']:.1f} | {d:.3g} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    args = parse_args(argv)
    runs = []
    for rep in range(args.repeats):
        for name, tree, extra in args.variant_list:
            runs.append(run_one(args, name, tree, extra, rep))
            r = runs[-1]
            print(f"{name} r{rep}: wall {r['wall_s']:.0f} s, archs/s {r['archs_per_s']}, space {r['space_min']:.1f} min, "
                  f"load {r['load_before'][0]:.1f}/{r['load_after'][0]:.1f}", flush=True)
            write(args, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
