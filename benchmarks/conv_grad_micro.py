"""Microbenchmark: NB201 convolution forward / input gradient / kernel gradient, ours vs PyTorch.

Why: on CPU the engine runs each architecture's chosen ops under ``lax.map`` + ``lax.switch``
(one architecture per step, architectures split over one XLA host device per core), and the
backward-heavy proxies (snip, grad_norm, fisher, grasp, ntk_cond) trail a PyTorch (oneDNN)
loop at C=16, N=5. This script times, at NB201's stage shapes (batch B; HxWxC = 32x32xC,
16x16x2C, 8x8x4C; 3x3 pad 1 and 1x1), each piece of a convolution's reverse pass the way the
engine runs it -- inside a ``lax.map`` over K steps whose body is a ``lax.switch`` -- against
``torch.nn.functional.conv2d`` / ``torch.nn.grad.conv2d_input`` / ``conv2d_weight`` on the
given thread count, plus alternative formulations of the kernel gradient:

* ``kgrad_cb``: one convolution with channels as batch (main before branch grad17);
* ``kgrad_split``: :mod:`fbnas_jax.models.conv`'s default, the same summed over blocks of
  samples where the output has >= 256 pixels (``kernel_grad_groups``);
* ``kgrad_im2col``: 9 shifted slices of the padded input stacked, one GEMM with g;
* ``kgrad_shift9``: 9 shifted ``dot_general``s, one per kernel tap, stacked;
* ``kgrad_autodiff``: ``jax.grad`` of ``lax.conv_general_dilated`` (XLA's own form);

and the input gradient (``igrad_cb``: the conv of g with the flipped kernel;
``igrad_autodiff``), train-mode BatchNorm forward + input gradient (``bn_bwd``) and the cost of
the switch itself.

Output: ms per call (median of ``--repeats``), one table; ``--json`` writes it with the date,
load average and versions. Example (about 1-2 min on 2 cores)::

    PYTHONPATH=. python benchmarks/conv_grad_micro.py --threads 1 --json /tmp/micro.json
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--channels", type=int, default=16, help="C of the first stage (NB201: 16)")
    p.add_argument("--batch", type=int, default=64, help="images per call")
    p.add_argument("--steps", type=int, default=4, help="lax.map steps (architectures) per timed call")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per cell (median)")
    p.add_argument("--threads", type=int, default=1,
                   help="PyTorch threads and XLA host threads (1 = what one of the engine's per-core "
                        "host devices gets)")
    p.add_argument("--only", default="", help="comma list of row names to run (default: all)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    p.add_argument("--json", default="", help="write the results here")
    return p.parse_args()


def main():
    args = _parse()
    if args.threads < 1 or args.batch < 1 or args.steps < 1 or args.repeats < 1:
        sys.exit("conv_grad_micro: --threads, --batch, --steps, --repeats must be >= 1")
    if args.threads == 1:
        os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    from fbnas_jax.models import conv as C
    from fbnas_jax.models.layers import batch_norm_train

    dn = ("NHWC", "HWIO", "NHWC")
    K, B = args.steps, args.batch

    def kgrad_split(x, g, k):  # the default: blocks of samples where the output is large
        pad = ((k // 2, k // 2),) * 2
        return C._kernel_grad_impl(x, g, ((1, 1), pad, (1, 1), (1, 1)), (k, k))

    def kgrad_cb(x, g, k):  # one channels-as-batch convolution (main before grad17)
        saved, C.KGRAD_SPLIT_MIN_PIXELS = C.KGRAD_SPLIT_MIN_PIXELS, 0
        try:
            return kgrad_split(x, g, k)
        finally:
            C.KGRAD_SPLIT_MIN_PIXELS = saved

    def kgrad_im2col(x, g, k):
        if k == 1:
            return lax.dot_general(x, g, (((0, 1, 2), (0, 1, 2)), ((), ())))[None, None]
        h, w = x.shape[1:3]
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        cols = jnp.stack([xp[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)], axis=3)
        dk = lax.dot_general(cols, g, (((0, 1, 2), (0, 1, 2)), ((), ())))  # (9, Cin, Cout)
        return dk.reshape(3, 3, *dk.shape[1:])

    def kgrad_shift9(x, g, k):
        if k == 1:
            return lax.dot_general(x, g, (((0, 1, 2), (0, 1, 2)), ((), ())))[None, None]
        h, w = x.shape[1:3]
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        taps = [lax.dot_general(xp[:, i:i + h, j:j + w, :], g, (((0, 1, 2), (0, 1, 2)), ((), ())))
                for i in range(3) for j in range(3)]
        return jnp.stack(taps).reshape(3, 3, *taps[0].shape)

    def kgrad_autodiff(x, g, k):
        w = jnp.zeros((k, k, x.shape[-1], g.shape[-1]), x.dtype)
        f = lambda w: lax.conv_general_dilated(x, w, (1, 1), ((k // 2, k // 2),) * 2, dimension_numbers=dn)  # noqa
        return jax.vjp(f, w)[1](g)[0]

    def fwd(x, w, k):
        return lax.conv_general_dilated(x, w, (1, 1), ((k // 2, k // 2),) * 2, dimension_numbers=dn)

    def igrad_cb(g, w, k):
        pad = ((k // 2, k // 2),) * 2
        return C._input_grad_impl(g, w, ((1, 1), pad, (1, 1), (1, 1)), tuple(g.shape[1:3]))

    def igrad_autodiff(g, w, k):
        x = jnp.zeros((*g.shape[:3], w.shape[2]), g.dtype)
        return jax.vjp(lambda x: fwd(x, w, k), x)[1](g)[0]

    def bn_bwd(x, g, k):
        s = jnp.ones(x.shape[-1])
        return jax.vjp(lambda x: batch_norm_train(x, s, s * 0, 1e-5)[0], x)[1](g)[0]

    def identity(x, g, k):
        return x[..., :1]

    # row name -> (jax fn(a, b, k), which operands: "xg" (x, g) | "gw" (g, w) | "xw" (x, w))
    rows = {"fwd": (fwd, "xw"), "igrad_cb": (igrad_cb, "gw"), "igrad_autodiff": (igrad_autodiff, "gw"),
            "kgrad_cb": (kgrad_cb, "xg"), "kgrad_split": (kgrad_split, "xg"), "kgrad_im2col": (kgrad_im2col, "xg"),
            "kgrad_shift9": (kgrad_shift9, "xg"), "kgrad_autodiff": (kgrad_autodiff, "xg"),
            "bn_bwd": (bn_bwd, "xg"), "switch_only": (identity, "xg")}
    if args.only:
        rows = {k: v for k, v in rows.items() if k in args.only.split(",")}

    torch = None
    if not args.no_torch:
        import torch
        torch.set_num_threads(args.threads)

    def timed(fn):
        fn()
        ts = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return 1e3 * statistics.median(ts)

    def jax_cell(fn, ops, hw, c, k):
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal((K, B, hw, hw, c), np.float32))
        wk = jnp.asarray(rng.standard_normal((K, k, k, c, c), np.float32) * 0.1)
        a, b = {"xg": (x, x), "gw": (x, wk), "xw": (x, wk)}[ops]

        def body(ab):
            a_i, b_i = ab
            # a switch like the engine's: the op runs in one branch of several
            branches = [lambda a, b: jnp.sum(fn(a, b, k)), lambda a, b: jnp.sum(a[:, :1])]
            index = (jnp.sum(b_i[:1, :1]) > 1e9).astype(jnp.int32)  # 0 at run time, unknown to XLA
            return lax.switch(index, branches, a_i, b_i)

        f = jax.jit(lambda a, b: lax.map(body, (a, b)))
        f(a, b).block_until_ready()
        return timed(lambda: f(a, b).block_until_ready()) / K

    def torch_cell(name, hw, c, k):
        if torch is None:
            return None
        g = torch.Generator().manual_seed(0)
        x = torch.randn(B, c, hw, hw, generator=g)
        w = torch.randn(c, c, k, k, generator=g) * 0.1
        p = k // 2
        tf = {"fwd": lambda: torch.nn.functional.conv2d(x, w, padding=p),
              "igrad": lambda: torch.nn.grad.conv2d_input(x.shape, w, x, padding=p),
              "kgrad": lambda: torch.nn.grad.conv2d_weight(x, w.shape, x, padding=p),
              "bn": None}
        key = name.split("_")[0]
        if key == "bn":
            xr = x.clone().requires_grad_(True)
            bn = torch.nn.BatchNorm2d(c)

            def run():
                y = bn(xr)
                torch.autograd.grad(y, xr, x)
            tf["bn"] = run
        if key not in tf or tf[key] is None:
            return None
        with torch.no_grad() if key != "bn" else torch.enable_grad():
            return timed(tf[key])

    shapes = [(32, args.channels), (16, 2 * args.channels), (8, 4 * args.channels)]
    res = []
    hdr = f"{'row':16s}" + "".join(f" {f'{hw}x{hw}x{c} k{k}':>16s}" for hw, c in shapes for k in (3, 1))
    print(f"ms per call, batch {B}, {args.threads} thread(s); JAX (inside lax.map+switch) / torch")
    print(hdr)
    torch_done = set()
    for name, (fn, ops) in rows.items():
        line = f"{name:16s}"
        for hw, c in shapes:
            for k in (3, 1):
                ms = jax_cell(fn, ops, hw, c, k)
                key = (name.split("_")[0], hw, c, k)
                tm = None
                if key not in torch_done:
                    tm = torch_cell(name, hw, c, k)
                    torch_done.add(key)
                res.append(dict(row=name, hw=hw, c=c, k=k, jax_ms=ms, torch_ms=tm))
                line += f" {ms:7.2f}/{tm:6.2f}" if tm is not None else f" {ms:7.2f}/{'':6s}"
        print(line, flush=True)
    if args.json:
        out = dict(date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                   loadavg=os.getloadavg(), jax=jax.__version__, torch=getattr(torch, "__version__", None),
                   args=vars(args), results=res)
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    print("load average", os.getloadavg())


if __name__ == "__main__":
    main()
