"""Same-process A/B for branch ``grad17``: the kernel gradient in blocks of samples, or not.

Variants, both through the engine's ``map`` execution (CPU default, architectures split over
one host device per core), same supernet, batch and architectures as
``benchmarks/vs_pytorch.py``, interleaved per repeat with the PyTorch loop:

* ``before``: ``conv.KGRAD_SPLIT_MIN_PIXELS = 0``: every canonical convolution's kernel
  gradient is one channels-as-batch convolution (main until this branch);
* ``after``: the default (``kernel_grad_groups``: outputs of >= 256 pixels summed over blocks
  of samples).

The module constant is read when a program is traced, so each variant is compiled with its
own value. Example (C=16, N=5: ~20-60 s of compilation per program and variant)::

    PYTHONPATH=. nice -n 10 python benchmarks/results/vs_pytorch/grad17_ab.py --channels 16 --cells 5 --archs 4

Writes ``--out`` (JSON: rates, seconds, compile times, value differences, load, date) and prints
one line per proxy. Each side is called once untimed before the timed repeats: a compiled
XLA:CPU program's first run pays a one-time cost (~0.7 s at C=16, N=5), recorded as
``first_call_s``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={os.cpu_count()}").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

import vs_pytorch as V  # noqa: E402
from fbnas_jax import engine  # noqa: E402
from fbnas_jax.models import conv  # noqa: E402

VARIANTS = {"before": 0, "after": conv.KGRAD_SPLIT_MIN_PIXELS}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=5)
    p.add_argument("--archs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--proxies", default="snip,grad_norm,fisher,grasp,ntk_cond")
    p.add_argument("--no-torch", action="store_true", help="only the two JAX variants")
    p.add_argument("--out", default=str(HERE / "grad17_ab.json"))
    a = p.parse_args(argv)
    args = V.parse_args(["--sizes", f"{a.channels}:{a.cells}:{a.archs}", "--proxies", a.proxies,
                         "--repeats", str(a.repeats)])
    setup = V.make_setup(args, a.channels, a.cells, a.archs)
    enc = setup["archs"]
    ts = None if a.no_torch else V.torch_side(setup, args)
    devs = jax.local_devices()
    chunk = -(-min(len(enc), 16) // len(devs)) * len(devs)
    out = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "jax": jax.__version__,
           "devices": [str(d) for d in devs], "cpu_count": os.cpu_count(), "channels": a.channels,
           "cells": a.cells, "archs": int(len(enc)), "chunk": chunk, "repeats": a.repeats,
           "variants": VARIANTS, "load_before": list(os.getloadavg()), "rows": []}
    padded = np.concatenate([enc, np.repeat(enc[:1], (-len(enc)) % chunk, 0)])
    for name in args.proxy_list:
        ctx = setup["ctx_ntk"] if name == "ntk_cond" else setup["ctx"]
        job = engine.plan(ctx, [name], execution="map")[0]
        runs, compile_s = {}, {}
        for label, min_pixels in VARIANTS.items():
            conv.KGRAD_SPLIT_MIN_PIXELS = min_pixels
            comp = engine.compile_job(ctx, job, chunk, devs, (6,))
            runs[label], compile_s[label] = comp.run, comp.compile_s
        conv.KGRAD_SPLIT_MIN_PIXELS = VARIANTS["after"]
        sides = list(runs) + ([] if ts is None else ["torch"])
        times = {k: [] for k in sides}
        vals, first = {}, {}
        for r in range(-1, a.repeats):  # r = -1: one untimed first call per side
            for side in (sides if r % 2 == 0 else sides[::-1]):
                t0 = time.perf_counter()
                if side == "torch":
                    ref = np.asarray(V.run_torch(ts, name, args), np.float64)
                    vals[side] = ref[:, 0] if ref.ndim == 2 else ref  # fisher: (per-channel sum, total)
                else:
                    vals[side] = np.concatenate([runs[side](padded[i:i + chunk])[name]
                                                 for i in range(0, len(padded), chunk)])[:len(enc)].astype(np.float64)
                if r < 0:
                    first[side] = time.perf_counter() - t0
                else:
                    times[side].append(time.perf_counter() - t0)
        rate = {k: len(enc) / statistics.median(v) for k, v in times.items()}
        row = {"proxy": name, "archs_per_s": rate, "seconds": times, "first_call_s": first, "compile_s": compile_s,
               "after_over_before": rate["after"] / rate["before"],
               "max_rel_diff_after_vs_before": V.rel_diff(vals["after"], vals["before"])[0],
               "load": list(os.getloadavg()), "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        if ts is not None:
            row["vs_torch"] = {k: rate[k] / rate["torch"] for k in runs}
            row["max_rel_diff_vs_torch"] = V.rel_diff(vals["after"], vals["torch"])[0]
        out["rows"].append(row)
        print(name, "after/before", round(row["after_over_before"], 3), "vs torch", json.dumps(row.get("vs_torch")),
              "archs/s", json.dumps({k: round(v, 3) for k, v in rate.items()}), "compile", json.dumps(compile_s),
              "load", row["load"], flush=True)
        Path(a.out).write_text(json.dumps(out, indent=1))
    out["load_after"] = list(os.getloadavg())
    Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
