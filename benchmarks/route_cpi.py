"""CPI throughput of the engine's executions side by side: vmap, map and route.

CPI = uncertainty + trainability + expressivity, scored as ``fbnas score --indicators cpi``
does (:func:`fbnas_jax.scoring.score_architectures`: one job per component, each compiled
once; the last step, ranks, is free). For each ``--sizes`` entry (C:N) and each execution of
``--executions`` this script compiles the CPI jobs once (compile seconds, XLA memory), then
times the run over the same architectures ``--repeats`` times, the executions interleaved in
one process, with the load average and the date next to every timing. It also reports

* XLA's FLOP count of the compiled expressivity and uncertainty programs per architecture
  (``compiled.cost_analysis()``; a ``lax.map``/``lax.scan`` body is counted once by XLA, so
  ``map`` is left out and uncertainty's counts are per Monte-Carlo forward under a scan);
* the largest relative difference of every execution's scores from the first one's.

Architectures: ``--archs coset`` (default) is one coset of the 5^d-element subgroup of
Z_5^6 with 5^d = the route chunk: every op chosen by exactly chunk/5 architectures on every
edge (the whole space splits into such chunks); ``--archs random:N`` a random sample (route
then packs first-fit under its default capacity, :mod:`fbnas_jax.models.routing`).

    PYTHONPATH=. python benchmarks/route_cpi.py --sizes 8:1 --chunks vmap=16,map=16,route=125

Writes ``<out>/route_cpi_<tag>.json`` and ``.md`` after every measurement.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

import _args  # benchmarks/_args.py: shared argument types (this script's folder is on sys.path)

HERE = Path(__file__).resolve().parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="8:1", help="comma list of C:N (channels, cells per stage)")
    p.add_argument("--executions", default="vmap,map,route",
                   help="comma list of vmap, map, loop, route; EXEC@N: that execution with chunk N (a second row)")
    p.add_argument("--chunks", default="vmap=16,map=16,route=125",
                   help="architectures per launch, per execution (EXEC=N, comma list)")
    p.add_argument("--archs", default="coset", help="'coset' (one balanced coset of the route chunk) or random:N")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64, help="evaluation batch (expressivity, uncertainty)")
    p.add_argument("--mc-samples", type=int, default=10)
    p.add_argument("--mc-batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results" / "route"))
    p.add_argument("--tag", default=None, help="output name suffix (default: the JAX backend)")
    args = p.parse_args(argv)
    args.size_list = _args.parsed(p, "--sizes", _args.size_pairs, args.sizes)
    args.chunk_of = _args.parsed(p, "--chunks", _args.exec_chunks, args.chunks)
    args.exec_list = _args.comma_list(args.executions)
    from fbnas_jax.engine import EXECUTIONS

    bad = [e for e in args.exec_list if e.partition("@")[0] not in EXECUTIONS
           or (e.partition("@")[2] and not e.partition("@")[2].isdigit())]
    if bad or not args.exec_list:
        p.error(f"--executions must be a comma list of {EXECUTIONS}, got {args.executions!r}")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.archs != "coset" and not (args.archs.startswith("random:") and args.archs[7:].isdigit()):
        p.error(f"--archs is 'coset' or random:N, got {args.archs!r}")
    return args


def make_context(args, channels: int, cells: int):
    """A freshly initialised supernet, synthetic images, the MC mini-batches (as vs_pytorch.py)."""
    import jax

    from fbnas_jax.data import make_synthetic, normalize
    from fbnas_jax.indicators.base import ScoringContext
    from fbnas_jax.models.nb201 import build_network, init_variables

    net = build_network(channels=channels, cells_per_stage=cells, bn_mode="fair")
    t, bm, b = args.mc_samples, args.mc_batch_size, args.batch_size
    data = make_synthetic(num_train=b + t * bm + 16, num_test=16, image_size=args.image_size, seed=args.seed)
    v = jax.device_get(init_variables(net, args.seed, data.image_shape))
    images = normalize(data.train_images[:b], data.mean, data.std).astype(np.float32)
    mc = normalize(data.train_images[b:b + t * bm], data.mean, data.std).astype(np.float32)
    return ScoringContext(net=net, variables={"params": v["params"], "batch_stats": v["batch_stats"]},
                         images=images, labels=np.asarray(data.train_labels[:b], np.int32),
                         train_images=mc.reshape((t, bm) + mc.shape[1:]), key=jax.random.key(args.seed))


def architectures(args) -> np.ndarray:
    from fbnas_jax.models import routing
    from fbnas_jax.spaces import nb201

    if args.archs == "coset":
        d = routing.coset_dim(args.chunk_of.get("route", 125))
        if d is None:
            raise SystemExit("--archs coset needs a route chunk that is a power of 5 (5, 25, 125, ...)")
        return routing.space_cosets(d)[1]
    return np.asarray(nb201.sample_encodings(np.random.default_rng(args.seed), int(args.archs[7:])), np.int32)


def compile_cpi(ctx, execution: str, chunk: int, enc: np.ndarray) -> list[dict]:
    """The CPI jobs compiled for ``execution`` (as score_architectures plans them)."""
    from fbnas_jax import engine
    from fbnas_jax.indicators import base
    from fbnas_jax.models import routing

    jobs = []
    for job in engine.plan(ctx, ["expressivity", "trainability", "uncertainty"], execution=execution):
        table = all(base.get(n).per_arch_cost == "table" for n in job.names)
        c = len(enc) if table else min(chunk, len(enc))
        if job.execution == "route" and not table:
            job = dataclasses.replace(job, route_cap=routing.balanced_capacity(enc, c))
        comp = engine.compile_job(ctx, job, c, [__import__("jax").local_devices()[0]], (6,))
        jobs.append({"job": job, "compiled": comp, "table": table})
    return jobs


def run_cpi(jobs, enc) -> tuple[float, dict, dict]:
    from fbnas_jax.scoring import _run_chunks

    scores, secs = {}, {}
    for j in jobs:
        comp = j["compiled"]
        t0 = time.perf_counter()
        scores.update(_run_chunks(comp.run, enc, comp.chunk, pack=comp.pack))
        secs[j["job"].label] = time.perf_counter() - t0
    return sum(secs.values()), secs, scores


def _max_diff(a, b) -> dict:
    """Largest absolute and relative difference (relative to ``max(|a|, 1e-6)``: uncertainty is
    ~0 for degenerate architectures); ``inf`` where one side is finite and the other not."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    fin = np.isfinite(a) & np.isfinite(b)
    if np.any(np.isfinite(a) != np.isfinite(b)):
        return {"abs": float("inf"), "rel": float("inf")}
    if not fin.any():
        return {"abs": 0.0, "rel": 0.0}
    d = np.abs(a[fin] - b[fin])
    return {"abs": float(f"{d.max():.3g}"), "rel": float(f"{np.max(d / np.maximum(np.abs(a[fin]), 1e-6)):.3g}")}


def write(out: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(out, indent=1))
    lines = [f"# CPI throughput by execution ({out['device']}, JAX {out['jax']}, {out['date']})", "",
             f"{out['host']}; archs: {out['args']['archs']}; batch {out['args']['batch_size']}, "
             f"MC {out['args']['mc_samples']}x{out['args']['mc_batch_size']}, images "
             f"{out['args']['image_size']}px, fair BN, fresh init. Runs interleaved, compile excluded; "
             "loadavg (1 min) at each run. FLOPs/arch: XLA cost analysis of one compiled chunk "
             "(uncertainty: per MC forward when sequential; map's loop body is counted once, so left out).", "",
             "| C:N | execution | chunk | cap | CPI archs/s (each repeat) | best | all 15,625 at best | compile s "
             "| XLA MB (expr / unc) | GFLOP/arch expr / unc | max abs (rel) diff vs first execution |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in out["sizes"]:
        for r in s["rows"]:
            rates = [m["archs_per_s"] for m in r["runs"]]
            best = max(rates) if rates else float("nan")
            rates_s = ", ".join(f"{x:.3g} (load {m['loadavg'][0]:.1f})" for x, m in zip(rates, r["runs"]))
            fl = r["gflop_per_arch"]
            fl_s = " / ".join("-" if fl.get(k) is None else f"{fl[k]:.3g}" for k in ("expressivity", "uncertainty"))
            diff = "; ".join(f"{k} {v['abs']:.2g} ({v['rel']:.2g})" for k, v in r.get("max_diff", {}).items())
            mem = r["memory_mb"]
            mem_s = " / ".join("-" if mem.get(k) is None else f"{mem[k]:.0f}" for k in ("expressivity", "uncertainty"))
            lines.append(f"| {s['channels']}:{s['cells']} | {r['execution']} | {r['chunk']} | {r.get('cap') or '-'} "
                         f"| {rates_s} | {best:.3g} | {15625 / best / 60:.1f} min | {r['compile_s']:.1f} | {mem_s} "
                         f"| {fl_s} | {diff} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> dict:
    args = parse_args(argv)
    import jax

    enc = architectures(args)
    out = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "jax": jax.__version__,
           "device": str(jax.local_devices()[0].device_kind), "backend": jax.default_backend(),
           "host": f"{platform.node()} ({os.cpu_count()} CPUs)", "args": {k: v for k, v in vars(args).items()},
           "archs": enc.tolist(), "sizes": []}
    path = Path(args.out) / f"route_cpi_{args.tag or jax.default_backend()}"
    for channels, cells in args.size_list:
        ctx = make_context(args, channels, cells)
        size = {"channels": channels, "cells": cells, "rows": []}
        out["sizes"].append(size)
        compiled = {}
        for ex in args.exec_list:
            t0 = time.perf_counter()
            kind, _, at = ex.partition("@")
            jobs = compile_cpi(ctx, kind, int(at) if at else args.chunk_of.get(kind, 16), enc)
            compiled[ex] = jobs
            per = {j["job"].label: j["compiled"] for j in jobs if not j["table"]}
            row = {"execution": ex, "chunk": max(c.chunk for c in per.values()),
                   "cap": next((c.cap for c in per.values() if c.cap), None),
                   "compile_s": time.perf_counter() - t0,
                   "memory_mb": {k: c.memory_mb for k, c in per.items()},
                   "gflop_per_arch": {k: _args.xla_gflop_per_arch(c, ex) for k, c in per.items()}, "runs": []}
            size["rows"].append(row)
            print(f"C={channels} N={cells} {ex}: compiled in {row['compile_s']:.1f} s, {row['memory_mb']}", flush=True)
            write(out, path)
        first = {}
        for rep in range(args.repeats):
            for ex, row in zip(args.exec_list, size["rows"]):
                load = os.getloadavg()
                run_s, secs, scores = run_cpi(compiled[ex], enc)
                m = {"repeat": rep, "run_s": run_s, "job_s": secs, "archs_per_s": len(enc) / run_s,
                     "loadavg": list(load), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
                row["runs"].append(m)
                if not first:
                    first = scores
                row["max_diff"] = {k: _max_diff(first[k], v) for k, v in scores.items()}
                print(f"C={channels} N={cells} {ex} repeat {rep}: {m['archs_per_s']:.3g} archs/s "
                      f"({run_s:.1f} s, load {load[0]:.1f}) {row['max_diff']}", flush=True)
                write(out, path)
    return out


if __name__ == "__main__":
    main()
