"""Stage ``score``: every requested column over the NB201 space, written as it finishes.

Columns follow :mod:`nb201_protocol.columns`. Parameter-only ("table") indicators and the
cost columns cover all 15,625 architectures; forward/gradient indicators cover ``--pool``
architectures drawn uniformly with ``--seed`` (all 15,625 when ``--pool 15625``); ``cpi@<tag>``
ranks its components over that pool. Unscored cells are NaN. After every column the scores
CSV is rewritten and the sidecar saved, so a run cut off by a time limit keeps every finished
column. ``params``/``flops`` are the benchmark's own counting (C=16, N=5 networks,
:func:`fbnas_jax.spaces.cost.nb201_costs`) whatever the size of the scored networks.

Two guards keep a budgeted device run useful: once ``--deadline-s`` seconds have passed since
the benchmark started, the remaining columns are skipped (listed in ``skipped``; parameter-only and cost columns,
milliseconds each, always run) so that the analyze stage still runs on what was scored; a column whose supernet has no usable checkpoint (its training
diverged before the first save) is skipped with the reason, and the others go on.
"""
from __future__ import annotations

import csv
import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np

from nb201_protocol import columns as C

SCORES_CSV = "nb201_cifar10_scores.csv"


def write_scores(path: Path, archs: list[str], cols: dict[str, np.ndarray]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch"] + list(cols))
        for i, a in enumerate(archs):
            w.writerow([a] + [f"{cols[c][i]:.7g}" for c in cols])
    tmp.replace(path)


def run(args, log, save) -> dict:
    from fbnas_jax import scoring
    from fbnas_jax.indicators import base, training_free
    from fbnas_jax.indicators.supernet import cpi_from_scores
    from fbnas_jax.spaces import cost, nb201
    from fbnas_jax.training.loop import load_data, load_run

    cols = C.parse_all(args.columns)
    enc = nb201.all_encodings()
    n = len(enc)
    pool = np.sort(np.random.default_rng(args.seed).choice(n, size=min(args.pool, n), replace=False))
    archs = [nb201.encoding_to_string(e) for e in enc]
    # a fresh network is built from the trained run of the same BN placement (same data, sizes)
    trained = sorted({c.network for c in cols if c.network})
    runs, unloadable = {}, {}
    for tag in trained:
        try:
            runs[tag] = load_run(Path(args.workdirs) / tag)
        except FileNotFoundError as err:
            unloadable[tag] = str(err)
            log(f"warning: network {tag!r} cannot be loaded ({err}); its columns are skipped")
    if not runs:
        raise FileNotFoundError(f"no trained supernet under {args.workdirs}: run the train stage first "
                                f"({'; '.join(unloadable.values())})")
    data = load_data(next(iter(runs.values())).config)
    ctx_kw = dict(eval_batch_size=args.eval_batch_size, mc_samples=args.mc_samples,
                  mc_batch_size=args.mc_batch_size, seed=args.seed)
    contexts: dict = {}

    def context(key: str):
        if key not in contexts:
            fresh, tag = key.startswith("fresh:"), key.split(":")[-1]
            ctx = scoring.make_context(runs[tag], data, fresh_init=fresh, **ctx_kw)
            opts = {**ctx.options, **{k: dict(v) for k, v in args.indicator_options.items()}}
            contexts[key] = dataclasses.replace(ctx, options=opts)
        return contexts[key]

    values: dict[str, np.ndarray] = {}
    meta: dict = {"pool_size": int(len(pool)), "pool_seed": args.seed, "columns": [c.name for c in cols],
                  "timings": {}, "options_used": {}, "nan_counts": {}, "rows": {}, "skipped": {},
                  "deadline_s": args.deadline_s,
                  "pool_note": "forward/gradient columns and cpi are scored on the pool only (NaN elsewhere); "
                               "cpi ranks over the pool"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = getattr(args, "t_start", time.perf_counter())
    for col in cols:
        t0 = time.perf_counter()
        reason = None
        cheap = col.indicator in ("params", "flops") or (
            col.family == "supernet" and base.get(col.indicator).per_arch_cost == "table")
        if args.deadline_s is not None and t0 - t_start > args.deadline_s and not cheap:
            reason = f"deadline of {args.deadline_s:.0f} s (since the start) passed"
        elif col.network in unloadable:
            reason = f"network {col.network!r} not loadable"
        elif col.family == "composite" and any(f"{c}@{col.network}" not in values
                                                for c in base.get(col.indicator).components):
            reason = "a component was not scored"
        if reason is not None:
            meta["skipped"][col.name] = reason
            log(f"skipped {col.name}: {reason}")
            save(meta)
            continue
        full = np.full(n, np.nan)
        if col.indicator in ("params", "flops"):
            rows = np.arange(n)
            full[:] = cost.nb201_costs(enc)[0 if col.indicator == "params" else 1]
            meta["timings"][col.name] = {"run_s": time.perf_counter() - t0}
        elif col.family == "composite":
            rows = pool
            comps = {c: values[f"{c}@{col.network}"][pool] for c in base.get(col.indicator).components}
            full[pool] = cpi_from_scores(comps)
            meta["timings"][col.name] = {"run_s": time.perf_counter() - t0}
        else:
            ctx = context(col.context_key)
            rows = np.arange(n) if base.get(col.indicator).per_arch_cost == "table" else pool
            chunk = int(args.chunk_sizes.get(col.indicator, args.chunk_size))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", scoring.ScoringWarning)  # NaN counts are recorded below
                res = scoring.score_architectures(ctx, [col.indicator], enc[rows], chunk_size=chunk,
                                                  devices=args.devices, progress=args.progress)
            full[rows] = res[col.indicator]
            meta["timings"][col.name] = res.timings[col.indicator]
            if col.family == "training_free":
                meta["options_used"][col.name] = training_free.resolve_options(col.indicator, ctx)
        meta["timings"][col.name]["total_s"] = time.perf_counter() - t0
        values[col.name] = full
        meta["rows"][col.name] = int(len(rows))
        meta["nan_counts"][col.name] = int(np.isnan(full[rows]).sum())
        write_scores(out / SCORES_CSV, archs, values)
        t = meta["timings"][col.name]
        log(f"scored {col.name}: {len(rows)} architectures in {t['total_s']:.1f} s"
            + (f" (compile {t['compile_s']:.1f} s)" if "compile_s" in t else ""))
        save(meta)
    meta["context_options"] = ctx_kw
    return meta
