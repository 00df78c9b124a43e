"""Stage ``train``: the three BN-only supernets of the protocol.

``bnnas`` (BN-NAS placement, SPOS), ``fair`` (FBN placement, SPOS) and ``fairnas`` (FBN
placement, FairNAS sampling), each from its config file plus the preset's overrides, into
``<workdirs>/<tag>`` (resumable: a finished workdir is not retrained). The per-epoch training
loss / accuracy goes into the sidecar: a BN-only supernet that stays at chance is a finding.
A supernet whose loss diverges is recorded as such (``diverged``: the message, with the last
good checkpoint) and the stage goes on with the next one: on a budgeted device run one
unstable recipe must not cost the other supernets; the score stage uses the last checkpoint.
"""
from __future__ import annotations

import time
from pathlib import Path

from nb201_protocol.columns import TRAINED


def supernet_config(args, tag: str):
    from fbnas_jax.config import load_config

    extra = {"fairnas": args.fairnas_overrides}.get(tag, [])
    return load_config(args.configs[tag], list(args.overrides) + list(extra) + list(args.override))


def run(args, log, save) -> dict:
    from fbnas_jax.training.loop import TrainingDivergedError, load_data, plan_steps, train

    out: dict = {}
    datasets: dict = {}
    for tag in TRAINED:
        cfg = supernet_config(args, tag)
        key = repr(cfg.data) + str(cfg.train.seed)
        if key not in datasets:
            t0 = time.perf_counter()
            datasets[key] = load_data(cfg)
            log(f"data {datasets[key].name}: {datasets[key].num_train} train images ({time.perf_counter() - t0:.1f} s)")
        ds = datasets[key]
        per_epoch, scheduled, _ = plan_steps(cfg, ds)
        t0 = time.perf_counter()
        try:
            res = train(cfg, Path(args.workdirs) / tag, dataset=ds, progress=args.progress,
                        time_limit_s=args.train_budget_s, log=log)
        except TrainingDivergedError as err:
            out[tag] = {"config": cfg.to_dict(), "diverged": str(err), "diverged_at_step": err.step,
                        "checkpoint_step": err.checkpoint_step, "seconds": time.perf_counter() - t0}
            log(f"trained {tag}: {err}")
            save(out)
            continue
        seconds = time.perf_counter() - t0
        out[tag] = {"config": cfg.to_dict(), "steps": int(res.state.step), "scheduled_steps": scheduled,
                    "steps_per_epoch": per_epoch, "seconds": seconds, "epochs": res.epochs,
                    "last": res.history[-1] if res.history else None, "time_limited": res.time_limited}
        last = res.epochs[-1] if res.epochs else {}
        log(f"trained {tag}: {out[tag]['steps']}/{scheduled} steps in {seconds:.0f} s; last epoch loss "
            f"{last.get('loss', float('nan')):.3f}, accuracy {last.get('accuracy', float('nan')):.3f}"
            + (" (stopped by the time budget)" if res.time_limited else ""))
        save(out)
    return out
