"""Same-process A/B for branch ``hostla16``: host linear algebra inside vs outside the compiled programs.

Variants, all through the engine's ``map`` execution (CPU default), same supernet, batch and
architectures as ``benchmarks/vs_pytorch.py`` (C=8, N=1 by default), interleaved per repeat with
the PyTorch loop:

* ``before``: what main did until this branch: the per-architecture program calls the host
  step through ``jax.pure_callback`` inside ``lax.map`` (one callback per architecture), and
  the engine ran such jobs on ONE device (the callback deadlock rule).
* ``after_1dev``: this branch on one device: the program returns the (B, B) intermediates,
  the host step runs per chunk after ``device_get``.
* ``after``: this branch on every host device (2 here: ``shard_map`` over ``lax.map``).

    PYTHONPATH=. nice -n 5 python benchmarks/results/vs_pytorch/hostla16_ab.py --archs 10 --repeats 2

Writes ``hostla16_ab.json`` beside this file (``--out``) and prints a markdown table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
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
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import vs_pytorch as V  # noqa: E402
from fbnas_jax import engine  # noqa: E402
from fbnas_jax.indicators import base  # noqa: E402
from fbnas_jax.spaces import of_network  # noqa: E402


def compile_before(ctx, job, chunk, dev):
    """main's path: the host step inside the per-architecture program (``jax.pure_callback``,
    one per architecture inside ``lax.map``), on one device."""
    f, state = base.split_state(engine.build_job(ctx, job))
    steps = {n: base.get(n).finish_fn(ctx) for n in job.names}

    def host(name, z):
        return np.asarray(steps[name](jax.tree.map(lambda t: np.asarray(t)[None], z)), np.float32)[0]

    def per_arch(*args):
        out = engine._as_dict(job, f(*args))
        res = {k: (a if base.get(k).finish is None else
                   jax.pure_callback(functools.partial(host, k), jax.ShapeDtypeStruct((), jnp.float32), a))
               for k, a in out.items()}
        return res if len(res) > 1 else res[job.names[0]]

    vec = base.vectorize(functools.partial(per_arch, *state), "map")
    f2, state2 = base.split_state(vec)
    t0 = time.perf_counter()
    enc = jax.ShapeDtypeStruct((chunk,) + of_network(ctx.net).encoding_shape, jnp.int32)
    compiled, state2, place = engine._lower(f2, state2, enc, [dev])
    run = lambda e: {k: np.asarray(v) for k, v in jax.device_get(engine._as_dict(job, compiled(*state2, place(e)))).items()}  # noqa: E731
    return run, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--cells", type=int, default=1)
    p.add_argument("--archs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--proxies", default="naswot,jacob_cov,ntk_cond,expressivity")
    p.add_argument("--out", default=str(HERE / "hostla16_ab.json"))
    a = p.parse_args(argv)
    args = V.parse_args(["--sizes", f"{a.channels}:{a.cells}:{a.archs}", "--proxies", a.proxies,
                         "--repeats", str(a.repeats)])
    setup = V.make_setup(args, a.channels, a.cells, a.archs)
    enc = setup["archs"]
    ts = V.torch_side(setup, args)
    devs = jax.local_devices()
    chunk = -(-min(len(enc), 16) // len(devs)) * len(devs)
    out = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "jax": jax.__version__,
           "devices": [str(d) for d in devs], "cpu_count": os.cpu_count(), "channels": a.channels,
           "cells": a.cells, "archs": int(len(enc)), "chunk": chunk, "repeats": a.repeats,
           "load_before": list(os.getloadavg()), "rows": []}
    for name in args.proxy_list:
        ctx = setup["ctx_ntk"] if name == "ntk_cond" else setup["ctx"]
        job = engine.plan(ctx, [name], execution="map")[0]
        runs, compile_s = {}, {}
        before, compile_s["before"] = compile_before(ctx, job, chunk, devs[0])
        runs["before"] = lambda e, r=before: r(e)
        for label, d in (("after_1dev", devs[:1]), ("after", devs)):
            comp = engine.compile_job(ctx, job, chunk, d, (6,))
            runs[label], compile_s[label] = comp.run, comp.compile_s
        times = {k: [] for k in list(runs) + ["torch"]}
        vals = {}
        sides = list(runs) + ["torch"]
        for r in range(a.repeats):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                t0 = time.perf_counter()
                if side == "torch":
                    vals[side] = np.asarray(V.run_torch(ts, name, args), np.float64)
                else:
                    vals[side] = np.concatenate([runs[side](enc[i:i + chunk] if len(enc[i:i + chunk]) == chunk else
                                                            np.concatenate([enc[i:], np.repeat(enc[:1], chunk - len(enc[i:]), 0)]))[name]
                                                 for i in range(0, len(enc), chunk)])[:len(enc)].astype(np.float64)
                times[side].append(time.perf_counter() - t0)
        rate = {k: len(enc) / statistics.median(v) for k, v in times.items()}
        row = {"proxy": name, "archs_per_s": rate, "seconds": times, "compile_s": compile_s,
               "vs_torch": {k: rate[k] / rate["torch"] for k in runs},
               "max_rel_diff_vs_before": {k: V.rel_diff(vals[k], vals["before"])[0] for k in runs},
               "max_rel_diff_vs_torch": V.rel_diff(vals["after"], vals["torch"])[0],
               "load": list(os.getloadavg())}
        out["rows"].append(row)
        print(name, json.dumps({k: round(v, 3) for k, v in row["vs_torch"].items()}), "archs/s",
              json.dumps({k: round(v, 3) for k, v in rate.items()}), "load", row["load"], flush=True)
        Path(a.out).write_text(json.dumps(out, indent=1))
    out["load_after"] = list(os.getloadavg())
    Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
