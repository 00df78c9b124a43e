"""Estimate the device time of the NB201 protocol per stage, from FLOP counts (no GPU needed).

Why: a device session has ~11 usable minutes (15 minus a machine start), 10 a command, and no
GPU number exists yet; the presets must be sized before the first run. This is an ESTIMATE,
never a measurement: every figure scales with the assumed effective rate ``--tflops``.

Model (stated so that the first GPU run can recalibrate it: divide the measured seconds of a
stage by the estimate and scale ``--tflops``):

* cost of one image through the network as executed, from the NB201 cost model
  (:func:`fbnas_jax.spaces.cost.nb201_costs`, multiply-accumulates at C=16, N=5, 32x32;
  1 MAC = 2 FLOP): the *supernet* computes every candidate op of every edge and selects with
  ``jnp.where`` (all-op cost: 3x3 + 1x1 convolutions on every edge, 244 M MACs); a
  *stand-alone* net computes its own ops only (mean over the space: 55 M MACs);
* a training step or a gradient indicator costs 3 forward-equivalents (FE) per image (forward,
  backward); a forward indicator 1 FE per image; FairNAS trains 5 paths per step;
* ``--tflops`` effective FP32/TF32 rate on one H100. Default 12: these convolutions have 16-64
  channels, so they are memory-bound; a fused all-op NB201 step at batch 256 moves ~20-60 GB
  (tensors of 17 MB, ~25 passes per edge forward, x3 with the backward) in ~20 ms at
  ~2.5 TB/s, i.e. ~0.25 TFLOP / 20 ms = 12 TFLOP/s; the dense TF32 peak (495) is irrelevant;
* ``--compile-s`` seconds of XLA compilation per distinct program (GPU autotuning included;
  on the loaded 2-core CPU here the C=8, N=1 training step took 63 s, indicators 2-35 s).

    python benchmarks/device/estimate_gpu_time.py                     # the gpu preset
    python benchmarks/device/estimate_gpu_time.py --tflops 6          # pessimistic
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ (nb201_protocol)

# forward-equivalents per image and the batch each indicator uses (nb201_protocol presets and
# fbnas_jax.indicators defaults); mc: (mc_batch + eval_batch) per Monte-Carlo sample
GRADIENT = {"synflow", "jacob_cov", "snip", "grad_norm", "fisher"}
PROXY_BATCH = {"naswot": 128, "synflow": 1, "jacob_cov": 128, "snip": 64, "grad_norm": 64, "fisher": 64,
               "grasp": 64, "linear_regions": 128, "ntk_cond": 64}


def macs_per_image() -> tuple[float, float]:
    """(all-op supernet MACs, mean stand-alone MACs) per 32x32 image at C=16, N=5."""
    import numpy as np

    from fbnas_jax.spaces import cost, nb201

    flops = cost.nb201_costs(nb201.all_encodings())[1]
    one = {k: cost.nb201_costs(np.full((1, 6), k))[1][0] for k in range(5)}
    return (one[3] + one[2] - one[0]) * 1e6, float(flops.mean()) * 1e6


def estimate(p: dict, tflops: float, compile_s: float, images: int = 50_000) -> list[tuple[str, float, str]]:
    """[(stage, seconds, how)] for preset ``p``."""
    sup, sub = macs_per_image()
    rate = tflops * 1e12

    def secs(fe_images: float, macs: float) -> float:
        return fe_images * 2 * macs / rate

    rows = [("data", 45.0, "decode the 60,000 JPEGs of the archive once (assumed 30-60 s; cached for call 2)")]
    steps = images // 256
    def epochs_of(overrides, default):
        return next((float(o.split("=", 1)[1]) for o in overrides if o.startswith("train.epochs=")), default)

    spos = epochs_of(p["overrides"], 10)  # the configs' 10 epochs unless the preset overrides them
    fair_nas = epochs_of(p["fairnas_overrides"], spos)
    for tag, epochs, paths in (("bnnas", spos, 1), ("fair", spos, 1), ("fairnas", fair_nas, 5)):
        t = secs(epochs * steps * 256 * 3 * paths, sup)
        cap = p.get("train_budget_s") or float("inf")
        rows.append((f"train {tag}", compile_s + min(t, cap),
                     f"{epochs:g} ep x {steps} steps x 256 x {paths} path(s) x 3 FE, all-op; "
                     f"{t:.0f} s of steps{' (capped)' if t > cap else ''} + compile"))
    pool = p["pool"]
    for col in p["columns"]:
        ind, _, tag = col.partition("@")
        if ind in ("gamma", "trainability", "params", "flops", "cpi"):
            continue
        if ind == "expressivity" or ind == "supernet_accuracy":
            fe, how = p["eval_batch_size"], f"{p['eval_batch_size']} images"
        elif ind == "uncertainty":
            fe = p["mc_samples"] * (p["mc_batch_size"] + p["eval_batch_size"])
            how = f"{p['mc_samples']} MC x ({p['mc_batch_size']}+{p['eval_batch_size']}) images"
        else:
            b = p["indicator_options"].get(ind, {}).get("batch_size", PROXY_BATCH.get(ind, 64))
            fe = b * (3 if ind in GRADIENT else 6 if ind == "grasp" else 9 if ind == "ntk_cond" else 1)
            how = f"batch {b}" + (" x 3 (gradient)" if ind in GRADIENT else "")
        rows.append((f"score {col}", compile_s / 2 + secs(pool * fe, sup), f"{pool} archs x {how}, all-op"))
    rows.append(("analyze", 30.0, "CPU: correlations, plots, EA 10 seeds x 4 methods (measured ~10-30 s on CPU)"))
    per_net = 2 * secs(images * 3 + p["standalone_eval_images"], sub)  # both placements
    budget = p.get("standalone_budget_s") or float("inf")
    fit = min(p["standalone_archs"], int(budget // per_net)) if per_net > 0 else p["standalone_archs"]
    rows.append(("standalone (own call)", 2 * compile_s + min(budget, p["standalone_archs"] * per_net),
                 f"{fit} nets per placement fit its {budget:.0f} s budget: 1 epoch x 3 FE + eval per net, own ops "
                 f"(mean {sub / 1e6:.0f} M MACs), {per_net:.2f} s per net (both placements)"))
    return rows


def main(argv=None) -> int:
    from nb201_protocol.presets import PRESETS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--preset", default="gpu", choices=sorted(PRESETS))
    ap.add_argument("--tflops", type=float, default=12.0, help="assumed effective rate on one H100 (default 12)")
    ap.add_argument("--compile-s", type=float, default=30.0, help="assumed XLA compile seconds per program")
    ap.add_argument("--deadline", type=float, default=440.0,
                    help="seconds after which no score column starts (the device script: its budget - 60)")
    a = ap.parse_args(argv)
    if a.tflops <= 0 or a.compile_s < 0:
        ap.error("--tflops must be > 0 and --compile-s >= 0")
    sup, sub = macs_per_image()
    print(f"ESTIMATE (not measured): preset {a.preset}, {a.tflops:g} TFLOP/s effective, {a.compile_s:g} s compile "
          f"per program; all-op supernet {sup / 1e6:.0f} M MACs/image, stand-alone mean {sub / 1e6:.0f} M\n")
    print("| stage | seconds | cumulative | how |\n|---|---|---|---|")
    t = 0.0
    for stage, sec, how in estimate(PRESETS[a.preset], a.tflops, a.compile_s):
        if stage.startswith("standalone"):
            print(f"\nsupernets call: {t:.0f} s estimated if nothing is cut; the device script's deadline "
                  f"({a.deadline:g} s) skips the score columns that would start later.\n")
            t = 0.0
        cut = " (after the deadline: skipped)" if stage.startswith("score") and t > a.deadline else ""
        t += sec if not cut else 0.0
        print(f"| {stage} | {sec:.0f} | {t:.0f} | {how}{cut} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
