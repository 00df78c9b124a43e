"""``ntk-check``: empirical BN-only NTK vs Eq. 4 and vs the derived limit, over widths and seeds."""
from __future__ import annotations

import sys
import time

import jax
import numpy as np

from theory import x64


def _slope(widths, errs) -> float:
    """Least-squares slope of log(err) vs log(width) (nan for a single width)."""
    if len(widths) < 2:
        return float("nan")
    return float(np.polyfit(np.log(widths), np.log(errs), 1)[0])


def ntk_check(widths=(64, 128, 256, 512, 1024, 2048), depth=3, activation="relu", seeds=5,
              batch=8, d_in=8, stats="batch", sigma_w=1.0, sigma_b=0.1, mc_samples=50_000,
              mc_reps=2, seed=0, progress=True, return_kernels=False, reference=True) -> dict:
    """Measure rel. Frobenius distance of the empirical BN-only NTK to Eq. 4 and to the derived limit.

    Returns a JSON-able dict with, per width, mean/std over ``seeds`` of
    ``err_eq4`` (raw), ``err_eq4_scaled`` (after the best scalar rescaling of
    Eq. 4, i.e. ignoring its unspecified overall scale) and ``err_derived``,
    plus fitted log-log slopes and limit-vs-limit distances.  With
    ``reference=True`` (relu/erf) also ``err_stax_ref``: the all-parameter
    NTK of the same FCN without BN vs neural-tangents' analytic stax NTK, the
    standard-training yardstick for finite-width error at each width.
    """
    from tqdm import tqdm

    from theory import empirical, limits, network
    from theory.activations import get_activation

    act = get_activation(activation)
    t0 = time.time()
    with x64():
        key = jax.random.PRNGKey(seed)
        kx, kmc, kw = jax.random.split(key, 3)
        x = network.make_inputs(kx, batch, d_in)
        eq4 = limits.eq4_kernel(x, depth, act, sigma_w, sigma_b)
        pop = limits.derived_population_kernel(x, depth, act, sigma_w, sigma_b)
        pop_scales = limits.population_scales(x, depth, act, sigma_w, sigma_b)
        if stats == "batch":
            derived, mc_rel_se = limits.derived_batch_kernel_mc(
                kmc, x, depth, act, sigma_w, sigma_b, n_samples=mc_samples, n_rep=mc_reps)
        else:
            derived, mc_rel_se = pop, 0.0
        rows, kernels = [], {}
        it = [(w, s) for w in widths for s in range(seeds)]
        per = {w: [] for w in widths}
        for w, s in tqdm(it, desc="empirical NTK", file=sys.stderr, disable=not progress):
            fixed, bn = network.init_params(jax.random.fold_in(jax.random.fold_in(kw, w), s), d_in, w, depth)
            k = empirical.bn_only_ntk(x, bn, fixed, phi=act.phi, sigma_w=sigma_w, sigma_b=sigma_b,
                                      stats=stats, pop_scales=pop_scales)
            ref = (empirical.stax_reference_errors(jax.random.fold_in(kw, 7919 * w + s), x, w, depth,
                                                   activation, sigma_w, sigma_b)
                   if reference and activation in ("relu", "erf") else float("nan"))
            per[w].append((empirical.rel_fro(k, eq4), empirical.rel_fro_best_scale(k, eq4),
                           empirical.rel_fro(k, derived), ref))
            if s == 0:
                kernels[w] = k
        for w in widths:
            e = np.array(per[w])
            rows.append({"width": int(w),
                         "err_eq4_mean": float(e[:, 0].mean()), "err_eq4_std": float(e[:, 0].std(ddof=1)) if seeds > 1 else 0.0,
                         "err_eq4_scaled_mean": float(e[:, 1].mean()), "err_eq4_scaled_std": float(e[:, 1].std(ddof=1)) if seeds > 1 else 0.0,
                         "err_derived_mean": float(e[:, 2].mean()), "err_derived_std": float(e[:, 2].std(ddof=1)) if seeds > 1 else 0.0,
                         "err_stax_ref_mean": float(e[:, 3].mean()), "err_stax_ref_std": float(e[:, 3].std(ddof=1)) if seeds > 1 else 0.0})
    ws = [r["width"] for r in rows]
    out = {
        "config": {"widths": list(map(int, widths)), "depth": depth, "activation": activation,
                   "seeds": seeds, "batch": batch, "d_in": d_in, "bn_stats": stats,
                   "sigma_w": sigma_w, "sigma_b": sigma_b, "mc_samples": mc_samples, "mc_reps": mc_reps,
                   "seed": seed},
        "rows": rows,
        "slope_eq4": _slope(ws, [r["err_eq4_mean"] for r in rows]),
        "slope_eq4_scaled": _slope(ws, [r["err_eq4_scaled_mean"] for r in rows]),
        "slope_derived": _slope(ws, [r["err_derived_mean"] for r in rows]),
        "slope_stax_ref": (_slope(ws, [r["err_stax_ref_mean"] for r in rows])
                           if np.isfinite(rows[0]["err_stax_ref_mean"]) else float("nan")),
        "derived_mc_rel_stderr": mc_rel_se,
        "limit_eq4_vs_derived": empirical.rel_fro(eq4, derived),
        "limit_eq4_vs_derived_scaled": empirical.rel_fro_best_scale(derived, eq4),
        "limit_population_vs_batch": empirical.rel_fro(pop, derived) if stats == "batch" else 0.0,
        "seconds": time.time() - t0,
    }
    if return_kernels:
        out["kernels"] = {"eq4": eq4, "derived": derived, "population": pop, "empirical": kernels}
    return out


def format_table(res: dict) -> str:
    """Human-readable table of an ``ntk_check`` result."""
    c = res["config"]
    lines = [f"BN-only NTK check: depth={c['depth']} act={c['activation']} batch={c['batch']} "
             f"BN stats={c['bn_stats']} seeds={c['seeds']} sigma_w={c['sigma_w']} sigma_b={c['sigma_b']}",
             "relative Frobenius distance ||Theta_emp - Theta_ref|| / ||Theta_ref|| (mean +- std over seeds)",
             f"{'width':>6} | {'vs Eq.4':>17} | {'vs Eq.4 (best scale)':>20} | {'vs derived limit':>17} | "
             f"{'ref: all params, no BN':>22}",
             "-" * 96]
    for r in res["rows"]:
        lines.append(f"{r['width']:>6} | {r['err_eq4_mean']:8.4f} +- {r['err_eq4_std']:6.4f} | "
                     f"{r['err_eq4_scaled_mean']:9.4f} +- {r['err_eq4_scaled_std']:6.4f} | "
                     f"{r['err_derived_mean']:8.4f} +- {r['err_derived_std']:6.4f} | "
                     f"{r['err_stax_ref_mean']:11.4f} +- {r['err_stax_ref_std']:6.4f}")
    lines += ["-" * 96,
              f"log-log slope vs width: Eq.4 {res['slope_eq4']:+.3f} | Eq.4 scaled {res['slope_eq4_scaled']:+.3f} | "
              f"derived {res['slope_derived']:+.3f} | ref {res['slope_stax_ref']:+.3f}   (convergence to the limit predicts -0.5)",
              f"infinite-width gap ||Eq4 - derived||/||derived|| = {res['limit_eq4_vs_derived']:.4f} "
              f"(best scale: {res['limit_eq4_vs_derived_scaled']:.4f}); derived-limit MC rel. std. error "
              f"{res['derived_mc_rel_stderr']:.1e}; {res['seconds']:.1f} s"]
    return "\n".join(lines)
