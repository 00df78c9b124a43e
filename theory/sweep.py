"""The full FCN grid behind the verdict: every setting x every Eq. 4 variant, resumable.

Settings vary one factor at a time around a base (depth 3, Gaussian inputs
``gauss0``, sigma_w = 1, sigma_b = 0.1, gamma = 1, beta = 0), each for ReLU and
erf with batch and population BN statistics:

* depth 1, 2, 3, 5;
* inputs: three draws -- ``gauss0``, ``gauss1`` (i.i.d. on the sphere) and ``circle``
  (equally spaced points on a circle, structured);
* (sigma_w, sigma_b) = (1, 0.1) and (2, 1);
* gamma, beta ~ N(0, 1) at initialisation (variant (c)).

Kernels are cached after every width in a pickle (``state``), the JSON
summary is rewritten at the same time, so a killed run resumes where it stopped.
"""
from __future__ import annotations

import datetime
import json
import os
import pickle
import platform
import time
from pathlib import Path

import jax

from theory.check import Setting, empirical_kernels, prepare, summarise

SIZES = {
    # widths, seeds, MC samples per replicate, MC replicates; settings whose seed-averaged error vs the
    # derived limit at the largest width is above ``goal`` get more seeds there, in stages: up to
    # ``extra_seeds[0]``, then those still above it up to ``extra_seeds[1]`` ... (the seed-averaged error of an
    # unbiased reference falls like 1/sqrt(seeds); the JSON reports the noise floor next to it)
    "full": dict(widths=(128, 256, 512, 1024, 2048, 4096), seeds=16, mc_samples=200_000, mc_reps=4,
                 goal=0.02, extra_seeds=(48, 160)),
    "small": dict(widths=(64, 128), seeds=3, mc_samples=10_000, mc_reps=2, goal=None, extra_seeds=()),
}
CIRCLE_MC_FACTOR = 5  # circle inputs make batch-BN variances small now and then: heavier tails, more MC draws


def grid(size: str = "full") -> list[Setting]:
    """The settings of the sweep (``small``: the base settings and one variation of each kind, depth <= 3)."""
    out = []
    for act in ("relu", "erf"):
        for stats in ("batch", "population"):
            base = Setting(act, stats)
            var = [base] + [Setting(act, stats, depth=d) for d in (1, 2, 5)]
            var += [Setting(act, stats, inputs=i) for i in ("gauss1", "circle")]
            var += [Setting(act, stats, sigma_w=2.0, sigma_b=1.0), Setting(act, stats, affine="gaussian")]
            out += var
    if size == "small":
        out = [Setting("relu", "batch", depth=2), Setting("relu", "population", depth=2),
               Setting("relu", "batch", depth=2, affine="gaussian")]
    return out


def meta() -> dict:
    import numpy as np

    from theory.nt_compat import nt

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "device": f"CPU: {cpu}, {os.cpu_count()} cores (jax backend {jax.default_backend()})",
            "jax_version": jax.__version__, "numpy_version": np.__version__,
            "neural_tangents_version": nt.__version__, "python": platform.python_version(),
            "loadavg_at_start": list(os.getloadavg())}


def run_sweep(size: str = "full", out: str | Path = "theory/results/sweep.json", state: str | Path | None = None,
              settings=None, seed: int = 0, progress: bool = True) -> dict:
    """Run (or resume) the sweep; returns and writes {"meta", "config", "settings": [summaries]}."""
    cfg = SIZES[size]
    settings = grid(size) if settings is None else settings
    out = Path(out)
    state = Path(state) if state is not None else Path(".cache/theory") / f"sweep_{size}_state.pkl"
    state.parent.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    st = pickle.loads(state.read_bytes()) if state.exists() else {"prepared": {}, "kernels": {}, "seconds": 0.0}
    st.setdefault("cpu_seconds", 0.0)
    info = meta()
    st.setdefault("first_started", info["date"])  # ``date`` is this (possibly resumed) call's start
    t0 = time.time()

    def save(final=False):
        st["seconds"] += time.time() - save.t
        st["cpu_seconds"] += time.process_time() - save.c
        save.t, save.c = time.time(), time.process_time()
        state.write_bytes(pickle.dumps(st))
        res = {"meta": {**info, "first_started": st["first_started"], "loadavg_at_end": list(os.getloadavg()), "wall_seconds": st["seconds"],
                        "process_cpu_seconds": st["cpu_seconds"], "complete": final},
               "config": {**{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}, "size": size,
                          "seed": seed, "batch": settings[0].batch, "d_in": settings[0].d_in},
               "settings": [summarise(s, st["prepared"][s.name], st["kernels"][s.name], cfg["widths"])
                            for s in settings if st["kernels"].get(s.name)]}
        out.write_text(json.dumps(res, indent=1))
        return res

    save.t, save.c = t0, time.process_time()
    for i, s in enumerate(settings):
        if s.name not in st["prepared"]:
            f = CIRCLE_MC_FACTOR if s.inputs == "circle" else 1
            st["prepared"][s.name] = prepare(s, jax.random.fold_in(jax.random.PRNGKey(seed + 1), i),
                                             cfg["mc_samples"] * f, cfg["mc_reps"])
    state.write_bytes(pickle.dumps(st))
    empirical_kernels(settings, st["prepared"], cfg["widths"], cfg["seeds"], seed, progress, st["kernels"],
                      on_width=lambda _: save())
    res = save()
    for n_seeds in cfg["extra_seeds"] if cfg["goal"] is not None else ():
        missed = {r["name"] for r in res["settings"] if r["seedavg_at_max_width"]["derived"] > cfg["goal"]}
        more = [s for s in settings if s.name in missed]
        if more:
            empirical_kernels(more, st["prepared"], cfg["widths"][-1:], n_seeds, seed, progress, st["kernels"],
                              on_width=lambda _: save())
            res = save()
    return save(final=True)
