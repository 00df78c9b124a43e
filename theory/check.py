"""``ntk-check``: empirical BN-only NTK of finite FCN-BN nets vs the derived limit and every Eq. 4 variant.

For each setting (activation, BN statistics, depth, inputs, sigma_w, sigma_b,
gamma/beta initialisation) and width, ``seeds`` independent nets give
empirical kernels (neural-tangents, BN parameters only).  Per variant of
``theory.variants`` we report the mean and std over seeds of each seed's
error, the **seed-averaged error** (error of the mean kernel over seeds:
finite-width fluctuations average out like 1/sqrt(seeds), a wrong reference
leaves a floor), and log-log slopes of both against width.  A reference that
is the limit gives slopes near -1/2 and a seed-averaged error that keeps falling.

One weight draw per (width, seed) serves every setting of a call (common
random numbers): the deepest net's first l layers are the depth-l net.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass

import jax
import numpy as np

from theory import x64
from theory.variants import LABELS, VARIANTS, error, fit_inner_constant, reference_kernels, rel_fro, \
    rel_fro_best_scale


@dataclass(frozen=True)
class Setting:
    """One FCN-BN configuration (``batch`` points in R^``d_in``)."""

    activation: str = "relu"
    stats: str = "batch"
    depth: int = 3
    inputs: str = "gauss0"
    sigma_w: float = 1.0
    sigma_b: float = 0.1
    affine: str = "unit"
    batch: int = 8
    d_in: int = 8

    @property
    def name(self) -> str:
        return (f"{self.activation}-{self.stats}-L{self.depth}-{self.inputs}-sw{self.sigma_w:g}-sb{self.sigma_b:g}"
                f"-{self.affine}" + ("" if (self.batch, self.d_in) == (8, 8) else f"-m{self.batch}-d{self.d_in}"))

    def spec(self):
        from theory.activations import get_activation
        from theory.kernel_limit import LimitSpec

        return LimitSpec(get_activation(self.activation), self.depth, self.sigma_w, self.sigma_b, self.stats,
                         self.affine)


def slope(widths, errs) -> float:
    """Least-squares slope of log(err) vs log(width) (nan for fewer than two widths)."""
    widths, errs = np.asarray(widths, float), np.asarray(errs, float)
    ok = np.isfinite(errs) & (errs > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(widths[ok]), np.log(errs[ok]), 1)[0])


def prepare(setting: Setting, key, mc_samples: int = 200_000, mc_reps: int = 4) -> dict:
    """Inputs, derived limit, Eq. 4 verbatim and the matched Sigma's of one setting."""
    from theory import limits, network
    from theory.activations import get_activation
    from theory.kernel_limit import ntk_limit

    act = get_activation(setting.activation)
    with x64():
        x = np.asarray(network.inputs_by_name(setting.inputs, setting.batch, setting.d_in))
        lim = ntk_limit(key, x, setting.spec(), n_samples=mc_samples, n_rep=mc_reps)
        eq4 = limits.eq4_kernel(x, setting.depth, act, setting.sigma_w, setting.sigma_b)
        pop = limits.derived_population_kernel(x, setting.depth, act, setting.sigma_w, setting.sigma_b)
    return {"x": x, "limit": lim, "eq4": eq4, "population": pop,
            "pop_scales": np.asarray(lim.scales) if setting.stats == "population" else None}


def empirical_kernels(settings, prepared, widths, seeds: int, seed: int = 0, progress: bool = True,
                      state: dict | None = None, on_width=None, reference: bool = False) -> dict:
    """{setting name: {width: (seeds, m, m) kernels}} (and ``_stax_ref``: {width: errors}); resumes from ``state``.

    ``on_width(state)`` is called after each width (the sweep saves its state there).
    """
    from tqdm import tqdm

    from theory import empirical, network
    from theory.activations import get_activation

    state = {} if state is None else state
    todo = [(w, s) for w in widths for s in range(seeds)
            if any(len(state.get(st.name, {}).get(w, [])) <= s for st in settings)]
    d_in = settings[0].d_in
    if any(st.d_in != d_in for st in settings):
        raise ValueError("all settings of one call must share d_in")
    max_depth = max(st.depth for st in settings)
    bar = tqdm(total=len(todo), desc="empirical NTK (width, seed)", file=sys.stderr, disable=not progress)
    with x64():
        for w in widths:
            for s in range(seeds):
                if (w, s) not in todo:
                    continue
                fixed, unit, gauss = jax.device_put(network.sample_weights(seed * 1_000_003 + s, d_in, w, max_depth))
                for st in settings:
                    got = state.setdefault(st.name, {}).setdefault(w, [])
                    if len(got) > s:
                        continue
                    f, bn = network.truncate(fixed, unit if st.affine == "unit" else gauss, st.depth)
                    p = prepared[st.name]
                    got.append(empirical.bn_only_ntk(p["x"], bn, f, phi=get_activation(st.activation).phi,
                                                     sigma_w=st.sigma_w, sigma_b=st.sigma_b, stats=st.stats,
                                                     pop_scales=p["pop_scales"]))
                if reference:
                    st = settings[0]
                    state.setdefault("_stax_ref", {}).setdefault(w, []).append(empirical.stax_reference_errors(
                        jax.random.fold_in(jax.random.PRNGKey(seed + 7919), w * 1000 + s), prepared[st.name]["x"],
                        w, st.depth, st.activation, st.sigma_w, st.sigma_b))
                bar.update()
            if on_width is not None:
                on_width(state)
    bar.close()
    return state


def summarise(setting: Setting, prep: dict, kernels: dict, widths) -> dict:
    """Errors of every variant per width, slopes, fitted c, limit gaps (JSON-able).

    ``{v}_noise_floor`` = rms(per-seed errors)/sqrt(seeds): what the
    seed-averaged error would be if the empirical kernels scattered around the
    reference with no bias; a seed-averaged error far above it is a bias.
    Seed-averaged slopes use the same number of seeds at every width (the
    smallest count), since more seeds alone lower the seed-averaged error.
    """
    lim = prep["limit"]
    widths = [w for w in widths if w in kernels and len(kernels[w])]
    wmax = max(widths)
    kmax = np.mean(kernels[wmax], 0)
    c_emp, _ = fit_inner_constant(kmax, lim.sigmas)
    c_lim, gap_free = fit_inner_constant(lim.theta, lim.sigmas)
    refs = reference_kernels(lim.theta, prep["eq4"], lim.sigmas, setting.sigma_w, c_emp)
    s_min = min(len(kernels[w]) for w in widths)
    rows = []
    for w in widths:
        ks = np.asarray(kernels[w])
        row = {"width": int(w), "seeds": len(ks)}
        for v in VARIANTS:
            e = np.array([error(k, refs[v], v) for k in ks])
            row[f"{v}_mean"] = float(e.mean())
            row[f"{v}_std"] = float(e.std(ddof=1)) if len(e) > 1 else 0.0
            row[f"{v}_seedavg"] = error(ks.mean(0), refs[v], v)
            row[f"{v}_noise_floor"] = float(np.sqrt(np.mean(e**2) / len(e)))
            if len(ks) > s_min:
                row[f"{v}_seedavg_first{s_min}"] = error(ks[:s_min].mean(0), refs[v], v)
        rows.append(row)
    eq = lambda r, v: r.get(f"{v}_seedavg_first{s_min}", r[f"{v}_seedavg"])  # noqa: E731
    gaps = {v: (rel_fro(refs[v], lim.theta) if v in ("derived", "eq4") else rel_fro_best_scale(lim.theta, refs[v]))
            for v in VARIANTS if v != "eq4_free"}
    gaps["eq4_free"] = gap_free
    return {
        "name": setting.name, "setting": dataclasses.asdict(setting),
        "rows": rows,
        "slope": {v: slope(widths, [r[f"{v}_mean"] for r in rows]) for v in VARIANTS},
        "slope_seedavg": {v: slope(widths, [eq(r, v) for r in rows]) for v in VARIANTS},
        "seedavg_at_max_width": {v: rows[-1][f"{v}_seedavg"] for v in VARIANTS},
        "noise_floor_at_max_width": {v: rows[-1][f"{v}_noise_floor"] for v in VARIANTS},
        "max_width": int(wmax), "seeds_at_max_width": rows[-1]["seeds"],
        "limit_gap": gaps,  # distance of each variant's infinite-width kernel to the derived limit
        "eq4_free_c": {"fitted_to_empirical": c_emp, "fitted_to_limit": c_lim, "sigma_w2": setting.sigma_w**2,
                       "search_range": [1e-3, 1e3]},
        "limit_mc_rel_stderr": lim.rel_stderr,
        "limit_vs_population_closed_form": rel_fro(lim.theta, prep["population"]),
    }


def ntk_check(widths=(64, 128, 256, 512, 1024, 2048), depth=3, activation="relu", seeds=6, batch=8, d_in=8,
              stats="batch", sigma_w=1.0, sigma_b=0.1, inputs="gauss0", affine="unit", mc_samples=50_000,
              mc_reps=2, seed=0, progress=True, return_kernels=False, reference=False) -> dict:
    """One setting over widths: see the module docstring; ``reference`` adds the no-BN stax yardstick."""
    t0, load0 = time.time(), os.getloadavg()
    st = Setting(activation, stats, depth, inputs, float(sigma_w), float(sigma_b), affine, batch, d_in)
    prep = {st.name: prepare(st, jax.random.PRNGKey(seed + 1), mc_samples, mc_reps)}
    ref = reference and activation in ("relu", "erf")
    state = empirical_kernels([st], prep, widths, seeds, seed, progress, reference=ref)
    out = summarise(st, prep[st.name], state[st.name], widths)
    if ref:
        for r in out["rows"]:
            e = state["_stax_ref"][r["width"]]
            r["stax_ref_mean"], r["stax_ref_std"] = float(np.mean(e)), float(np.std(e, ddof=1)) if len(e) > 1 else 0.0
        out["slope"]["stax_ref"] = slope(widths, [r["stax_ref_mean"] for r in out["rows"]])
    out["config"] = {"widths": list(map(int, widths)), "seeds": seeds, "mc_samples": mc_samples, "mc_reps": mc_reps,
                     "seed": seed}
    out["seconds"] = time.time() - t0  # timings on a shared machine: the date and load go with them
    out["date"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0))
    out["loadavg_start_end"] = [load0[0], os.getloadavg()[0]]
    if return_kernels:
        out["kernels"] = {"derived": prep[st.name]["limit"].theta, "eq4": prep[st.name]["eq4"],
                          "empirical": {w: np.asarray(state[st.name][w]) for w in widths}}
    return out


def format_table(res: dict) -> str:
    """Human-readable table of a :func:`summarise` / :func:`ntk_check` result."""
    c = res["setting"]
    short = {"derived": "derived", "derived_scaled": "derived*", "eq4": "Eq4", "eq4_scaled": "Eq4*",
             "eq4_matched": "Eq4 matched*", "eq4_free": "Eq4 fit-c*"}
    lines = [f"BN-only NTK check [{res['name']}]: {c['activation']}, BN stats={c['stats']}, depth={c['depth']}, "
             f"inputs={c['inputs']}, sigma_w={c['sigma_w']:g}, sigma_b={c['sigma_b']:g}, gamma/beta={c['affine']}",
             "rel. Frobenius error, mean over seeds [error of the seed-averaged kernel];  * = after the best "
             "scalar rescaling",
             f"{'width':>6} {'seeds':>5} | " + " | ".join(f"{short[v]:>17}" for v in VARIANTS)
             + (f" | {'ref: no BN':>10}" if "stax_ref_mean" in res["rows"][0] else "")]
    lines.append("-" * len(lines[-1]))
    for r in res["rows"]:
        lines.append(f"{r['width']:>6} {r['seeds']:>5} | "
                     + " | ".join(f"{r[v + '_mean']:7.4f} [{r[v + '_seedavg']:7.4f}]" for v in VARIANTS)
                     + (f" | {r['stax_ref_mean']:10.4f}" if "stax_ref_mean" in r else ""))
    lines.append("-" * len(lines[2]))
    lines.append("slope vs width, mean [seed-avg]: " + ", ".join(
        f"{short[v]} {res['slope'][v]:+.2f} [{res['slope_seedavg'][v]:+.2f}]" for v in VARIANTS)
        + (f", ref {res['slope']['stax_ref']:+.2f}" if "stax_ref" in res["slope"] else ""))
    lines.append("infinite-width gap to the derived limit: " + ", ".join(
        f"{short[v]} {res['limit_gap'][v]:.3f}" for v in VARIANTS[2:])
        + f";  fitted c = {res['eq4_free_c']['fitted_to_empirical']:.3g} (sigma_w^2 = "
        f"{res['eq4_free_c']['sigma_w2']:.3g});  limit MC rel. s.e. {res['limit_mc_rel_stderr']:.1e}"
        + (f";  {res['seconds']:.0f} s" if "seconds" in res else ""))
    lines.append("labels: " + "; ".join(f"{short[v]} = {LABELS[v]}" for v in VARIANTS))
    return "\n".join(lines)
