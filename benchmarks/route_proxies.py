"""Training-free gradient proxies by execution: vmap, map and route side by side.

For each proxy of ``--proxies`` (snip, grad_norm, grasp, ntk_cond: the routed ones,
:mod:`fbnas_jax.indicators.routed_grads`) and each execution of ``--executions``, the
engine's job (:func:`fbnas_jax.engine.compile_job`, one proxy per job) is compiled once
(compile seconds, XLA memory, XLA's FLOP count per architecture: ``cost_analysis()`` of one
chunk; ``map``'s loop body is counted once by XLA, so it is left out, and so is ntk_cond's
per-sample ``lax.map``, counted once: its FLOPs are those of one VJP row plus the forward),
then the same architectures are scored ``--repeats`` times, the executions interleaved, with
the load average next to every timing, and the largest relative difference of each
execution's scores from the first one's. Sizes as ``benchmarks/vs_pytorch.py`` (fresh
supernet, bnnas BN, batch 64, ntk batch 72, one ntk repeat).

    PYTHONPATH=. python benchmarks/route_proxies.py --size 8:1 --chunks vmap=25,map=25,route=25

Writes ``<out>/route_proxies_<tag>.json`` and ``.md`` after every measurement.
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
    p.add_argument("--size", default="8:1", help="C:N (channels, cells per stage)")
    p.add_argument("--proxies", default="snip,grad_norm,grasp,ntk_cond")
    p.add_argument("--executions", default="vmap,map,route")
    p.add_argument("--chunks", default="vmap=25,map=25,route=25", help="architectures per launch, EXEC=N")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--ntk-batch-size", type=int, default=72)
    p.add_argument("--ntk-repeats", type=int, default=1)
    p.add_argument("--bn-mode", default="bnnas", choices=("bnnas", "fair"))
    p.add_argument("--kernel-grad", default="lax", choices=("lax", "patches"),
                   help="how convolutions take their kernel gradient (fbnas_jax.models.layers.conv2d); "
                        "'patches': one im2col GEMM, per slot under route")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results" / "route"))
    p.add_argument("--tag", default=None)
    args = p.parse_args(argv)
    args.channels, args.cells = _args.parsed(p, "--size", _args.size_pair, args.size)
    args.chunk_of = _args.parsed(p, "--chunks", _args.exec_chunks, args.chunks)
    args.proxy_list = _args.comma_list(args.proxies)
    args.exec_list = _args.comma_list(args.executions)
    return args


def make_context(args):
    import jax

    from fbnas_jax.data import make_synthetic, normalize
    from fbnas_jax.indicators.base import ScoringContext
    from fbnas_jax.models.nb201 import build_network, init_variables

    net = build_network(channels=args.channels, cells_per_stage=args.cells, bn_mode=args.bn_mode,
                        kernel_grad=args.kernel_grad)
    b = max(args.batch_size, args.ntk_batch_size)
    data = make_synthetic(num_train=b + 16, num_test=16, image_size=args.image_size, seed=args.seed)
    v = jax.device_get(init_variables(net, args.seed, data.image_shape))
    images = normalize(data.train_images[:b], data.mean, data.std).astype(np.float32)
    options = {n: {"batch_size": args.batch_size, "repeats": 1} for n in ("snip", "grad_norm", "grasp", "fisher")}
    options["ntk_cond"] = {"batch_size": args.ntk_batch_size, "repeats": args.ntk_repeats}
    return ScoringContext(net=net, init_variables={"params": v["params"], "batch_stats": v["batch_stats"]},
                          images=images, labels=np.asarray(data.train_labels[:b], np.int32),
                          key=jax.random.key(args.seed), options=options)


def write(out: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(out, indent=1))
    a = out["args"]
    lines = [f"# Gradient proxies by execution ({out['device']}, JAX {out['jax']}, {out['date']})", "",
             f"{out['host']}; C={a['channels']}, N={a['cells']}, {a['bn_mode']} BN, kernel gradient "
             f"{a['kernel_grad']}, fresh init, {len(out['archs'])} archs "
             f"(one balanced coset), batch {a['batch_size']} (ntk_cond {a['ntk_batch_size']}, {a['ntk_repeats']} repeat), "
             f"{a['image_size']}px synthetic images. Runs interleaved, compile excluded; loadavg (1 min) at each run. "
             "GFLOP/arch: XLA cost analysis of one compiled chunk (map: loop body counted once, left out; ntk_cond: "
             "its per-sample lax.map body counted once).", "",
             "| proxy | execution | chunk | cap | archs/s (each repeat) | best | compile s | XLA MB | GFLOP/arch "
             "| max rel diff vs first |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in out["rows"]:
        rates = [m["archs_per_s"] for m in r["runs"]]
        rates_s = ", ".join(f"{x:.3g} (load {m['loadavg'][0]:.1f})" for x, m in zip(rates, r["runs"]))
        fl = "-" if r["gflop_per_arch"] is None else f"{r['gflop_per_arch']:.3g}"
        mem = "-" if r["memory_mb"] is None else f"{r['memory_mb']:.0f}"
        best = max(rates) if rates else float("nan")
        lines.append(f"| {r['proxy']} | {r['execution']} | {r['chunk']} | {r.get('cap') or '-'} | {rates_s} | "
                     f"{best:.3g} | {r['compile_s']:.1f} | {mem} | {fl} | {r.get('max_rel_diff', '-')} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> dict:
    args = parse_args(argv)
    import jax

    from fbnas_jax import engine
    from fbnas_jax.models import routing
    from fbnas_jax.scoring import _run_chunks

    d = routing.coset_dim(args.chunk_of.get("route", 25))
    if d is None:
        raise SystemExit("the route chunk must be a power of 5 (one balanced coset is scored)")
    enc = routing.space_cosets(d)[1]
    ctx = make_context(args)
    out = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "jax": jax.__version__,
           "device": str(jax.local_devices()[0].device_kind), "host": f"{platform.node()} ({os.cpu_count()} CPUs)",
           "args": {k: v for k, v in vars(args).items()}, "archs": enc.tolist(), "rows": []}
    path = Path(args.out) / f"route_proxies_{args.tag or jax.default_backend()}_c{args.channels}n{args.cells}"
    devs = [jax.local_devices()[0]]
    for name in args.proxy_list:
        rows = []
        for ex in args.exec_list:
            job = engine.plan(ctx, [name], execution=ex, share=False)[0]
            chunk = min(args.chunk_of.get(ex, 25), len(enc))
            if ex == "route":
                job = dataclasses.replace(job, route_cap=routing.balanced_capacity(enc, chunk))
            t0 = time.perf_counter()
            comp = engine.compile_job(ctx, job, chunk, devs, (6,))
            row = {"proxy": name, "execution": ex, "chunk": chunk, "cap": comp.cap, "compile_s": time.perf_counter() - t0,
                   "memory_mb": comp.memory_mb, "runs": [],
                   "gflop_per_arch": _args.xla_gflop_per_arch(comp, ex)}
            rows.append((row, comp))
            out["rows"].append(row)
            print(f"{name} {ex}: compiled in {row['compile_s']:.1f} s, {row['gflop_per_arch']} GFLOP/arch", flush=True)
            write(out, path)
        first = None
        for rep in range(args.repeats):
            for row, comp in rows:
                load = os.getloadavg()
                t0 = time.perf_counter()
                vals = _run_chunks(comp.run, enc, comp.chunk, pack=comp.pack)[name]
                run_s = time.perf_counter() - t0
                row["runs"].append({"repeat": rep, "run_s": run_s, "archs_per_s": len(enc) / run_s,
                                    "loadavg": list(load),
                                    "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
                first = vals if first is None else first
                fin = np.isfinite(first) & np.isfinite(vals)
                rel = np.abs(vals[fin] - first[fin]) / np.maximum(np.abs(first[fin]), 1e-12)
                row["max_rel_diff"] = float(f"{rel.max():.3g}") if rel.size else None
                print(f"{name} {row['execution']} repeat {rep}: {len(enc) / run_s:.3g} archs/s (load {load[0]:.1f}), "
                      f"max rel diff {row['max_rel_diff']}", flush=True)
                write(out, path)
    return out


if __name__ == "__main__":
    main()
