"""Hardware-independent cost of every proxy per architecture: XLA's FLOPs and bytes vs the PyTorch loop's work.

Why: on the H200 four proxies (snip, grad_norm, grasp, ntk_cond) stayed under 10x the PyTorch
loop (issue 14). Before spending GPU time, this counts the *work* each side does per
architecture, so a shortfall can be told apart as "we compute more" (a ratio > 1 below) or
"we compute the same, slower" (ratio ~1: a kernel/launch problem).

For each proxy of ``benchmarks/vs_pytorch.py`` and each execution that supports it, this
compiles our program (``jax.jit(f).lower(...).compile()``) and reads XLA's
``cost_analysis()`` -- ``flops``, ``bytes accessed``, ``transcendentals`` -- per architecture:

* ``vmap``: the vmapped chunk of the GPU preset's size (vs_pytorch ``--preset gpu``), / chunk.
  Every op of the supernet runs for every architecture (a vmapped switch is a select), so the
  count does not depend on which architectures.
* ``map`` (and ``loop``: the same per-architecture program): XLA counts a ``lax.map`` body once
  and a ``lax.switch`` as its most expensive branch, so neither the chunk program nor the
  per-architecture program with a traced encoding gives the work of one architecture. Instead
  the per-architecture program is compiled with the encoding a *constant* (XLA folds every
  switch to the chosen op: the work that runs), for the 5 architectures of one coset of
  ``span{(1,..,1)}`` (each edge takes each of the 5 ops exactly once: their mean is the mean
  over the whole space when the cost adds up over edges), and averaged.
* ntk_cond: its 72 per-sample VJPs are counted vmapped in one block (``cotangent_block=72``,
  ``--ntk-block``): the same VJPs as the default ``lax.map`` of one at a time (values equal,
  ``tests/test_gpu_candidates.py``) without a loop to unroll.
* ``route``: the routed chunk of 125 (one balanced coset, capacity 25 per op), / 125. Proxies
  without a routed form are skipped with a note (``--execution route`` for the gradient
  proxies is being added; this script picks them up once ``fbnas_jax.indicators.routed`` has them).

Loops inside an architecture's program (uncertainty's T Monte-Carlo forwards, ntk_cond's
per-sample VJPs, linear_regions' repeats) are ``lax.scan``/``lax.map``: XLA counts their body
once. Every program here is therefore traced with every ``lax.scan`` fully unrolled
(:func:`unrolled_scans`, which ``lax.map`` and ``fori_loop`` go through), so the compiled
program has no ``while`` left and XLA's count is the whole work; rows where a ``while`` or a
``conditional`` survives say so. :func:`loop_counting_check` shows the trap and the fix on a
closed-form case (one convolution; ``lax.map`` of it over 5 inputs: rolled 1x, unrolled 5x).

Like-for-like with PyTorch: ``torch.utils.flop_counter.FlopCounterMode`` counts only
convolutions and matrix products (2 FLOPs per multiply-add), a convolution over its full
window, padding taps included; XLA counts every elementwise op too, and a convolution's
valid taps only (padding and dilation holes excluded). The table therefore also gives
``conv+dot``: our compiled program's convolutions and dots counted from its HLO with XLA's
convention (:func:`hlo_conv_dot_flops`; equal to ``cost_analysis`` on programs made of
convolutions only, tested), and the PyTorch loop's convolutions and matrix products counted
with the same valid-tap convention (:func:`torch_valid_flops`; the stock FlopCounterMode
count is kept in the JSON too). ``ours / PyTorch`` is the ratio of these two.

Roofline (an ESTIMATE, a lower bound on time per architecture, not a prediction):
``max(XLA flops / peak TF32 tensor FLOP/s, bytes accessed / peak HBM bandwidth)`` for an H100
SXM and an H200 (:data:`GPUS`, published dense peaks). Both the FLOPs and the bytes come from
the CPU-compiled program: XLA:GPU fuses differently, so bytes differ there (the device stage
``perf_next`` reruns this on the GPU). Where GPU run 2 (H200, ``benchmarks/results/gpu/
perf_h200_2``) measured that row, its archs/s and the roofline's share of it are shown.

    PYTHONPATH=. python benchmarks/cost_model.py                 # everything (~15 CPU-minutes)
    PYTHONPATH=. python benchmarks/cost_model.py --proxies snip --executions vmap,map --sizes 8:1

Writes ``<out>/cost_model_<tag>.json`` and ``.md`` (default benchmarks/results/cost_model,
tag = the JAX backend) after every row.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _args  # noqa: E402  (benchmarks/_args.py: shared argument types)

PROXIES = ("naswot", "jacob_cov", "synflow", "snip", "grasp", "fisher", "grad_norm", "ntk_cond", "linear_regions")
CPI_INDICATORS = ("expressivity", "uncertainty")
EXECUTIONS = ("vmap", "map", "route")
#: vmap chunks of ``vs_pytorch.py --preset gpu`` (C=8, N=1) and of the device stage's CPI (C=16, N=5)
VMAP_CHUNKS = {(8, 1): {"ntk_cond": 20, "grasp": 50, "snip": 100, "grad_norm": 100, "fisher": 100,
                        "jacob_cov": 100, None: 200},
               (16, 5): {None: 32}}
ROUTE_CHUNK = 125
#: Published dense peaks (no sparsity), SXM parts. H100: NVIDIA H100 Tensor Core GPU datasheet
#: (H100 SXM: FP32 67 TFLOP/s, TF32 Tensor Core 989 TFLOP/s with sparsity = 494.5 dense, BF16
#: 1,979 with sparsity = 989.5 dense, HBM3 3.35 TB/s). H200: NVIDIA H200 Tensor Core GPU product
#: page / datasheet (same compute as H100 SXM; HBM3e 4.8 TB/s, 141 GB).
GPUS = {
    "H100 SXM": {"tf32_tensor_flops": 494.5e12, "fp32_flops": 67e12, "bf16_tensor_flops": 989.5e12,
                 "hbm_bytes_per_s": 3.35e12, "source": "NVIDIA H100 Tensor Core GPU datasheet (SXM5)"},
    "H200": {"tf32_tensor_flops": 494.5e12, "fp32_flops": 67e12, "bf16_tensor_flops": 989.5e12,
             "hbm_bytes_per_s": 4.8e12, "source": "NVIDIA H200 Tensor Core GPU datasheet (SXM)"},
}
#: GPU run 2 (H200): our archs/s per proxy at C=8, N=1 (vmap) and the CPI jobs at C=16, N=5
MEASURED_DIR = HERE / "results" / "gpu" / "perf_h200_2"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--proxies", default=",".join(PROXIES + CPI_INDICATORS),
                   help="comma list (proxies at C=8, N=1; expressivity/uncertainty also at C=16, N=5)")
    p.add_argument("--executions", default=",".join(EXECUTIONS), help=f"comma list of {', '.join(EXECUTIONS)}")
    p.add_argument("--sizes", default="8:1,16:5", help="C:N list; C=16, N=5 only for the CPI indicators")
    p.add_argument("--map-archs", type=int, default=5, choices=range(1, 6), metavar="1..5",
                   help="map and the PyTorch loop: how many of the 5 balanced architectures to count and average "
                        "(5: the space mean; fewer: faster, a biased mean)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch loop's count")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--ntk-batch-size", type=int, default=72)
    p.add_argument("--mc-samples", type=int, default=10)
    p.add_argument("--mc-batch-size", type=int, default=64)
    p.add_argument("--ntk-block", type=int, default=0,
                   help="ntk_cond's per-sample VJPs counted vmapped this many at a time (option cotangent_block; 0: "
                        "all in one block, no loop: the same VJPs as the default lax.map of one at a time, without "
                        "72 unrolled copies). At vmap chunk 20 neither form finished compiling in ~10 minutes on the "
                        "loaded 2-core CPU of 2026-11-27; --vmap-chunk 2 compiled in 67 s")
    p.add_argument("--vmap-chunk", type=int, default=0, help="override every vmap chunk (0: the GPU preset's)")
    p.add_argument("--route-chunk", type=int, default=ROUTE_CHUNK, help="a power of 5 (balanced coset)")
    p.add_argument("--out", default=str(HERE / "results" / "cost_model"))
    p.add_argument("--tag", default=None, help="output name suffix (default: the JAX backend)")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows of an existing <out>/cost_model_<tag>.json and count only the missing ones")
    p.add_argument("--merge", nargs="+", metavar="JSON", default=None,
                   help="only combine the rows of these outputs (e.g. runs of separate sizes) into <out>/cost_model_<tag>")
    args = p.parse_args(argv)
    args.proxy_list = _args.comma_list(args.proxies)
    args.exec_list = _args.comma_list(args.executions)
    bad = [s for s in args.proxy_list if s not in PROXIES + CPI_INDICATORS]
    bad += [s for s in args.exec_list if s not in EXECUTIONS]
    if bad:
        p.error(f"unknown proxies/executions {bad}")
    args.size_list = _args.parsed(p, "--sizes", _args.size_pairs, args.sizes)
    from fbnas_jax.models.routing import coset_dim

    if coset_dim(args.route_chunk) is None:
        p.error("--route-chunk must be a power of 5")
    return args


# ----------------------------------------------------------------------------- counting

@contextlib.contextmanager
def unrolled_scans():
    """Trace with every ``lax.scan`` fully unrolled (``lax.map`` and ``fori_loop`` call it):
    the compiled program then has no ``while`` whose body XLA's cost analysis would count once."""
    import jax
    from jax._src.lax.control_flow import loops

    orig = loops.scan

    def scan(f, init, xs=None, length=None, reverse=False, unroll=1, **kw):
        return orig(f, init, xs, length=length, reverse=reverse, unroll=True, **kw)

    jax.clear_caches()  # a jitted helper traced before (rolled) must be traced again
    loops.scan = jax.lax.scan = scan
    try:
        yield
    finally:
        loops.scan = jax.lax.scan = orig
        jax.clear_caches()


def xla_cost(compiled) -> dict:
    """XLA's cost analysis of a compiled program + what the HLO says about loops and branches."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    text = compiled.as_text()
    conv_dot = hlo_conv_dot_flops(text)
    return {"flops": float(cost.get("flops", 0.0)), "bytes": float(cost.get("bytes accessed", 0.0)),
            "transcendentals": float(cost.get("transcendentals", 0.0)), "conv_dot_flops": conv_dot["flops"],
            "convolutions": conv_dot["convolutions"], "dots": conv_dot["dots"],
            "while_loops": len(re.findall(r"\swhile\(", text)), "conditionals": len(re.findall(r"\sconditional\(", text)),
            "custom_calls": len(re.findall(r"\scustom-call\(", text))}


_DEF = re.compile(r"%([\w.\-]+) = \w+\[([\d,]*)\]")
_OP = re.compile(r"%([\w.\-]+) = \w+\[([\d,]*)\](?:\{[^}]*\})? (convolution|dot)\(([^)]*)\)(.*)$")


def _valid_taps(out: int, k: int, inp: int, stride: int, lo: int, lhs_dil: int, rhs_dil: int) -> int:
    """(output position, kernel tap) pairs of one spatial dimension that land on an input element
    (not on padding, not between dilated elements): XLA's count of a convolution's work."""
    p = np.arange(out)[:, None] * stride + np.arange(k)[None, :] * rhs_dil - lo
    return int(np.sum((p >= 0) & (p <= (inp - 1) * lhs_dil) & (p % lhs_dil == 0)))


def hlo_conv_dot_flops(text: str) -> dict:
    """FLOPs (2 per multiply-add) of the convolutions and dots of an HLO module's text, with
    XLA's convention (valid taps only; HloCostAnalysis's formula)."""
    shapes = {m[1]: tuple(int(d) for d in m[2].split(",") if d) for m in _DEF.finditer(text)}
    total, n_conv, n_dot = 0, 0, 0
    for line in text.splitlines():
        m = _OP.search(line)
        if not m:
            continue
        out_shape = tuple(int(d) for d in m[2].split(",") if d)
        lhs, rhs = (shapes[n] for n in re.findall(r"%([\w.\-]+)", m[4])[:2])
        attrs = m[5]
        if m[3] == "dot":
            contract = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", attrs)
            k = int(np.prod([lhs[int(d)] for d in contract[1].split(",") if d])) if contract else 1
            total += 2 * int(np.prod(out_shape)) * k
            n_dot += 1
            continue
        n_conv += 1
        lhs_l, rhs_l, out_l = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", attrs).groups()
        win = dict(re.findall(r"(\w+)=([\dx_\-]+)", (re.search(r"window=\{([^}]*)\}", attrs) or [None, ""])[1]))
        nsp = sum(c.isdigit() for c in lhs_l)

        def field(name, default, nsp=nsp, win=win):
            return [int(v) for v in win[name].split("x")] if name in win else [default] * nsp

        size, stride, lhs_dil, rhs_dil = field("size", 1), field("stride", 1), field("lhs_dilate", 1), field("rhs_dilate", 1)
        pads = [int(v.split("_")[0]) for v in win["pad"].split("x")] if "pad" in win else [0] * nsp
        fgc = int((re.search(r"feature_group_count=(\d+)", attrs) or [0, 1])[1])
        bgc = int((re.search(r"batch_group_count=(\d+)", attrs) or [0, 1])[1])
        macs = lhs[lhs_l.index("f")] // fgc * rhs[rhs_l.index("o")] * (lhs[lhs_l.index("b")] // bgc)
        for d in range(nsp):
            macs *= _valid_taps(out_shape[out_l.index(str(d))], size[d], lhs[lhs_l.index(str(d))], stride[d], pads[d],
                                lhs_dil[d], rhs_dil[d])
        total += 2 * macs
    return {"flops": float(total), "convolutions": n_conv, "dots": n_dot}


def loop_counting_check() -> dict:
    """The closed-form case behind the method: one 3x3 SAME convolution of an (8, 16, 16, 4)
    batch (2 * 8*4*4 * 46*46 valid multiply-adds = 541,696 FLOPs), a ``lax.map`` of it over 5
    batches compiled as is and with the scan unrolled, and a vmap of it."""
    import jax
    from jax import lax

    x, w = jax.ShapeDtypeStruct((8, 16, 16, 4), np.float32), jax.ShapeDtypeStruct((3, 3, 4, 4), np.float32)
    xs = jax.ShapeDtypeStruct((5, 8, 16, 16, 4), np.float32)

    def conv(a, k):
        return lax.conv_general_dilated(a, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def mapped(a, k):
        return lax.map(lambda b: conv(b, k), a)

    def cost(f, *structs):
        c = xla_cost(jax.jit(f).lower(*structs).compile())
        return {k: c[k] for k in ("flops", "conv_dot_flops", "while_loops")}

    out = {"closed_form_one_conv": 2 * 8 * 4 * 4 * 46 * 46, "one_conv": cost(conv, x, w),
           "vmap_5": cost(jax.vmap(conv, (0, None)), xs, w), "lax_map_5_as_compiled": cost(mapped, xs, w)}
    with unrolled_scans():
        out["lax_map_5_unrolled"] = cost(mapped, xs, w)
    return out


# ----------------------------------------------------------------------------- our programs

def balanced_archs() -> np.ndarray:
    """5 architectures, a coset of span{(1,...,1)}: every edge takes every op exactly once."""
    base = np.array([0, 1, 2, 3, 4, 0])
    return np.stack([(base + k) % 5 for k in range(5)]).astype(np.int32)


def vs_args(args, channels: int, cells: int):
    import vs_pytorch

    return vs_pytorch.parse_args(["--sizes", f"{channels}:{cells}:5", "--batch-size", str(args.batch_size),
                                  "--ntk-batch-size", str(args.ntk_batch_size), "--mc-samples", str(args.mc_samples),
                                  "--mc-batch-size", str(args.mc_batch_size), "--image-size", str(args.image_size),
                                  "--proxies", ",".join(args.proxy_list),
                                  "--ntk-cotangent-block", str(args.ntk_block or args.ntk_batch_size)])


def _structs(state):
    import jax

    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), state)


def our_cost(setup: dict, name: str, execution: str, chunk: int, map_archs: int) -> dict:
    """XLA's cost per architecture of ``name`` under ``execution`` (module doc), or ``{"skipped"}``."""
    import jax
    import jax.numpy as jnp

    from fbnas_jax import engine
    from fbnas_jax.indicators import base

    ctx = setup["ctx_ntk"] if name == "ntk_cond" else setup["ctx"]
    try:
        job = engine.plan(ctx, [name], execution=execution)[0]
    except ValueError as e:  # e.g. no routed form (yet)
        return {"skipped": str(e)}
    enc = lambda k: jax.ShapeDtypeStruct((k, 6), jnp.int32)  # noqa: E731
    t0 = time.perf_counter()
    with unrolled_scans():
        if execution == "vmap":
            f, state = base.split_state(base.vectorize(engine.build_job(ctx, job), "vmap"))
            cost = xla_cost(jax.jit(f).lower(*_structs(state), enc(chunk)).compile())
            per, how = chunk, f"vmapped chunk of {chunk} / {chunk}"
        elif execution == "route":
            from fbnas_jax.indicators import routed

            f, state = base.split_state(routed.build(engine.job_context(ctx, job), job.names, chunk // 5))
            cost = xla_cost(jax.jit(f).lower(*_structs(state), enc(chunk)).compile())
            per, how = chunk, f"routed chunk of {chunk} (cap {chunk // 5}) / {chunk}"
        else:
            f, state = base.split_state(engine.build_job(ctx, job))
            costs = []
            for arch in balanced_archs()[:map_archs]:
                const = jnp.asarray(arch)
                costs.append(xla_cost(jax.jit(lambda *st, c=const: f(*st, c)).lower(*_structs(state)).compile()))
            cost = {k: (float(np.mean([c[k] for c in costs])) if isinstance(costs[0][k], float)
                        else max(c[k] for c in costs)) for k in costs[0]}
            cost["per_arch_flops"] = [c["flops"] for c in costs]
            per, how = 1, (f"per-architecture program, encoding a constant (switches folded), mean of {map_archs} "
                           "balanced architectures")
    out = {k: (v / per if k in ("flops", "bytes", "transcendentals", "conv_dot_flops") else v) for k, v in cost.items()}
    out.update(how=how + "; scans unrolled", chunk=chunk, compile_s=time.perf_counter() - t0)
    return out


# ----------------------------------------------------------------------------- the PyTorch loop

def _valid_conv_macs(x_shape, w_shape, stride, padding, dilation, groups=1) -> int:
    """Multiply-adds of a forward ``conv2d`` over valid taps only (XLA's convention)."""
    n, cin = x_shape[0], x_shape[1]
    cout, k_sp = w_shape[0], w_shape[2:]
    macs = n * cout * (cin // groups)
    for d, k in enumerate(k_sp):
        inp = x_shape[2 + d]
        out = (inp + 2 * padding[d] - dilation[d] * (k - 1) - 1) // stride[d] + 1
        macs *= _valid_taps(out, k, inp, stride[d], padding[d], 1, dilation[d])
    return macs


def torch_valid_flops():
    """FlopCounterMode ``custom_mapping`` counting convolutions over valid taps (forward, and
    each gradient asked for: a bilinear map's gradients do the forward's multiply-adds again)."""
    from torch.ops import aten

    def conv(x_shape, w_shape, _bias, stride, padding, dilation, transposed, *rest, out_shape=None, **kw):
        groups = rest[1] if len(rest) > 1 else 1
        # a transposed convolution (GraSP's double backward) does the multiply-adds of the forward
        # convolution it transposes, whose input is its output (same weight layout in PyTorch)
        return 2 * _valid_conv_macs(out_shape if transposed else x_shape, w_shape, stride, padding, dilation, groups)

    def conv_backward(grad_out_shape, x_shape, w_shape, _bias, stride, padding, dilation, transposed, _out_pad,
                      groups, output_mask, out_shape=None, **kw):
        fwd = 2 * _valid_conv_macs(grad_out_shape if transposed else x_shape, w_shape, stride, padding, dilation,
                                   groups)
        return fwd * (int(bool(output_mask[0])) + int(bool(output_mask[1])))

    return {aten.convolution: conv, aten._convolution: conv, aten.convolution_backward: conv_backward}


def torch_cost(ts: dict, name: str, vargs, n_archs: int) -> dict:
    """The PyTorch loop's FLOPs per architecture for ``name``: stock FlopCounterMode (full windows)
    and with valid taps (like-for-like with XLA); the mean over ``n_archs`` architectures."""
    from torch.utils.flop_counter import FlopCounterMode

    import vs_pytorch

    out = {}
    for key, mapping in (("torch_flops_full_window", None), ("torch_flops", torch_valid_flops())):
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            vs_pytorch.run_torch(ts, name, vargs)
        out[key] = counter.get_total_flops() / n_archs
    return out


# ----------------------------------------------------------------------------- report

def roofline(row: dict) -> dict:
    """Lower bound on seconds per architecture (ESTIMATE) per GPU of :data:`GPUS`."""
    return {gpu: max(row["flops"] / g["tf32_tensor_flops"], row["bytes"] / g["hbm_bytes_per_s"])
            for gpu, g in GPUS.items()}


def measured_h200() -> dict:
    """GPU run 2's archs/s: {(proxy, C, N, execution): archs/s} from its committed JSONs."""
    found = {}
    for path in sorted(MEASURED_DIR.glob("vs_pytorch_*.json")):
        d = json.loads(path.read_text())
        for size in d.get("sizes", []):
            for r in size.get("rows", []):
                found[(r["proxy"], size["channels"], size["cells"], r.get("execution", "vmap"))] = r["ours_archs_per_s"]
            for job_name, job in size.get("cpi", {}).get("jobs", {}).items():
                if job.get("execution") in EXECUTIONS and job.get("run_s"):
                    found[(job_name, size["channels"], size["cells"], job["execution"])] = (
                        size["cpi"]["archs"] / job["run_s"])
    return found


def markdown(out: dict) -> str:
    e = out["env"]
    lc = out["loop_counting_check"]
    lines = [f"# Cost model: work per architecture ({e['device']}-compiled, JAX {e['jax']}, {e['date']})", "",
             (f"CPU-compiled programs (XLA:{e['backend']}), not GPU ones: FLOPs are the algorithm's and carry over; "
              "bytes follow XLA:CPU's fusion (likely more than a GPU's), so the roofline's memory bound may exceed "
              "the true GPU bound: indicative only. " if e["backend"] == "cpu" else
              f"Programs compiled for {e['device']} (XLA:{e['backend']}): convolutions there are cuDNN custom calls, "
              "which the conv+dot column (HLO `convolution`/`dot` ops) does not see; XLA GFLOP does. ")
             + "Load before "
             f"{'/'.join(f'{v:.2f}' for v in out['load_before'])}, after {'/'.join(f'{v:.2f}' for v in out['load_after'])}. "
             f"Synthetic {out['args']['image_size']}px images, batch {out['args']['batch_size']} (ntk_cond "
             f"{out['args']['ntk_batch_size']}), uncertainty {out['args']['mc_samples']} MC batches of "
             f"{out['args']['mc_batch_size']}; NB201 bn_mode=bnnas, fresh weights (as vs_pytorch.py).", "",
             "How each number was obtained:", "",
             "* **XLA GFLOP, MB**: `compiled.cost_analysis()` (`flops`, `bytes accessed`) of our compiled program, "
             "traced with every `lax.scan`/`lax.map` unrolled (XLA counts a loop body once: "
             f"one conv {lc['one_conv']['flops']:.0f} FLOPs = closed form {lc['closed_form_one_conv']}; "
             f"`lax.map` of it over 5: {lc['lax_map_5_as_compiled']['flops']:.0f} as compiled, "
             f"{lc['lax_map_5_unrolled']['flops']:.0f} unrolled, vmap {lc['vmap_5']['flops']:.0f}). "
             "vmap: the chunk / chunk; route: the routed chunk / chunk; map: the per-architecture program "
             "with the encoding a constant (switches folded to the chosen op; XLA counts a switch as its "
             "costliest branch), mean over 5 architectures that take every op once per edge.",
             "* **conv+dot**: our program's convolutions and dots from its HLO, XLA's convention (valid taps only); "
             "**PyTorch**: the reference loop (`benchmarks/torch_ref`, as vs_pytorch.py runs it) under "
             "`FlopCounterMode`, convolutions counted over valid taps too (stock, full-window counts in the JSON), "
             "mean over the same 5 architectures. Neither side counts elementwise work here; "
             "XLA GFLOP includes it.",
             "* **roofline** (ESTIMATE, a lower bound): max(XLA FLOPs / TF32 tensor peak, bytes / HBM bandwidth), "
             + "; ".join(f"{g}: {v['tf32_tensor_flops'] / 1e12:.1f} TFLOP/s, {v['hbm_bytes_per_s'] / 1e12:.2f} TB/s "
                         f"({v['source']})" for g, v in GPUS.items()) + ". "
             "**H200 run 2**: our measured archs/s there (benchmarks/results/gpu/perf_h200_2) and "
             "the roofline time as a share of the measured time.", ""]
    lines += ["| proxy | C:N | execution | chunk | XLA GFLOP/arch | conv+dot GFLOP/arch | PyTorch GFLOP/arch | "
              "ours / PyTorch | XLA MB/arch | roofline us/arch H100 / H200 | H200 run 2 archs/s (roofline share) | "
              "notes |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = list(PROXIES + CPI_INDICATORS)
    for r in sorted(out["rows"], key=lambda r: (r["channels"], r["cells"], order.index(r["proxy"]),
                                                 EXECUTIONS.index(r["execution"]))):
        head = f"| {r['proxy']} | {r['channels']}:{r['cells']} | {r['execution']} |"
        if "skipped" in r:
            lines.append(head + " - | - | - | - | - | - | - | - | skipped: " + r["skipped"].split(";")[0] + " |")
            continue
        tf = r.get("torch_flops")
        ratio = f"{r['conv_dot_flops'] / tf:.2f}" if tf else "-"
        roof = r["roofline_s"]
        meas = r.get("h200_run2_archs_per_s")
        meas_s = f"{meas:.3g} ({roof['H200'] * meas:.1%})" if meas else "-"
        notes = []
        if r["while_loops"]:
            notes.append(f"{r['while_loops']} while loop(s) left: counted once")
        if r["conditionals"]:
            notes.append(f"{r['conditionals']} conditional(s) left: costliest branch counted")
        lines.append(f"{head} {r['chunk']} | {r['flops'] / 1e9:.3g} | {r['conv_dot_flops'] / 1e9:.3g} | "
                     f"{'-' if not tf else f'{tf / 1e9:.3g}'} | {ratio} | {r['bytes'] / 2**20:.3g} | "
                     f"{roof['H100 SXM'] * 1e6:.3g} / {roof['H200'] * 1e6:.3g} | {meas_s} | {'; '.join(notes)} |")
    if out.get("merged_from"):
        lines += ["", "Merged from runs (`--merge`): " + "; ".join(
            f"{m['file']} ({m['env']['date']}: --sizes {m['args']['sizes']} --proxies {m['args']['proxies']} "
            f"--executions {m['args']['executions']}, map archs {m['args']['map_archs']}"
            + (f", vmap chunk {m['args']['vmap_chunk']}" if m["args"].get("vmap_chunk") else "") + ")"
            for m in out["merged_from"]) + "."]
    if not out.get("complete", True):
        lines += ["", "**Partial: the run was still going (or was stopped) when this was written.**"]
    return "\n".join(lines) + "\n"


def environment() -> dict:
    import jax

    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "jax": jax.__version__,
            "backend": jax.default_backend(), "device": str(jax.local_devices()[0].device_kind),
            "host": f"{platform.node()} ({os.cpu_count()} CPUs)", "python": platform.python_version()}


def merge(args) -> dict:
    """One output from several runs' JSONs (the first's environment; a later row replaces an equal key)."""
    parts = [json.loads(Path(f).read_text()) for f in args.merge]
    rows = {}
    for part in parts:
        for r in part["rows"]:
            rows[(r["proxy"], r["channels"], r["cells"], r["execution"])] = r
    out = dict(parts[0], rows=list(rows.values()), complete=all(p_["complete"] for p_ in parts),
               merged_from=[{"file": Path(f).name, "args": p_["args"], "env": p_["env"]} for f, p_ in zip(args.merge, parts)],
               load_after=parts[-1]["load_after"])
    path = Path(args.out) / f"cost_model_{args.tag or out['env']['backend']}"
    path.with_suffix(".json").write_text(json.dumps(out, indent=1))
    path.with_suffix(".md").write_text(markdown(out))
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.merge:
        return merge(args)
    out = {"env": environment(), "args": {k: v for k, v in vars(args).items()}, "load_before": list(os.getloadavg()),
           "gpus": GPUS, "rows": [], "complete": False}
    out["loop_counting_check"] = loop_counting_check()
    path = Path(args.out) / f"cost_model_{args.tag or out['env']['backend']}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.resume and path.with_suffix(".json").is_file():
        # skipped rows are tried again (e.g. a routed form merged since)
        out["rows"] = [r for r in json.loads(path.with_suffix(".json").read_text())["rows"] if "skipped" not in r]
    have = {(r["proxy"], r["channels"], r["cells"], r["execution"]) for r in out["rows"]}
    measured = measured_h200()

    def save():
        out["load_after"] = list(os.getloadavg())
        path.with_suffix(".json").write_text(json.dumps(out, indent=1))
        path.with_suffix(".md").write_text(markdown(out))

    import vs_pytorch

    for channels, cells in args.size_list:
        names = [n for n in args.proxy_list if (channels, cells) != (16, 5) or n in CPI_INDICATORS]  # CPI's size
        if not names:
            continue
        vargs = vs_args(args, channels, cells)
        vargs.proxy_list = names
        setup = vs_pytorch.make_setup(vargs, channels, cells, 5)
        setup["archs"] = balanced_archs()[:args.map_archs]  # the PyTorch loop counts the same as map
        ts = None
        if not args.no_torch:
            try:
                ts = vs_pytorch.torch_side(setup, vargs)
            except ImportError:
                print("PyTorch not installed: its count is left out", flush=True)
        chunks = VMAP_CHUNKS.get((channels, cells), {None: 32})
        for name in names:
            todo = [ex for ex in args.exec_list if (name, channels, cells, ex) not in have]
            ref = torch_cost(ts, name, vargs, len(setup["archs"])) if ts is not None and todo else {}
            for ex in todo:
                chunk = {"vmap": args.vmap_chunk or chunks.get(name, chunks[None]), "route": args.route_chunk,
                         "map": 1}[ex]
                row = {"proxy": name, "channels": channels, "cells": cells, "execution": ex,
                       **our_cost(setup, name, ex, chunk, args.map_archs)}
                if "skipped" not in row:
                    row.update(ref, roofline_s=roofline(row))
                    meas = measured.get((name, channels, cells, ex))
                    if meas:
                        row["h200_run2_archs_per_s"] = meas
                out["rows"].append(row)
                msg = row.get("skipped") or (f"{row['flops'] / 1e9:.3g} GFLOP/arch (conv+dot {row['conv_dot_flops'] / 1e9:.3g}"
                                             f", PyTorch {row.get('torch_flops', float('nan')) / 1e9:.3g}), "
                                             f"{row['bytes'] / 2**20:.3g} MB/arch, compiled in {row['compile_s']:.0f} s")
                print(f"C={channels} N={cells} {name} {ex}: {msg}", flush=True)
                save()
    out["complete"] = True
    save()
    return out


if __name__ == "__main__":
    main()
