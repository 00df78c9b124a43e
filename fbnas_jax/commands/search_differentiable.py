"""``fbnas search --algo darts|balenas``: differentiable search on the NB201 mixed-op supernet.

Kept apart from :mod:`fbnas_jax.commands.search` (random / EA over an indicator), which only
forwards these two algorithms here. The search trains the supernet and the architecture
(:mod:`fbnas_jax.search.differentiable`) in ``--workdir`` (checkpoints, resume), then reads
architectures off it (:mod:`fbnas_jax.search.balenas`): ``argmax`` of alpha (DARTS) or mu
(BaLeNAS); for BaLeNAS also BaLeNAS-TF (best of N samples from q by ``--select-indicator``)
and the zero-cost NAS control (best of N random architectures by the same indicator).
With ground truth (``--truth``, default ``$FBNAS_NB201_CSV``) every pick gets its accuracy.
"""
from __future__ import annotations

import json
import os

from fbnas_jax.commands._common import log

ALGOS = ("darts", "balenas")


def add_arguments(p) -> None:
    """The options only ``--algo darts|balenas`` reads (``--seed``, ``--truth``,
    ``--truth-columns``, ``--json``, ``--no-progress`` are shared with the other algorithms)."""
    g = p.add_argument_group("differentiable search (--algo darts | balenas)")
    g.add_argument("--config", default=None,
                   help="search config: model/data/train sections (the supernet and its SGD) and a 'search' "
                        "section (architecture optimiser, selection); e.g. configs/balenas_nb201_cifar10_cpu.yaml")
    g.add_argument("--workdir", default=None, help="run directory (checkpoints, run.json, epochs.jsonl); "
                                                 "resumes when it holds a run of the same config")
    g.add_argument("--set", nargs="+", default=[], action="extend", metavar="SECTION.KEY=VALUE",
                   help="override config keys, e.g. --set train.epochs=2 search.mc_samples=2")
    g.add_argument("--select-indicator", default=None,
                   help="BaLeNAS-TF / zero-cost control: registered per-architecture indicator (default: the "
                        "config's search.select_indicator, synflow)")
    g.add_argument("--select-samples", default=None,
                   help="BaLeNAS-TF sample sizes, comma-separated (default: search.select_samples, 10,50,100)")
    g.add_argument("--control-samples", type=int, default=None,
                   help="zero-cost NAS control: random architectures (default: search.control_samples, 100; 0 = none)")


def run(args) -> int:
    import numpy as np

    from fbnas_jax.commands._common import UsageError
    from fbnas_jax.runtime import enable_compilation_cache
    from fbnas_jax.search import balenas as B
    from fbnas_jax.search.differentiable import load_search_config, search, weights_of

    if args.workdir is None:
        raise UsageError(f"--algo {args.algo} needs --workdir (checkpoints and resume)")
    if args.checkpoint or args.scores:
        raise UsageError(f"--algo {args.algo} trains its own supernet: drop --checkpoint / --scores")
    overrides = [f"search.algo={args.algo}"] + list(args.set or [])
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if args.select_indicator:
        overrides.append(f"search.select_indicator={args.select_indicator}")
    if args.select_samples:
        overrides.append(f"search.select_samples={args.select_samples}")
    if args.control_samples is not None:
        overrides.append(f"search.control_samples={args.control_samples}")
    cfg, acfg = load_search_config(args.config, overrides)
    truth = _truth(args)  # a bad --truth fails now, not after the search
    enable_compilation_cache()
    res = search(cfg, acfg, args.workdir, progress=not args.no_progress, log=log)
    space = res.space
    out = {"algo": acfg.algo, "workdir": str(args.workdir), "seed": cfg.train.seed, "steps": int(res.state.step),
           "seconds": round(res.seconds, 2), "last_epoch": res.epochs[-1] if res.epochs else None,
           "op_weights": np.round(weights_of(res), 4).tolist()}
    if acfg.algo == "balenas":
        out["sigma_mean"] = float(np.mean(np.asarray(res.arch_opt.std(res.state.arch_opt_state))))
        out["select_indicator"] = acfg.select_indicator
    picks = {name: _pick(space, v["encoding"], v if "score" in v else None, truth)
             for name, v in B.read_off(res, log=log).items()}
    out["picks"] = picks
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"algo:     {acfg.algo} (seed {cfg.train.seed}), {out['steps']} steps in {out['seconds']:.0f} s")
        for name, p in picks.items():
            acc = "".join(f", {k} = {v}" for k, v in (p.get("truth") or {}).items())
            sc = f", {acfg.select_indicator} = {p['score']:.4g}" if "score" in p else ""
            print(f"{name:<10} {p['arch']}{sc}{acc}")
    return 0


def _truth(args):
    from fbnas_jax.groundtruth import load_ground_truth

    path = args.truth or os.environ.get("FBNAS_NB201_CSV")
    if not path:
        return None
    cols = [c.strip() for c in (args.truth_columns or "").split(",") if c.strip()] or None
    return load_ground_truth(path, columns=cols, space="nb201")


def _pick(space, encoding, scored, truth) -> dict:
    import numpy as np

    out = {"arch": space.to_string(encoding), "encoding": np.asarray(encoding).tolist()}
    if scored is not None:
        out.update(score=scored["score"], unique=scored["unique"])
    if truth is not None:
        names = [c for c in truth.column_names if c.lower() != "index"]
        vals = {c: float(truth.values(c, np.asarray(encoding)[None])[0]) for c in names}
        out["truth"] = {k: (None if np.isnan(v) else v) for k, v in vals.items()}
    return out
