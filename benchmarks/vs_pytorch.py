"""Side by side: our scoring engine vs a PyTorch loop over the same NB201 architectures.

For each size (channels C, cells per stage N, number of architectures), a fresh Flax NB201
supernet is initialised; for every architecture its chosen ops' weights are ported into
NB201's PyTorch ``TinyNetwork`` (``benchmarks/torch_ref``), so both sides compute the same
numbers on the same batch. For every proxy the script reports archs/s of ours (jit-compiled
once, compile time reported apart) and of the PyTorch loop (one architecture at a time, the
reference implementations), and the largest relative difference of the values.

Timing on a shared machine: both sides run in the same process, back to back, interleaved
(alternating which goes first), ``--repeats`` times; medians are reported together with the
load average before and after. PyTorch uses as many threads as XLA (all cores); on a CPU, JAX gets one host
device per core (``--jax-devices``) and the engine splits each chunk's architectures across them.

Needs PyTorch (``pip install -e .[bench]``); ``--ours-only`` runs without it (e.g. on a GPU
machine without a CUDA PyTorch). One command reproduces the committed CPU table::

    PYTHONPATH=. python benchmarks/vs_pytorch.py --preset cpu   # C=8/N=1 x 20, C=16/N=5 x 4, CPI x 64
    PYTHONPATH=. python benchmarks/vs_pytorch.py --preset gpu   # cuda PyTorch; C=8/N=1, ours 400, the loop 20
    PYTHONPATH=. python benchmarks/vs_pytorch.py --preset gpu --ours-only   # no CUDA PyTorch there

On the lent device, the stages ``perf`` and ``perf_big`` of ``benchmarks/device/nb201_gpu.sh`` run
this script in time-limited steps (CPI, both sizes, bf16 ranks), sized from the first GPU run.

``--fp32-exact`` turns TF32 off on both sides (JAX and cuDNN default to TF32 convolutions on
Ampere and later GPUs); ``--kernel-grad patches`` and ``--ntk-cotangent-block N`` select our GPU
candidates (``benchmarks/gpu_ab.py`` A/B-tests them). No network access is needed (synthetic images, fresh weights). Results are rewritten after
every proxy, so a run stopped by a time limit keeps what it measured (``"complete": false``).

Outputs ``<out>/vs_pytorch_<tag>.json`` and ``.md`` (default ``benchmarks/results/vs_pytorch``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROXIES = ("naswot", "jacob_cov", "synflow", "snip", "grasp", "fisher", "grad_norm", "ntk_cond",
           "linear_regions", "expressivity", "uncertainty")
NOTES = {
    "fisher": "compared with the per-channel sum; the reference's total broadcasts each channel's "
              "value over its fan-in (C_in*k*k weights) before summing (`ref_total` in the JSON)",
    "synflow": "natural log of the score; BN removed on both sides (ours: BN an exact identity); "
               "reference in float64",
    "ntk_cond": "negated condition number, one repeat; eigenvalues in float64 on both sides "
                "(TE-NAS: float32 symeig)",
    "naswot": "PyTorch times only the hooked forward (the reference's extra forward+backward only "
              "marks modules as visited)",
    "expressivity": "NASWOT log-det with inherited supernet weights (here: the fresh supernet)",
    "uncertainty": "MC-BatchNorm, T mini-batches of statistics, one forward of cat([train_t, eval]) each",
}


#: named defaults (``--preset``); explicit flags override them
PRESETS = {
    "cpu": ["--sizes", "8:1:20,16:5:4", "--cpi-archs", "64"],
    # chunks from the first GPU run (H200): gradient proxies need ~60 MB per architecture at C=8, N=1
    "gpu": ["--device", "cuda", "--sizes", "8:1:400", "--ref-archs", "20", "--chunk-size", "200", "--proxy-chunks",
            "ntk_cond=20,grasp=50,snip=100,grad_norm=100,fisher=100,jacob_cov=100", "--cpi-archs", "0",
            "--repeats", "2", "--tag", "gpu"],
    "smoke": ["--sizes", "4:1:3", "--batch-size", "8", "--ntk-batch-size", "8", "--mc-samples", "3",
              "--mc-batch-size", "8", "--image-size", "16", "--repeats", "1", "--chunk-size", "3", "--cpi-archs", "3",
              "--ref-archs", "2", "--proxy-chunks", "ntk_cond=1",
              "--tag", "smoke"],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--sizes", default="8:1:20,16:5:4",
                   help="comma list of C:N:archs (channels, cells per stage, architectures)")
    p.add_argument("--proxies", default=",".join(PROXIES), help=f"subset of {','.join(PROXIES)}")
    p.add_argument("--batch-size", type=int, default=64, help="evaluation batch (every proxy but synflow)")
    p.add_argument("--ntk-batch-size", type=int, default=72, help="batch of ntk_cond (TE-NAS NB201: 72)")
    p.add_argument("--mc-samples", type=int, default=10, help="uncertainty: MC mini-batches T")
    p.add_argument("--mc-batch-size", type=int, default=64, help="uncertainty: images per MC mini-batch")
    p.add_argument("--bn-mode", default="bnnas", choices=("bnnas", "fair"),
                   help="bnnas = NB201's TinyNetwork exactly; fair = FBN-NAS (BN after skip/pool too)")
    p.add_argument("--chunk-size", type=int, default=0, help="our architectures per compiled call (0: engine default)")
    p.add_argument("--proxy-chunks", default="", metavar="NAME=N,...",
                   help="per-proxy chunk sizes over --chunk-size, e.g. ntk_cond=8,grasp=25 (per-sample gradients "
                        "of a large supernet need smaller chunks; on a GPU the engine also halves a chunk whose "
                        "compiled program would not fit the memory)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timing repeats (median reported)")
    p.add_argument("--warmup", type=int, choices=(0, 1), default=1,
                   help="1: one untimed call per side before the repeats (its seconds are recorded as "
                        "first_call_s). A compiled XLA:CPU program's first run pays a one-time cost, "
                        "0.7 s at C=16, N=5, like its compilation; 0: time it (runs before 2026-11-27 08:20)")
    p.add_argument("--ref-archs", type=int, default=0,
                   help="PyTorch loop over only the first N architectures (0: all). Its archs/s does not depend "
                        "on N (one architecture at a time), while ours needs full chunks: on a GPU, ours scores "
                        "hundreds and the loop a few dozen; values are compared on those N"),
    p.add_argument("--device", default="cpu", help="PyTorch device (cpu | cuda); JAX uses its default backend")
    p.add_argument("--ours-only", action="store_true", help="skip the PyTorch side (no torch needed)")
    p.add_argument("--image-size", type=int, default=32, help="synthetic image side (tests use 16)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for both sides (0: all cores); sets XLA_FLAGS, so it must precede JAX's start")
    p.add_argument("--jax-devices", type=int, default=0,
                   help="JAX host devices on a CPU (0: one per thread of --threads, i.e. per core, so that "
                        "architectures run in parallel as PyTorch's intra-op threads do; 1: one device). Sets "
                        "XLA_FLAGS, so it must precede JAX's start; ignored when JAX already started")
    p.add_argument("--execution", default="auto", choices=("auto", "vmap", "map", "loop", "route"),
                   help="our engine's execution strategy (auto: the backend's measured default, fbnas_jax.engine)")
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                   help="our compute precision (bf16 only for the indicators that keep their ranks)")
    p.add_argument("--fp32-exact", action="store_true",
                   help="float32 convolutions and matmuls in full float32 on both sides: JAX's "
                        "jax_default_matmul_precision=highest, PyTorch's cudnn/cuda allow_tf32=False (on Ampere and "
                        "later GPUs both default to TF32 convolutions; recorded in the JSON and the table)")
    p.add_argument("--kernel-grad", default="lax", choices=("lax", "patches"),
                   help="our convolutions' kernel gradients (all-ops path, and the per-slot ones of --execution "
                        "route's slot convolutions): lax (autodiff) or patches (one im2col GEMM per convolution, a GPU "
                        "candidate: fbnas_jax.models.conv_patches; routed snip 2.1x lax on 2 CPU cores)")
    p.add_argument("--ntk-cotangent-block", type=int, default=1, metavar="N",
                   help="ntk_cond: per-sample VJPs vmapped N at a time (1: one by one, the default)")
    p.add_argument("--cpi-archs", type=int, default=0,
                   help="also time CPI (uncertainty+trainability+expressivity) over this many archs per size "
                        "and extrapolate to all 15,625 (0: skip)")
    p.add_argument("--cpi-full-under", type=float, default=0, metavar="S",
                   help="then score CPI over all 15,625 too, measured rather than extrapolated, when the "
                        "extrapolation says it takes under S seconds (0: never)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results" / "vs_pytorch"))
    p.add_argument("--tag", default=None, help="output name suffix (default: the JAX backend)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a named set of defaults (explicit flags override): " +
                        "; ".join(f"{k}: {' '.join(v)}" for k, v in sorted(PRESETS.items())))
    pre, _ = p.parse_known_args(argv)
    if pre.preset:
        p.set_defaults(**vars(p.parse_args(PRESETS[pre.preset])))
    args = p.parse_args(argv)
    args.size_list = []
    for item in args.sizes.split(","):
        try:
            c, n, a = (int(v) for v in item.split(":"))
        except ValueError:
            p.error(f"--sizes entries are C:N:archs (three integers), got {item!r}")
        if min(c, n, a) < 1:
            p.error(f"--sizes entries must be positive, got {item!r}")
        args.size_list.append((c, n, a))
    args.proxy_list = [s.strip() for s in args.proxies.split(",") if s.strip()]
    args.chunk_of = {}
    for item in filter(None, (s.strip() for s in args.proxy_chunks.split(","))):
        name, _, value = item.partition("=")
        if name not in PROXIES or not value.isdigit() or int(value) < 1:
            p.error(f"--proxy-chunks entries are PROXY=N with N >= 1 and PROXY one of {', '.join(PROXIES)}, "
                    f"got {item!r}")
        args.chunk_of[name] = int(value)
    bad = [s for s in args.proxy_list if s not in PROXIES]
    if bad:
        p.error(f"unknown proxies {bad}; choose from {', '.join(PROXIES)}")
    if args.repeats < 1 or args.batch_size < 2 or args.ntk_batch_size < 2 or args.ref_archs < 0:
        p.error("--repeats must be >= 1 and batch sizes >= 2")
    if args.ntk_cotangent_block < 1:
        p.error("--ntk-cotangent-block must be >= 1")
    return args


# ----------------------------------------------------------------------------- setup

def make_setup(args, channels: int, cells: int, n_archs: int) -> dict:
    """Fresh supernet, data, architectures and our scoring context (same for both sides)."""
    import jax

    from fbnas_jax.data import make_synthetic, normalize
    from fbnas_jax.indicators.base import ScoringContext
    from fbnas_jax.models.nb201 import build_network, init_variables
    from fbnas_jax.spaces import nb201

    net = build_network(channels=channels, cells_per_stage=cells, bn_mode=args.bn_mode,
                        kernel_grad=getattr(args, "kernel_grad", "lax"))
    data = make_synthetic(num_train=max(2000, args.mc_samples * args.mc_batch_size + 256), num_test=16,
                          image_size=args.image_size, seed=args.seed)
    variables = jax.device_get(init_variables(net, args.seed, data.image_shape))
    variables = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    b = max(args.batch_size, args.ntk_batch_size)
    images = normalize(data.train_images[:b], data.mean, data.std).astype(np.float32)
    labels = np.asarray(data.train_labels[:b], np.int32)
    t, bm = args.mc_samples, args.mc_batch_size
    mc = normalize(data.train_images[b:b + t * bm], data.mean, data.std).astype(np.float32)
    mc = mc.reshape((t, bm) + mc.shape[1:])
    options = {name: {"batch_size": args.batch_size, "repeats": 1} for name in PROXIES}
    options["ntk_cond"] = {"batch_size": args.ntk_batch_size, "repeats": 1,
                           "cotangent_block": getattr(args, "ntk_cotangent_block", 1)}
    ctx = ScoringContext(net=net, variables=variables, init_variables=variables, images=images[:args.batch_size],
                         labels=labels[:args.batch_size], train_images=mc, key=jax.random.key(args.seed),
                         options=options)
    ctx_ntk = ScoringContext(net=net, init_variables=variables, images=images[:args.ntk_batch_size],
                             labels=labels[:args.ntk_batch_size], key=jax.random.key(args.seed), options=options)
    rng = np.random.default_rng([args.seed, channels, cells])
    archs = nb201.sample_encodings(rng, n_archs) if n_archs < nb201.NUM_ARCHS else nb201.all_encodings()
    return dict(net=net, variables=variables, images=images, labels=labels, mc=mc, ctx=ctx, ctx_ntk=ctx_ntk,
                archs=np.asarray(archs, np.int32), channels=channels, cells=cells)


# ----------------------------------------------------------------------------- our side

def compile_ours(setup: dict, name: str, chunk: int, execution: str = "auto", precision: str = "float32"):
    """(run(encodings) -> scores, compile seconds, info dict) for our indicator ``name``, through
    the engine (:func:`fbnas_jax.engine.compile_job`, as :func:`fbnas_jax.scoring.score_architectures`)."""
    from fbnas_jax import engine, scoring
    from fbnas_jax.spaces import of_network

    ctx = setup["ctx_ntk"] if name == "ntk_cond" else setup["ctx"]
    devs = _jax_devices()
    chunk = chunk or min(len(setup["archs"]), 16)
    chunk = -(-chunk // len(devs)) * len(devs)  # a multiple of the device count (the last chunk is padded)
    job = engine.plan(ctx, [name], execution=execution, precision=precision)[0]
    compiled = engine.compile_fitting(ctx, job, chunk, devs, of_network(ctx.net).encoding_shape,
                                      log=lambda m: print("            " + m, flush=True))
    chunk = compiled.chunk  # halved where the device memory asked for it
    info = {"chunk": chunk, "devices": len(devs), "execution": job.execution, "precision": job.precision, "memory_mb": compiled.memory_mb}
    if compiled.cap is not None:
        info["route_cap"] = compiled.cap
    # routed jobs pack the architectures into chunks under their capacity (Compiled.pack)
    return (lambda enc: scoring._run_chunks(compiled.run, enc, chunk, pack=compiled.pack)[name]), compiled.compile_s, info


def measure_cpi(setup: dict, args, on_part=None) -> dict:
    """CPI (uncertainty + trainability + expressivity) as ``fbnas score --indicators cpi`` runs
    it (:func:`fbnas_jax.scoring.score_architectures`) over ``--cpi-archs`` architectures:
    compile and run seconds per component job, archs/s, and the extrapolation to all 15,625
    (then all 15,625 measured, when ``--cpi-full-under`` allows). ``on_part(partial dict)``
    after the sample (results as they go)."""
    from fbnas_jax.spaces import nb201

    rng = np.random.default_rng([args.seed, 7])
    enc = nb201.sample_encodings(rng, args.cpi_archs)
    out = _score_cpi(setup, args, enc)
    out["all_15625_min"] = (nb201.NUM_ARCHS / out["archs_per_s"] + out["compile_s"]) / 60
    print(f"            cpi: {out['archs_per_s']:.3g} archs/s (compile {out['compile_s']:.1f} s): all 15,625 in "
          f"~{out['all_15625_min']:.1f} min", flush=True)
    if on_part is not None:
        on_part(out)
    if 0 < out["all_15625_min"] * 60 < args.cpi_full_under:
        full = _score_cpi(setup, args, nb201.all_encodings())
        out["all_15625_measured"] = full
        print(f"            cpi, all 15,625 measured: {full['run_s']:.1f} s + compile {full['compile_s']:.1f} s",
              flush=True)
    return out


def _score_cpi(setup: dict, args, enc) -> dict:
    from fbnas_jax import scoring

    t0 = time.perf_counter()
    res = scoring.score_architectures(setup["ctx"], ["cpi"], enc, chunk_size=args.chunk_size or 16,
                                      execution=args.execution, precision=args.precision, progress=False,
                                      devices=_jax_devices())
    wall_s = time.perf_counter() - t0
    jobs = {}
    for name, t in res.timings.items():
        if "job" in t:
            jobs[t["job"]] = {k: t.get(k) for k in ("compile_s", "run_s", "execution", "chunk_size", "memory_mb",
                                                    "route_cap", "precision")}
    run_s = sum(j["run_s"] for j in jobs.values())
    return {"archs": int(len(enc)), "jobs": jobs, "run_s": run_s, "compile_s": sum(j["compile_s"] for j in jobs.values()),
            "wall_s": wall_s, "archs_per_s": len(enc) / run_s, "finite": int(np.isfinite(res.scores["cpi"]).sum())}


def _jax_devices() -> list:
    """Our devices: every local device of a multi-device CPU (``--jax-devices``), else the first."""
    import jax

    devs = jax.local_devices()
    return list(devs) if jax.default_backend() == "cpu" and len(devs) > 1 else [devs[0]]


# ----------------------------------------------------------------------------- PyTorch side

def torch_side(setup: dict, args):
    """Per-architecture ported PyTorch networks and the batch as tensors."""
    import torch

    sys.path.insert(0, str(HERE))
    from torch_ref.network import build_ported, nchw

    dev = torch.device(args.device)
    kw = dict(channels=setup["channels"], cells=setup["cells"], bn_mode=args.bn_mode)
    archs = setup["archs"][:args.ref_archs or None]
    nets = [build_ported(a, setup["variables"], **kw).to(dev) for a in archs]
    nets_nobn = None
    if "synflow" in args.proxy_list:
        nets_nobn = [build_ported(a, setup["variables"], use_bn=False, **kw).to(dev) for a in archs]
    x = nchw(setup["images"]).to(dev)
    y = torch.as_tensor(setup["labels"], dtype=torch.int64, device=dev)
    mc = torch.stack([nchw(m) for m in setup["mc"]]).to(dev)
    return dict(nets=nets, nets_nobn=nets_nobn, x=x, y=y, mc=mc)


def run_torch(ts: dict, name: str, args) -> list:
    from torch_ref.measures import MEASURES

    fn, with_bn = MEASURES[name]
    nets = ts["nets"] if with_bn else ts["nets_nobn"]
    b = args.ntk_batch_size if name == "ntk_cond" else args.batch_size
    x, y = ts["x"][:b], ts["y"][:b]
    if name == "uncertainty":
        return [fn(net, x, ts["mc"]) for net in nets]
    return [fn(net, x, y) for net in nets]


# ----------------------------------------------------------------------------- comparison

def rel_diff(ours, ref) -> tuple[float, float]:
    """(max, median) over architectures of |ours - ref| / |ref|; equal infinities count 0."""
    a, b = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(all="ignore"):
        d = np.where(same, 0.0, np.abs(a - b) / np.maximum(np.abs(b), 1e-30))
    d = np.where(np.isnan(d), np.inf, d)
    return float(np.max(d)), float(np.median(d))


def measure_size(args, channels: int, cells: int, n_archs: int, on_row=None) -> dict:
    """Every proxy at one size; ``on_row(partial size dict)`` after each (results as they go)."""
    setup = make_setup(args, channels, cells, n_archs)
    enc = setup["archs"]
    ts = None if args.ours_only else torch_side(setup, args)
    rows = []
    for name in args.proxy_list:
        run, compile_s, mem = compile_ours(setup, name, args.chunk_of.get(name, args.chunk_size), args.execution,
                                           args.precision)
        t_ours, t_ref, ours_vals, ref_vals = [], [], None, None
        first = {}  # untimed first calls (see --warmup)
        warm = {"ours": lambda: run(enc), "ref": (lambda: run_torch(ts, name, args)) if ts is not None else None}
        for side, call in (warm.items() if args.warmup else ()):
            if call is not None:
                t0 = time.perf_counter()
                call()
                first[side] = time.perf_counter() - t0
        for r in range(args.repeats):
            order = ("ours", "ref") if r % 2 == 0 else ("ref", "ours")
            for side in order:
                if side == "ref" and ts is None:
                    continue
                t0 = time.perf_counter()
                if side == "ours":
                    ours_vals = run(enc)
                    t_ours.append(time.perf_counter() - t0)
                else:
                    ref_vals = run_torch(ts, name, args)
                    t_ref.append(time.perf_counter() - t0)
        row = {"proxy": name, "archs": int(len(enc)), "compile_s": compile_s, **mem, "first_call_s": first,
               "ours_s": t_ours, "ours_archs_per_s": len(enc) / statistics.median(t_ours),
               "ours_values": [float(v) for v in ours_vals]}
        if ts is not None:
            n_ref = len(ref_vals)
            row["ref_archs"] = n_ref
            ours_cmp = ours_vals[:n_ref]
            ref_total = None
            if name == "fisher":
                ref_total = [float(v[1]) for v in ref_vals]
                ref_vals = [v[0] for v in ref_vals]
            mx, med = rel_diff(ours_cmp, ref_vals)
            row.update({"ref_s": t_ref, "ref_archs_per_s": n_ref / statistics.median(t_ref),
                        "ref_values": [float(v) for v in ref_vals], "max_rel_diff": mx, "median_rel_diff": med})
            if ref_total is not None:
                row["ref_total"] = ref_total
            row["speedup"] = row["ours_archs_per_s"] / row["ref_archs_per_s"]
        rows.append(row)
        print(_row_line(row), flush=True)
        if on_row is not None:
            on_row({"channels": channels, "cells": cells, "archs": int(len(enc)), "rows": rows})
    out = {"channels": channels, "cells": cells, "archs": int(len(enc)), "encodings": enc.tolist(), "rows": rows}
    if args.cpi_archs > 0:
        part = None if on_row is None else (lambda cp: on_row(dict(out, cpi=cp)))
        out["cpi"] = measure_cpi(setup, args, on_part=part)
    return out


def _row_line(r: dict) -> str:
    s = f"{r['proxy']:>15}: ours {r['ours_archs_per_s']:9.3g} archs/s (compile {r['compile_s']:5.1f} s)"
    if "ref_archs_per_s" in r:
        s += (f" | PyTorch {r['ref_archs_per_s']:8.3g} archs/s | x{r['speedup']:6.2f} | max rel diff "
              f"{r['max_rel_diff']:.1e}")
    return s


# ----------------------------------------------------------------------------- report

def environment(args) -> dict:
    import jax

    from fbnas_jax.runtime import device_summary

    env = {"date": dt.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
           "jax_devices": len(_jax_devices()),
           "cpu_count": os.cpu_count(), "python": platform.python_version(), **device_summary(),
           "numpy": np.__version__, "jaxlib_backend": jax.default_backend()}
    env["fp32"] = precision_flags()
    if not args.ours_only:
        import torch

        env.update({"torch": torch.__version__, "torch_device": args.device, "torch_threads": torch.get_num_threads()})
    return env


_TF32_DEFAULTS: dict = {}


def set_fp32_exact(on: bool) -> dict:
    """Full float32 (``on``) or each library's default (TF32 convolutions on recent GPUs) for
    float32 convolutions and matmuls, on both sides; returns :func:`precision_flags`. Takes
    effect for programs compiled afterwards (JAX reads the flag when it traces)."""
    import jax

    jax.config.update("jax_default_matmul_precision", "highest" if on else None)
    try:
        import torch
    except ImportError:
        return precision_flags()
    if not _TF32_DEFAULTS:
        _TF32_DEFAULTS.update(cudnn=torch.backends.cudnn.allow_tf32, matmul=torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False if on else _TF32_DEFAULTS["cudnn"]
    torch.backends.cuda.matmul.allow_tf32 = False if on else _TF32_DEFAULTS["matmul"]
    return precision_flags()


def precision_flags() -> dict:
    """The float32 precision settings in force (recorded next to every timing and difference)."""
    import jax

    try:
        jax_prec = jax.config.jax_default_matmul_precision
    except AttributeError:  # JAX versions that read flags only through their values table
        jax_prec = jax.config.values.get("jax_default_matmul_precision", "unknown")
    out = {"jax_default_matmul_precision": jax_prec}
    if "torch" in sys.modules:
        import torch

        out.update(torch_cudnn_allow_tf32=bool(torch.backends.cudnn.allow_tf32),
                   torch_matmul_allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32))
    return out


def markdown(out: dict) -> str:
    e, a = out["env"], out["args"]
    lines = [f"# Ours vs a PyTorch loop ({e['device']}, JAX {e['jax']}"
             + (f", PyTorch {e['torch']} on {e['torch_device']}" if "torch" in e else "") + f", {e['date']})", "",
             f"Load average (1, 5, 15 min) before {fmt_load(out['load_before'])}, after {fmt_load(out['load_after'])}; "
             f"{e['cpu_count']} cores, {a['threads'] or 'all'} threads per side. NB201 bn_mode={a['bn_mode']}, fresh weights, "
             f"synthetic {a['image_size']}x{a['image_size']} images; "
             f"batch {a['batch_size']} (ntk_cond {a['ntk_batch_size']}), uncertainty {a['mc_samples']} MC batches "
             f"of {a['mc_batch_size']}. Median of {a['repeats']} interleaved runs{' after one untimed call per side' if a.get('warmup') else ''}; compile excluded from archs/s. "
             f"Our execution: {a.get('execution', 'auto')} -> {_executions(out)}, precision {a.get('precision', 'float32')}"
             f", on {e.get('jax_devices', 1)} JAX device(s) (architectures split across them). "
             f"Float32 convolutions/matmuls: {fp32_note(e.get('fp32'))}; kernel gradients {a.get('kernel_grad', 'lax')}, "
             f"ntk_cond cotangent block {a.get('ntk_cotangent_block', 1)}.",
             ""]
    for size in out["sizes"]:
        has_ref = any("ref_archs_per_s" in r for r in size["rows"])
        n_ref = min((r.get("ref_archs", size["archs"]) for r in size["rows"]), default=size["archs"])
        loop_note = f" (the PyTorch loop on the first {n_ref}; values compared there)" if n_ref < size["archs"] else ""
        if not size["rows"]:  # CPI only (--proxies ""): no side-by-side table
            lines += [f"## C={size['channels']}, N={size['cells']}", ""]
        elif has_ref:
            lines += [f"## C={size['channels']}, N={size['cells']}: {size['archs']} architectures{loop_note}", ""]
            lines += ["| proxy | ours, archs/s | PyTorch loop, archs/s | ours / PyTorch | our compile, s | "
                      "max rel. diff |", "|---|---|---|---|---|---|"]
        else:
            lines += [f"## C={size['channels']}, N={size['cells']}: {size['archs']} architectures", ""]
            lines += ["| proxy | ours, archs/s | our compile, s |", "|---|---|---|"]
        for r in size["rows"]:
            if has_ref:
                lines.append(f"| {r['proxy']} | {r['ours_archs_per_s']:.3g} | {r['ref_archs_per_s']:.3g} | "
                             f"{r['speedup']:.2f} | {r['compile_s']:.1f} | {r['max_rel_diff']:.1e} |")
            else:
                lines.append(f"| {r['proxy']} | {r['ours_archs_per_s']:.3g} | {r['compile_s']:.1f} |")
        if "cpi" in size:
            cp = size["cpi"]
            lines.append(f"CPI (uncertainty + trainability + expressivity, `score_architectures`): "
                         f"{cp['archs_per_s']:.3g} archs/s over {cp['archs']} archs, compile {cp['compile_s']:.1f} s; "
                         f"all 15,625 extrapolated: {cp['all_15625_min']:.1f} min.")
            for name, job in cp.get("jobs", {}).items():
                mem = f", XLA memory {job['memory_mb'] / 1024:.2f} GB" if job.get("memory_mb") is not None else ""
                lines.append(f"- {name}: {job['execution']}, chunks of {job['chunk_size']}, run {job['run_s']:.2f} s, "
                             f"compile {job['compile_s']:.1f} s{mem}")
            if "all_15625_measured" in cp:
                full = cp["all_15625_measured"]
                lines.append(f"CPI over all 15,625, measured: {full['run_s']:.1f} s of scoring + {full['compile_s']:.1f} s "
                             f"of compilation ({full['wall_s']:.1f} s wall, {full['finite']} finite scores).")
        lines.append("")
    if not out.get("complete", True):
        lines += ["**Partial: the run was still going (or was stopped) when this was written.**", ""]
    lines += ["Conventions where the reference differs (values compared after aligning them):", ""]
    lines += [f"* `{k}`: {v}" for k, v in NOTES.items() if k in a["proxy_list"]]
    return "\n".join(lines) + "\n"


def fp32_note(flags) -> str:
    """One phrase for the markdown: exact float32 or the libraries' defaults (TF32 on GPUs)."""
    if not flags:
        return "not recorded"
    exact = flags.get("jax_default_matmul_precision") == "highest" and not flags.get("torch_cudnn_allow_tf32", False)
    detail = ", ".join(f"{k}={v}" for k, v in flags.items())
    return ("exact (--fp32-exact: " if exact else "library defaults (TF32 convolutions on Ampere+ GPUs: ") + detail + ")"


def _executions(out) -> str:
    return ", ".join(sorted({str(r.get("execution")) for s in out["sizes"] for r in s["rows"]})) or "-"


def fmt_load(load) -> str:
    return "/".join(f"{v:.2f}" for v in load)


def set_threads(n: int) -> None:
    """Both sides on ``n`` CPU threads (XLA:CPU's Eigen pool and PyTorch's intra-op pool)."""
    if n <= 0:
        return
    if "jax" in sys.modules:
        print("--threads: JAX already started; XLA thread count unchanged", file=sys.stderr)
    else:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                                   f" intra_op_parallelism_threads={n}").strip()
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def set_jax_devices(n: int, threads: int, device: str) -> None:
    """Expose ``n`` JAX host devices (0: one per thread on a CPU run, else 1). XLA:CPU runs
    one program mostly on one core; per-architecture loops split over host devices run on
    all of them (the engine's ``shard_map``), as PyTorch spreads its ops over its threads."""
    explicit = n > 0
    if n == 0:
        n = (threads or os.cpu_count() or 1) if device == "cpu" else 1
    if n <= 1:
        return
    if "jax" in sys.modules:  # e.g. main() called from a test: keep JAX's devices
        if explicit:
            print("--jax-devices: JAX already started; its device count is unchanged", file=sys.stderr)
        return
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={n}").strip()


def main(argv=None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    set_jax_devices(args.jax_devices, args.threads, args.device)
    if not args.ours_only:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("PyTorch is not installed: pip install -e '.[bench]' (or pass --ours-only)", file=sys.stderr)
            return 2
    set_fp32_exact(args.fp32_exact)
    out = {"env": environment(args), "args": {k: v for k, v in vars(args).items() if k not in ("size_list",)},
           "load_before": list(os.getloadavg()), "sizes": [], "complete": False}
    tag = args.tag or out["env"]["backend"]
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)

    def save(partial=None):
        """Write JSON + markdown now (a killed run keeps what it measured)."""
        snap = dict(out, sizes=out["sizes"] + ([partial] if partial else []), load_after=list(os.getloadavg()))
        (path / f"vs_pytorch_{tag}.json").write_text(json.dumps(snap, indent=1))
        md = markdown(snap)
        (path / f"vs_pytorch_{tag}.md").write_text(md)
        return md

    for c, n, a in args.size_list:
        print(f"== C={c}, N={n}: {a} architectures", flush=True)
        out["sizes"].append(measure_size(args, c, n, a, on_row=save))
        save()
    out["complete"] = True
    print(save())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
