"""Does bfloat16 keep the float32 ranking? Kendall tau of fp32 vs bf16 scores, every indicator.

The engine runs an indicator in bfloat16 (convolutions and the head; BatchNorm, losses and
host linear algebra stay float32/float64) only if it is in ``fbnas_jax.engine.BF16_SAFE``:
those whose fp32 and bf16 scores of 64 architectures rank-agree with Kendall tau >= 0.98
(issue 14). This script measures that on the same setup as ``benchmarks/vs_pytorch.py``
(fresh NB201 supernet, synthetic images, the same architectures) through
``fbnas_jax.engine.precision_agreement``; ``tests/test_precision.py`` checks the members of
``BF16_SAFE`` at test size (C=4, 16 architectures).

    PYTHONPATH=. python benchmarks/bf16_ranks.py                  # C=8, N=1, 64 archs (CPU: slow, bf16 is emulated)
    PYTHONPATH=. python benchmarks/bf16_ranks.py --sizes 16:5:64  # on a GPU

Outputs ``<out>/bf16_ranks_<tag>.json`` and ``.md`` (rewritten after every size).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import vs_pytorch  # noqa: E402  (shared setup: network, data, architectures)

#: cheapest first, ntk_cond last (slowest): a run stopped early keeps the most indicators
INDICATORS = ("naswot", "synflow", "expressivity", "supernet_accuracy", "supernet_neg_loss", "linear_regions",
              "jacob_cov", "fisher", "snip", "grad_norm", "uncertainty", "grasp", "ntk_cond")
THRESHOLD = 0.98


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="8:1:64", help="comma list of C:N:archs")
    p.add_argument("--indicators", default=",".join(INDICATORS))
    p.add_argument("--execution", default="auto", choices=("auto", "vmap", "map", "loop", "route"))
    p.add_argument("--chunk-size", type=int, default=16)
    p.add_argument("--out", default=str(HERE / "results" / "bf16_ranks"))
    p.add_argument("--tag", default="")
    p.add_argument("--setup", default="", metavar="FLAGS",
                   help="extra flags for the shared setup of benchmarks/vs_pytorch.py, e.g. "
                        "'--batch-size 32 --ntk-batch-size 16 --mc-samples 4 --mc-batch-size 32 --bn-mode fair' "
                        "(CPU: bf16 is emulated, smaller batches keep the run short)")
    args = p.parse_args(argv)
    base = vs_pytorch.parse_args(["--ours-only", "--sizes", args.sizes] + args.setup.split())
    import jax

    from fbnas_jax import engine

    names = [n for n in args.indicators.split(",") if n]
    out = {"date": dt.datetime.now().isoformat(timespec="seconds"), "jax": jax.__version__,
           "device": str(jax.devices()[0]), "load_before": list(os.getloadavg()), "threshold": THRESHOLD,
           "setup": {k: getattr(base, k) for k in ("batch_size", "ntk_batch_size", "mc_samples", "mc_batch_size",
                                                     "bn_mode", "image_size", "seed")}, "sizes": []}
    tag = args.tag or jax.default_backend()
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    for c, n, a in base.size_list:
        setup = vs_pytorch.make_setup(base, c, n, a)
        row = {"channels": c, "cells": n, "archs": a, "indicators": {}}
        out["sizes"].append(row)
        for name in names:
            ctx = setup["ctx_ntk"] if name == "ntk_cond" else setup["ctx"]
            t0 = time.perf_counter()
            res = engine.precision_agreement(ctx, [name], setup["archs"], execution=args.execution,
                                             chunk=min(args.chunk_size, a))
            row["indicators"][name] = dict(res[name], wall_s=round(time.perf_counter() - t0, 1),
                                           load=list(os.getloadavg()))
            print(f"C={c} N={n} {name}: tau {res[name]['tau']:.3f}, max rel diff {res[name]['max_rel_diff']:.1e}",
                  flush=True)
            out["load_after"] = list(os.getloadavg())
            (path / f"bf16_ranks_{tag}.json").write_text(json.dumps(out, indent=1))
            (path / f"bf16_ranks_{tag}.md").write_text(markdown(out))
    print(markdown(out))
    return 0


def markdown(out) -> str:
    lines = [f"# fp32 vs bf16 rank agreement ({out['device']}, JAX {out['jax']}, {out['date']})", "",
             f"Load average before {out['load_before'][0]:.2f}, after {out.get('load_after', [float('nan')])[0]:.2f}. "
             f"Setup: {out['setup']}. Safe = Kendall tau >= {out['threshold']}.", ""]
    for s in out["sizes"]:
        lines += [f"## C={s['channels']}, N={s['cells']}: {s['archs']} architectures", "",
                  "| indicator | Kendall tau | max rel. diff | safe | wall s (fp32 + bf16, compile incl.) |",
                  "|---|---|---|---|---|"]
        for name, r in s["indicators"].items():
            lines.append(f"| {name} | {r['tau']:.3f} | {r['max_rel_diff']:.1e} | "
                         f"{'yes' if r['tau'] >= out['threshold'] else 'no'} | {r.get('wall_s', float('nan')):.0f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
