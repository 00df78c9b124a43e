"""Scoring throughput: architectures per second for each indicator, and the FBN pipeline time.

For every indicator, scores ``--archs`` NB201 architectures (chunked, jit-compiled once,
vmapped) on the default device and reports compile seconds, run seconds and archs/s.
Weights are a fresh supernet (speed does not depend on training); data are the embedded
synthetic images at the network's input size.

``--pipeline`` additionally times the whole FBN-NAS pipeline for a config: BN-only supernet
training, CPI over ``--pipeline-archs`` architectures (15,625 = the whole space), and the pick.

Targets (issue 3, one H100): CPI over all 15,625 in <= 60 s; whole pipeline <= 5 min.
Outputs ``benchmarks/results/throughput_<backend>.json`` and ``.md``.

    python benchmarks/throughput.py --channels 16 --cells 5 --archs 64        # CPU-sized
    python benchmarks/throughput.py --archs 15625 --chunk-size 512 --pipeline  # GPU
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np

DEFAULT_INDICATORS = ("gamma,trainability,expressivity,uncertainty,supernet_accuracy,naswot,jacob_cov,"
                      "synflow,snip,grasp,fisher,grad_norm,ntk_cond,linear_regions")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=5, help="cells per stage (N)")
    p.add_argument("--bn-mode", default="fair", choices=("fair", "bnnas"))
    p.add_argument("--archs", type=int, default=256)
    p.add_argument("--table-archs", type=int, default=15625, help="archs for parameter-only indicators")
    p.add_argument("--chunk-size", type=int, default=32)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--mc-samples", type=int, default=10)
    p.add_argument("--mc-batch-size", type=int, default=64)
    p.add_argument("--indicators", default=DEFAULT_INDICATORS)
    p.add_argument("--pipeline", action="store_true")
    p.add_argument("--pipeline-config", default="configs/fbn_cifar10.yaml")
    p.add_argument("--pipeline-archs", type=int, default=15625)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--tag", default=None, help="output name suffix (default: backend)")
    return p.parse_args(argv)


def _context(args):
    import jax

    from fbnas_jax import scoring
    from fbnas_jax.data import make_synthetic
    from fbnas_jax.models.nb201 import build_network, init_variables
    from fbnas_jax.training.loop import LoadedRun

    net = build_network(channels=args.channels, cells_per_stage=args.cells, bn_mode=args.bn_mode)
    data = make_synthetic(num_train=2000, num_test=100, image_size=32)
    variables = jax.device_get(init_variables(net, 0, data.image_shape))
    run = LoadedRun(config=None, net=net, variables=variables, num_classes=10, input_shape=data.image_shape, step=0)
    return scoring.make_context(run, data, eval_batch_size=args.eval_batch_size, mc_samples=args.mc_samples,
                                mc_batch_size=args.mc_batch_size, fresh_init=True)


def measure_indicators(args) -> list[dict]:
    from fbnas_jax import scoring
    from fbnas_jax.indicators import base
    from fbnas_jax.spaces import nb201

    ctx = _context(args)
    rng = np.random.default_rng(0)
    rows = []
    for name in [n for n in args.indicators.split(",") if n]:
        ind = base.get(name)
        n = args.table_archs if ind.per_arch_cost == "table" else args.archs
        enc = nb201.all_encodings() if n >= nb201.NUM_ARCHS else nb201.sample_encodings(rng, n)
        t0 = time.perf_counter()
        res = scoring.score_architectures(ctx, [name], enc, chunk_size=args.chunk_size, progress=False)
        wall = time.perf_counter() - t0
        t = res.timings.get(name, {})
        run_s = float(t.get("run_s", wall))
        rows.append({"indicator": name, "archs": int(n), "compile_s": float(t.get("compile_s", np.nan)),
                     "run_s": run_s, "wall_s": wall, "archs_per_s": n / run_s if run_s > 0 else float("inf")})
        print(f"{name:>18}: {n:6d} archs, run {run_s:8.2f} s, {rows[-1]['archs_per_s']:10.1f} archs/s "
              f"(compile {rows[-1]['compile_s']:.1f} s)", flush=True)
    return rows


def measure_pipeline(args) -> dict:
    from fbnas_jax import scoring
    from fbnas_jax.config import load_config
    from fbnas_jax.spaces import nb201
    from fbnas_jax.training.loop import load_data, train

    cfg = load_config(args.pipeline_config)
    t0 = time.perf_counter()
    data = load_data(cfg)
    result = train(cfg, dataset=data, progress=False)
    t_train = time.perf_counter() - t0
    from fbnas_jax.training.loop import LoadedRun

    run = LoadedRun(cfg, result.net, result.state.variables, data.num_classes, data.image_shape, int(result.state.step))
    ctx = scoring.make_context(run, data, eval_batch_size=args.eval_batch_size, mc_samples=args.mc_samples,
                               mc_batch_size=args.mc_batch_size)
    enc = nb201.all_encodings()[: args.pipeline_archs]
    t1 = time.perf_counter()
    res = scoring.score_architectures(ctx, ["cpi"], enc, chunk_size=args.chunk_size, progress=False)
    best = nb201.encoding_to_string(enc[int(np.nanargmax(res["cpi"]))])
    t_score = time.perf_counter() - t1
    return {"config": args.pipeline_config, "train_s": t_train, "cpi_s": t_score, "archs": int(len(enc)),
            "total_s": time.perf_counter() - t0, "best": best, "steps": int(result.state.step)}


def main(argv=None) -> int:
    args = parse_args(argv)
    from fbnas_jax.runtime import device_summary, enable_compilation_cache

    enable_compilation_cache()
    dev = device_summary()
    out = {"date": dt.datetime.now().isoformat(timespec="seconds"), "device": dev, "args": vars(args),
           "indicators": measure_indicators(args)}
    if args.pipeline:
        out["pipeline"] = measure_pipeline(args)
    tag = args.tag or dev["backend"]
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    (path / f"throughput_{tag}.json").write_text(json.dumps(out, indent=2))
    lines = [f"# Throughput ({dev['device']}, {dev['backend']}, JAX {dev['jax']}, {out['date']})", "",
             f"Supernet C={args.channels}, N={args.cells}, bn_mode={args.bn_mode}; eval batch {args.eval_batch_size}, "
             f"MC {args.mc_samples}x{args.mc_batch_size}; chunk {args.chunk_size}.", "",
             "| indicator | archs | compile s | run s | archs/s |", "|---|---|---|---|---|"]
    for r in out["indicators"]:
        lines.append(f"| {r['indicator']} | {r['archs']} | {r['compile_s']:.1f} | {r['run_s']:.2f} | "
                     f"{r['archs_per_s']:.1f} |")
    if "pipeline" in out:
        p = out["pipeline"]
        lines += ["", f"Pipeline ({p['config']}): train {p['train_s']:.0f} s, CPI over {p['archs']} archs "
                      f"{p['cpi_s']:.0f} s, total {p['total_s']:.0f} s."]
    (path / f"throughput_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
