"""A/B of the GPU candidates for the gradient proxies that miss ">= 10x the PyTorch loop" (issue 14).

The first GPU run (H200, JAX 0.11.2, 2026-11-27, C=8, N=1, ours / the PyTorch loop): ntk_cond
2.34x (ours 9.1 archs/s), snip 5.25x, grad_norm 5.08x, grasp 5.27x with a max relative
difference of 0.44 against PyTorch (3.6e-4 on a CPU). One process, four experiments in order
of value, each result appended to the JSON as soon as it is measured:

1. ``ntk_blocks``: ntk_cond with the per-sample VJPs vmapped ``--blocks`` at a time (option
   ``cotangent_block``; 1 = today: 72 sequential backward passes per chunk), chunk 20, 40 archs.
2. ``kernel_grad``: snip and grad_norm with the convolutions' kernel gradients by XLA's autodiff
   (under vmap over architectures: grouped convolutions) vs one im2col GEMM
   (``kernel_grad="patches"``, :mod:`fbnas_jax.models.conv_patches`), chunk 100, 200 archs.
3. ``fp32_exact``: ntk_cond (the fastest block of 1.), snip and grasp with float32 convolutions
   and matmuls exact (JAX ``jax_default_matmul_precision=highest``, PyTorch ``allow_tf32=False``)
   vs each library's default (TF32 convolutions on Ampere+), values against the PyTorch loop in
   the same mode: is grasp's 0.44 TF32, and what does exact float32 cost?
4. ``grasp_patches``: grasp (second order: the patches family is closed under reverse mode)
   with the default vs the patches kernel gradient, chunk 50, 200 archs.

Timing: per experiment every variant is compiled first, then each runs once untimed (warm-up),
then ``--repeats`` interleaved timed runs (order alternating), the PyTorch loop (first
``--ref-archs`` archs, one at a time) interleaved with them. Each row has archs/s, compile
seconds, XLA's memory estimate, the largest relative difference to the experiment's baseline
variant (same program family: equal up to float rounding) and to the PyTorch loop, the load and
the date. Setup and helpers are ``benchmarks/vs_pytorch.py``'s (same network port, batch sizes,
synthetic data). ``--deadline-s``: no compilation starts when it would end past the deadline
(estimates from the first GPU run: compile 5-25 s per program), and timed repeats stop there.

Estimated run time on an H200, from the first run (compile: ntk_cond 17 s, grasp 25 s, snip 10 s,
grad_norm 5 s; runs: ntk_cond 43.4 s / 400 archs at block 1, grasp 2.7 s / 400, snip 0.29 s / 200;
the PyTorch loop: ntk_cond 0.26 s, grasp 0.036 s, snip 0.008 s per arch): setup ~20 s (imports, CUDA,
init, 10 ported nets); 1. four compiles ~75 s + 3 runs of block 1 (13 s) and of the others (<= 18 s,
if each block is at least 2x faster; 39 s if none is) + the loop (8 s): ~115-135 s; 2. four compiles
~35 s + runs ~5 s: ~40 s; 3. four new compiles (ntk/snip exact, grasp default/exact) ~80 s + runs
<= 36 s + the loop in both modes ~19 s: ~100-135 s; 4. one compile ~30 s + runs ~9 s: ~40 s. Total
~300-375 s, inside the device stage's ``--deadline-s 420`` (budget 480 s); compilation retries for
memory (``compile_fitting`` halving a chunk: vmapped blocks of 72 per-sample VJPs) come on top.

    PYTHONPATH=. python benchmarks/gpu_ab.py --out device_out/gpu_ab          # the GPU run
    PYTHONPATH=. python benchmarks/gpu_ab.py --smoke --out /tmp/ab            # CPU, tiny, ~1-2 min
    bash benchmarks/device/nb201_gpu.sh --stage perf_ab                        # on the device

Outputs ``<out>/gpu_ab<_tag>.json`` (rewritten after every measurement; ``complete`` false until
the end) and ``.md``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import vs_pytorch as vp  # noqa: E402  (setup, our compiled runs, the PyTorch side, rel_diff)

EXPERIMENTS = ("ntk_blocks", "kernel_grad", "fp32_exact", "grasp_patches")
#: sizes: gpu = the first GPU run's chunks (C=8, N=1); smoke = a CPU check of the whole script
SIZES = {
    "gpu": dict(channels=8, cells=1, image=32, batch=64, ntk_batch=72, archs=200, ntk_archs=40, grasp_archs=200,
                ntk_chunk=20, snip_chunk=100, grasp_chunk=50, ref_archs=10, blocks="1,8,24,72",
                est={"ntk_cond": 30, "snip": 12, "grad_norm": 10, "grasp": 35}),
    "smoke": dict(channels=4, cells=1, image=16, batch=8, ntk_batch=8, archs=4, ntk_archs=4, grasp_archs=4,
                  ntk_chunk=2, snip_chunk=2, grasp_chunk=2, ref_archs=2, blocks="1,4,8",
                  est={"ntk_cond": 0, "snip": 0, "grad_norm": 0, "grasp": 0}),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--out", default=str(HERE / "results" / "gpu_ab"), help="output folder")
    p.add_argument("--tag", default="", help="output name suffix (gpu_ab_<tag>.json)")
    p.add_argument("--smoke", action="store_true", help="CPU check at tiny sizes (C=4, N=1, 16x16, batch 8)")
    p.add_argument("--experiments", default=",".join(EXPERIMENTS), help=f"subset of {','.join(EXPERIMENTS)}, in order")
    p.add_argument("--blocks", default=None, help="ntk_cond cotangent blocks (default gpu 1,8,24,72; smoke 1,4,8)")
    p.add_argument("--repeats", type=int, default=2, help="timed, interleaved repeats after the warm-up")
    p.add_argument("--deadline-s", type=float, default=430.0,
                   help="seconds after start: no compilation starts whose estimate ends past it; repeats stop")
    p.add_argument("--device", default=None, help="PyTorch device (default: cuda if available, else cpu)")
    p.add_argument("--ours-only", action="store_true", help="no PyTorch loop (speedups and value checks vs it omitted)")
    args = p.parse_args(argv)
    args.size = dict(SIZES["smoke" if args.smoke else "gpu"])
    args.experiment_list = [e.strip() for e in args.experiments.split(",") if e.strip()]
    bad = [e for e in args.experiment_list if e not in EXPERIMENTS]
    if bad:
        p.error(f"unknown experiments {bad}; choose from {', '.join(EXPERIMENTS)}")
    try:
        args.block_list = [int(b) for b in (args.blocks or args.size["blocks"]).split(",")]
    except ValueError:
        p.error(f"--blocks is a comma list of integers, got {args.blocks!r}")
    if not args.block_list or min(args.block_list) < 1:
        p.error("--blocks entries must be >= 1")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


@dataclasses.dataclass
class Variant:
    """One program of an A/B: a proxy, its options, and the float32 mode it is compiled in."""

    label: str
    proxy: str
    chunk: int
    kernel_grad: str = "lax"
    block: int = 1
    exact: bool = False

    @property
    def key(self):
        return (self.proxy, self.chunk, self.kernel_grad, self.block, self.exact)


class Bench:
    """The setup, the compiled programs (kept for reuse by later experiments) and the output."""

    def __init__(self, args):
        self.args, self.t0 = args, time.monotonic()
        s = args.size
        dev = args.device or ("cuda" if _cuda() else "cpu")
        self.ours_only = args.ours_only or not _torch_on(dev)
        self.vargs = vp.parse_args([
            "--sizes", f"{s['channels']}:{s['cells']}:{s['archs']}", "--batch-size", str(s["batch"]),
            "--ntk-batch-size", str(s["ntk_batch"]), "--image-size", str(s["image"]), "--mc-samples", "1",
            "--mc-batch-size", "2", "--ref-archs", str(s["ref_archs"]), "--device", dev,
            "--proxies", "ntk_cond,snip,grad_norm,grasp", "--execution", "vmap"] + (["--ours-only"] * self.ours_only))
        vp.set_fp32_exact(False)
        self.setup = vp.make_setup(self.vargs, s["channels"], s["cells"], s["archs"])
        self.ts = None if self.ours_only else vp.torch_side(self.setup, self.vargs)
        self.compiled: dict = {}
        self.timings: dict = {}  # variant key -> archs/s (to pick the fastest ntk block)
        self.out = {"env": vp.environment(self.vargs), "args": {k: v for k, v in vars(args).items()},
                    "config": {"bn_mode": self.vargs.bn_mode, "execution": "vmap", **{k: v for k, v in s.items()
                                                                                      if k != "est"}},
                    "load_before": list(os.getloadavg()), "rows": [], "skipped": [], "complete": False}
        self.path = Path(args.out)
        self.path.mkdir(parents=True, exist_ok=True)
        self.name = "gpu_ab" + (f"_{args.tag}" if args.tag else "")
        self.save()

    # ------------------------------------------------------------------ bookkeeping
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def fits(self, seconds: float) -> bool:
        return self.elapsed() + seconds <= self.args.deadline_s

    def save(self) -> str:
        self.out["load_after"] = list(os.getloadavg())
        self.out["elapsed_s"] = self.elapsed()
        tmp = self.path / f"{self.name}.json.tmp"
        tmp.write_text(json.dumps(self.out, indent=1))
        tmp.replace(self.path / f"{self.name}.json")
        md = markdown(self.out)
        (self.path / f"{self.name}.md").write_text(md)
        return md

    def log(self, msg: str) -> None:
        print(f"[{self.elapsed():6.1f} s] {msg}", flush=True)

    # ------------------------------------------------------------------ programs
    def variant_setup(self, v: Variant) -> dict:
        s = self.setup
        net = s["ctx"].net.clone(kernel_grad=v.kernel_grad) if v.kernel_grad != "lax" else s["ctx"].net
        opts = dict(s["ctx_ntk"].options)
        opts["ntk_cond"] = dict(opts["ntk_cond"], cotangent_block=v.block)
        return dict(s, ctx=dataclasses.replace(s["ctx"], net=net),
                    ctx_ntk=dataclasses.replace(s["ctx_ntk"], net=net, options=opts))

    def compile(self, v: Variant):
        if v.key not in self.compiled:
            vp.set_fp32_exact(v.exact)
            try:
                run, compile_s, info = vp.compile_ours(self.variant_setup(v), v.proxy, v.chunk, "vmap")
            finally:
                vp.set_fp32_exact(False)
            self.compiled[v.key] = (run, compile_s, info)
            self.log(f"compiled {v.label}: {compile_s:.1f} s, chunk {info['chunk']}, {info['memory_mb'] or 0:.0f} MB")
        return self.compiled[v.key]

    def torch_run(self, proxy: str, exact: bool):
        vp.set_fp32_exact(exact)
        try:
            return vp.run_torch(self.ts, proxy, self.vargs)
        finally:
            vp.set_fp32_exact(False)

    # ------------------------------------------------------------------ one A/B
    def ab(self, experiment: str, variants: list[Variant], n_archs: int) -> list[dict]:
        """Compile what fits before the deadline, warm up, time interleaved; rows appended+saved.
        ``variants[0]`` is the baseline the others' values are compared with."""
        est = self.args.size["est"]
        ready = []
        for v in variants:
            if v.key not in self.compiled and not self.fits(est.get(v.proxy, 30)):
                self.out["skipped"].append({"experiment": experiment, "variant": v.label,
                                            "reason": f"deadline ({self.elapsed():.0f} s elapsed)"})
                self.log(f"skip {v.label}: deadline")
                continue
            try:
                self.compile(v)
                ready.append(v)
            except Exception as err:  # noqa: BLE001  (a candidate that fails is a result, not a crash)
                self.out["rows"].append({"experiment": experiment, "variant": v.label, "proxy": v.proxy,
                                         "error": f"{type(err).__name__}: {err}"[:2000]})
                self.log(f"{v.label} failed: {type(err).__name__}: {str(err)[:300]}")
                self.save()
        if not ready:
            return []
        enc = self.setup["archs"][:n_archs]
        n_ref = 0 if self.ts is None else min(len(self.ts["nets"]), n_archs)
        modes = sorted({v.exact for v in ready}) if self.ts is not None else []
        calls = {("ours", v.key): (lambda v=v: self.compiled[v.key][0](enc)) for v in ready}
        calls.update({("ref", m): (lambda m=m, p=ready[0].proxy: self.torch_run(p, m)) for m in modes})
        first, times, values = {}, {k: [] for k in calls}, {}
        for k, call in calls.items():  # untimed warm-up (first run of a compiled program / cuDNN autotune)
            t = time.perf_counter()
            values[k] = call()
            first[k] = time.perf_counter() - t
        for r in range(self.args.repeats):
            if r > 0 and not self.fits(0):
                self.log(f"{experiment}: repeats stopped at {r} by the deadline")
                break
            order = list(calls) if r % 2 == 0 else list(reversed(list(calls)))
            for k in order:
                t = time.perf_counter()
                values[k] = calls[k]()
                times[k].append(time.perf_counter() - t)
        base = np.asarray(values[("ours", ready[0].key)], np.float64)
        rows = []
        for v in ready:
            run, compile_s, info = self.compiled[v.key]
            ours = np.asarray(values[("ours", v.key)], np.float64)
            aps = len(enc) / statistics.median(times[("ours", v.key)])
            self.timings[v.key] = aps
            row = {"experiment": experiment, "variant": v.label, "proxy": v.proxy, "kernel_grad": v.kernel_grad,
                   "cotangent_block": v.block if v.proxy == "ntk_cond" else None, "fp32_exact": v.exact,
                   "archs": int(len(enc)), "compile_s": compile_s, **info,
                   "first_call_s": first[("ours", v.key)], "ours_s": times[("ours", v.key)], "archs_per_s": aps,
                   "max_rel_diff_vs_baseline": vp.rel_diff(ours, base)[0] if v is not ready[0] else 0.0,
                   "baseline": ready[0].label, "values": ours.tolist(),
                   "date": dt.datetime.now().isoformat(timespec="seconds"), "load": list(os.getloadavg())}
            if ("ref", v.exact) in values and n_ref:
                ref = values[("ref", v.exact)]
                if v.proxy == "fisher":
                    ref = [x[0] for x in ref]
                ref = np.asarray(ref, np.float64)[:n_ref]
                ref_aps = n_ref / statistics.median(times[("ref", v.exact)])
                mx, med = vp.rel_diff(ours[:n_ref], ref)
                row.update(ref_archs=n_ref, ref_s=times[("ref", v.exact)], ref_first_call_s=first[("ref", v.exact)],
                           ref_archs_per_s=ref_aps, speedup=aps / ref_aps, max_rel_diff_vs_ref=mx,
                           median_rel_diff_vs_ref=med, ref_values=ref.tolist())
            rows.append(row)
            self.out["rows"].append(row)
            self.log(line(row))
        self.save()
        return rows

    # ------------------------------------------------------------------ the experiments
    def run(self) -> None:
        s = self.args.size
        for exp in self.args.experiment_list:
            self.log(f"== {exp}")
            if exp == "ntk_blocks":
                blocks = [b for b in self.args.block_list if b <= s["ntk_batch"]] or [1]
                self.ab(exp, [Variant(f"ntk_cond block {b}", "ntk_cond", s["ntk_chunk"], block=b) for b in blocks],
                        s["ntk_archs"])
            elif exp == "kernel_grad":
                for proxy in ("snip", "grad_norm"):
                    self.ab(exp, [Variant(f"{proxy} {kg}", proxy, s["snip_chunk"], kernel_grad=kg)
                                  for kg in ("lax", "patches")], s["archs"])
            elif exp == "fp32_exact":
                block = self.best_block()
                for proxy, chunk, n, kw in (("ntk_cond", s["ntk_chunk"], s["ntk_archs"], {"block": block}),
                                            ("snip", s["snip_chunk"], s["archs"], {}),
                                            ("grasp", s["grasp_chunk"], s["grasp_archs"], {})):
                    tail = f" block {block}" if proxy == "ntk_cond" else ""
                    self.ab(exp, [Variant(f"{proxy}{tail} {m}", proxy, chunk, exact=(m == "exact"), **kw)
                                  for m in ("default", "exact")], n)
            elif exp == "grasp_patches":
                self.ab(exp, [Variant(f"grasp {kg}", "grasp", s["grasp_chunk"], kernel_grad=kg)
                              for kg in ("lax", "patches")], s["grasp_archs"])

    def best_block(self) -> int:
        """The fastest ntk_cond block measured (in default precision), else 1."""
        got = {k[3]: aps for k, aps in self.timings.items() if k[0] == "ntk_cond" and not k[4]}
        return max(got, key=got.get) if got else 1


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _torch_on(dev: str) -> bool:
    try:
        import torch
    except ImportError:
        print("PyTorch not installed: ours only", file=sys.stderr)
        return False
    if dev.startswith("cuda") and not torch.cuda.is_available():
        print("PyTorch has no CUDA here: ours only", file=sys.stderr)
        return False
    return True


def line(r: dict) -> str:
    s = (f"{r['variant']:>26}: {r['archs_per_s']:9.3g} archs/s (compile {r['compile_s']:5.1f} s, chunk {r['chunk']})"
         f" | vs baseline {r['max_rel_diff_vs_baseline']:.1e}")
    if "speedup" in r:
        s += f" | PyTorch {r['ref_archs_per_s']:8.3g} archs/s, x{r['speedup']:.2f}, max rel diff {r['max_rel_diff_vs_ref']:.1e}"
    return s


def markdown(out: dict) -> str:
    e, c = out["env"], out["config"]
    lines = [f"# GPU candidates A/B ({e['device']}, JAX {e['jax']}"
             + (f", PyTorch {e['torch']} on {e['torch_device']}" if "torch" in e else ", ours only") + f", {e['date']})",
             "",
             f"NB201 C={c['channels']}, N={c['cells']}, bn_mode={c['bn_mode']}, fresh weights, synthetic "
             f"{c['image']}x{c['image']} images, batch {c['batch']} (ntk_cond {c['ntk_batch']}), execution vmap. "
             f"Median of {out['args']['repeats']} interleaved runs after one untimed call per program; compile "
             f"excluded. Load before {vp.fmt_load(out['load_before'])}, after {vp.fmt_load(out['load_after'])}; "
             f"{out['elapsed_s']:.0f} s in all. fp32 'default' = each library's own (TF32 convolutions on Ampere+), "
             f"'exact' = JAX precision highest, PyTorch allow_tf32 off.", "",
             "| experiment | variant | ours, archs/s | chunk | compile, s | memory, MB | vs baseline, max rel | "
             "PyTorch, archs/s | ours / PyTorch | vs PyTorch, max rel |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        if "error" in r:
            lines.append(f"| {r['experiment']} | {r['variant']} | failed: {r['error'][:120]} | | | | | | | |")
            continue
        ref = (f"{r['ref_archs_per_s']:.3g} | {r['speedup']:.2f} | {r['max_rel_diff_vs_ref']:.1e}"
               if "speedup" in r else "- | - | -")
        lines.append(f"| {r['experiment']} | {r['variant']} | {r['archs_per_s']:.3g} | {r['chunk']} | "
                     f"{r['compile_s']:.1f} | {r['memory_mb'] or 0:.0f} | {r['max_rel_diff_vs_baseline']:.1e} | {ref} |")
    for s in out["skipped"]:
        lines.append(f"| {s['experiment']} | {s['variant']} | skipped: {s['reason']} | | | | | | | |")
    if not out.get("complete"):
        lines += ["", "**Partial: the run was still going (or was stopped) when this was written.**"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    bench.log(f"setup done ({bench.out['env']['device']}, JAX {bench.out['env']['jax']}, "
              f"{'ours only' if bench.ours_only else 'PyTorch on ' + bench.vargs.device})")
    bench.run()
    bench.out["complete"] = True
    print(bench.save())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
