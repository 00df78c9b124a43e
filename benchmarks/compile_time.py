"""Compile time of one BN-only SPOS training step of the DARTS / MobileNet supernets (CPU).

Why: XLA:CPU compile time, not run time, bounded what these supernets could do on a CPU
(issue 10: a tiny DARTS supernet step took minutes to compile). This times the three phases
of ``jax.jit`` for the gradient step (value_and_grad of the BN-only loss, masked SGD update)
on one architecture: tracing (Python, Flax), lowering to StableHLO, XLA compilation; in wall
seconds and in CPU seconds of this process (``time.process_time``, all threads), which the
load of other processes on a shared machine inflates less than wall time. Also the StableHLO
size (characters, conditional and convolution ops): what XLA has to compile.

Run against any checkout (``PYTHONPATH=<checkout>``) to compare versions::

    nice -n 10 python benchmarks/compile_time.py --case darts-tiny --case mobilenet-cpu \\
        --out benchmarks/results/compile_time.json --label after
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

CASES = {
    # name: (space, settings, image size, batch)
    "darts-tiny": ("darts", dict(channels=4, layers=3), 16, 8),
    "darts-cpu": ("darts", dict(channels=8, layers=5), 32, 32),
    "mobilenet-tiny": ("mobilenet", dict(skeleton="tiny3"), 16, 8),
    "mobilenet-cpu": ("mobilenet", dict(skeleton="proxylessnas-gpu-cifar", width_mult=0.25), 32, 32),
}


def _network(space, settings):
    import jax.numpy as jnp

    if space == "darts":
        from fbnas_jax.models import darts as D

        net = D.make_network(num_classes=10, bn_mode="fair", **settings)
        return net, jnp.asarray(D.DartsSpace().parse("DARTS_V2")), D.init_variables
    from fbnas_jax.models import mobilenet as M
    from fbnas_jax.spaces import mobilenet as SM

    sk = settings.get("skeleton")
    if sk == "tiny3":  # 3 searchable layers, as tests/test_models_mobilenet_darts.py
        sk = SM.Skeleton("tiny", stem_channels=8, first_channels=0, widths=(8, 16), depths=(1, 2), strides=(1, 2),
                         mix_channels=16, stem_stride=1, input_size=16, num_classes=10)
    net = M.make_network(sk, num_classes=10, bn_mode="fair", width_mult=settings.get("width_mult", 1.0))
    return net, jnp.zeros((net.skeleton.num_layers,), jnp.int32) + 3, M.init_variables  # all k5e6


def measure(case: str, batch: int | None = None, runs: int = 3) -> dict:
    import jax
    import jax.numpy as jnp

    from fbnas_jax.models.layers import ForwardMode
    from fbnas_jax.training import partition, steps

    space, settings, size, default_batch = CASES[case]
    batch = batch or default_batch
    net, encoding, init = _network(space, settings)
    variables = init(net, 0, (size, size, 3))
    labels = partition.param_labels(variables["params"])
    opt = partition.masked_optimizer(steps.make_optimizer(learning_rate=0.1, total_steps=10), labels)
    opt_state = opt.init(variables["params"])
    mode = ForwardMode(train=True)

    def loss_fn(params, stats, x, y, e):
        params = partition.stop_frozen_gradients(params, labels)
        logits, upd = net.apply({"params": params, "batch_stats": stats}, x, e, mode=mode, mutable=["batch_stats"])
        return steps.cross_entropy(logits, y), upd["batch_stats"]

    def step(params, stats, opt_state, x, y, e):  # as steps.make_train_step's single-architecture step
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, x, y, e)
        updates, opt_state = opt.update(grads, opt_state, params)
        return partition.apply_updates(params, updates, labels), stats, opt_state, loss

    x = jnp.zeros((batch, size, size, 3), jnp.float32)
    y = jnp.zeros((batch,), jnp.int32)
    args = (variables["params"], variables["batch_stats"], opt_state, x, y, encoding)
    out = {"case": case, "space": space, "settings": settings, "image_size": size, "batch": batch}
    w0, c0 = time.time(), time.process_time()
    traced = jax.jit(step).trace(*args)
    w1, c1 = time.time(), time.process_time()
    lowered = traced.lower()
    w2, c2 = time.time(), time.process_time()
    text = lowered.as_text()
    compiled = lowered.compile()
    w3, c3 = time.time(), time.process_time()
    jax.block_until_ready(compiled(*args))
    w4 = time.time()
    step_s = []
    for _ in range(runs):  # steady state: the step's run time (wall), after the first call
        t = time.time()
        jax.block_until_ready(compiled(*args))
        step_s.append(time.time() - t)
    out.update(trace_wall_s=round(w1 - w0, 1), trace_cpu_s=round(c1 - c0, 1), lower_wall_s=round(w2 - w1, 1),
               lower_cpu_s=round(c2 - c1, 1), compile_wall_s=round(w3 - w2, 1), compile_cpu_s=round(c3 - c2, 1),
               total_wall_s=round(w3 - w0, 1), total_cpu_s=round(c3 - c0, 1), first_run_s=round(w4 - w3, 2),
               step_wall_s_median=round(sorted(step_s)[len(step_s) // 2], 3) if step_s else None,
               stablehlo_chars=len(text), case_ops=text.count("stablehlo.case"),
               while_ops=text.count("stablehlo.while"), conv_ops=text.count("stablehlo.convolution"),
               loadavg=list(os.getloadavg()), date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               jax_version=jax.__version__, device=str(jax.devices()[0]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", action="append", choices=tuple(CASES), help="repeatable (default: darts-tiny)")
    p.add_argument("--batch", type=int, help="batch size (default: the case's)")
    p.add_argument("--runs", type=int, default=3, help="timed steps after the first (median reported)")
    p.add_argument("--label", default="current", help="key of these measurements in --out (e.g. before, after)")
    p.add_argument("--out", help="JSON file to update (measurements under label/case)")
    args = p.parse_args(argv)
    for case in args.case or ["darts-tiny"]:
        res = measure(case, args.batch, args.runs)
        print(json.dumps(res), flush=True)
        if args.out:
            path = Path(args.out)
            data = json.loads(path.read_text()) if path.exists() else {}
            data.setdefault(args.label, {})[case + (f"-b{args.batch}" if args.batch else "")] = res
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
