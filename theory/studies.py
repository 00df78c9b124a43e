"""Two follow-up measurements: batch size (FCN) and a convolutional net.

* :func:`batch_size_study` -- training-mode BN couples the samples of a batch.
  On the first ``s_points`` points of a fixed sequence, batches of m = 4 ... 64
  points give a BN-only NTK whose limit depends on m.  We compute the limit for
  ``batch`` (training mode), ``batch_frozen`` (batch statistics, no gradient
  through them) and ``population`` statistics, check each batch limit against
  finite-width nets, and measure whether the batch limit approaches the
  population kernel as m grows.
* :func:`cnn_study` -- concentration of a small BN-only CNN's kernel with the
  channel count, against its derived infinite-channel limit and against the
  FCN limit applied per pixel (``theory.cnn``).
"""
from __future__ import annotations

import os
import sys
import time

import jax
import numpy as np

from theory import x64
from theory.check import slope
from theory.variants import rel_fro, rel_fro_best_scale

BATCH_SIZES = {"full": dict(ms=(4, 8, 16, 32, 64), width=2048, seeds=8, mc_samples=100_000, mc_reps=4),
               "small": dict(ms=(4, 8), width=128, seeds=2, mc_samples=5_000, mc_reps=2)}
CNN_SIZES = {"full": dict(channels=(32, 64, 128, 256, 512, 1024), seeds=16, mc_samples=100_000, mc_reps=4),
             "small": dict(channels=(16, 64), seeds=2, mc_samples=2_000, mc_reps=2)}


def _extrapolate(ms, kernels):
    """Least-squares fit K(m) = K_inf + C/m over the given m; returns K_inf."""
    a = np.stack([np.ones(len(ms)), 1.0 / np.asarray(ms, float)], 1)
    flat = np.stack([k.ravel() for k in kernels])
    coef, *_ = np.linalg.lstsq(a, flat, rcond=None)
    return coef[0].reshape(kernels[0].shape)


def batch_size_study(size="full", activations=("relu", "erf"), depth=3, s_points=4, d_in=8, sigma_w=1.0,
                     sigma_b=0.1, seed=0, progress=True) -> dict:
    """See the module docstring; returns a JSON-able dict (per activation: rows over m)."""
    from tqdm import tqdm

    from theory import empirical, network
    from theory.activations import get_activation
    from theory.kernel_limit import LimitSpec, ntk_limit

    cfg = BATCH_SIZES[size]
    ms, t0, c0, load0 = cfg["ms"], time.time(), time.process_time(), os.getloadavg()[0]
    out = {"config": {**cfg, "ms": list(ms), "depth": depth, "s_points": s_points, "d_in": d_in,
                      "sigma_w": sigma_w, "sigma_b": sigma_b, "seed": seed}, "activations": {}}
    with x64():
        pts = np.asarray(network.make_inputs(jax.random.PRNGKey(7000 + seed), max(ms), d_in))
        for act_name in activations:
            act = get_activation(act_name)
            spec = lambda st: LimitSpec(act, depth, sigma_w, sigma_b, st)  # noqa: E731
            pop = ntk_limit(None, pts[:s_points], spec("population"))
            rows, lims = [], {}
            for i, m in enumerate(tqdm(ms, desc=f"batch size ({act_name})", file=sys.stderr, disable=not progress)):
                x = pts[:m]
                key = jax.random.fold_in(jax.random.PRNGKey(seed + 11), i)
                # the kernel on the first s_points points only: Pi is then (s, s, m, m), not (m, m, m, m)
                ro = np.eye(m)[:s_points]
                lb = ntk_limit(key, x, spec("batch"), readout=ro, n_samples=cfg["mc_samples"], n_rep=cfg["mc_reps"])
                lf = ntk_limit(key, x, spec("batch_frozen"), readout=ro, n_samples=cfg["mc_samples"],
                               n_rep=cfg["mc_reps"])
                tb, tf = lb.theta, lf.theta
                lims[m] = tb
                emp = {"batch": [], "batch_frozen": []}
                for s in range(cfg["seeds"]):
                    fixed, bn, _ = jax.device_put(network.sample_weights(seed * 1_000_003 + s, d_in, cfg["width"], depth))
                    for st in emp:
                        k = empirical.bn_only_ntk(x, bn, fixed, phi=act.phi, sigma_w=sigma_w, sigma_b=sigma_b, stats=st)
                        emp[st].append(k[:s_points, :s_points])
                eb, ef = np.mean(emp["batch"], 0), np.mean(emp["batch_frozen"], 0)
                rows.append({
                    "m": int(m),
                    "limit_batch_vs_population": rel_fro(tb, pop.theta),
                    "limit_batch_vs_population_scaled": rel_fro_best_scale(tb, pop.theta),
                    "limit_frozen_vs_population": rel_fro(tf, pop.theta),
                    "limit_batch_vs_frozen": rel_fro(tb, tf),
                    "nngp_batch_vs_population": rel_fro(lb.sigmas[-1][:s_points, :s_points], pop.sigmas[-1]),
                    "limit_mc_rel_stderr": max(lb.rel_stderr, lf.rel_stderr),
                    "empirical_batch_vs_limit_batch_seedavg": rel_fro(eb, tb),
                    "empirical_batch_vs_limit_batch_mean": float(np.mean([rel_fro(k, tb) for k in emp["batch"]])),
                    "empirical_frozen_vs_limit_frozen_seedavg": rel_fro(ef, tf),
                    "empirical_batch_vs_population_seedavg": rel_fro(eb, pop.theta),
                    "theta_batch_diag_mean": float(np.mean(np.diag(tb))),
                    "theta_batch_offdiag_mean": float(tb[~np.eye(s_points, dtype=bool)].mean()),
                })
            big = [m for m in ms if m >= 8]
            k_inf = _extrapolate(big, [lims[m] for m in big]) if len(big) >= 2 else lims[ms[-1]]
            out["activations"][act_name] = {
                "rows": rows,
                "theta_population": pop.theta.tolist(),
                "theta_batch_by_m": {str(m): v.tolist() for m, v in lims.items()},
                "extrapolated_m_inf_vs_population": rel_fro(k_inf, pop.theta),
                "extrapolated_m_inf_vs_largest_m": rel_fro(k_inf, lims[ms[-1]]),
                "slope_batch_vs_population_in_m": slope(ms, [r["limit_batch_vs_population"] for r in rows]),
            }
    out["seconds"], out["loadavg_start_end"] = time.time() - t0, [load0, os.getloadavg()[0]]
    out["process_cpu_seconds"] = time.process_time() - c0
    return out


def cnn_study(size="full", depths=(2, 3), stats=("population", "batch"), m=4, hw=4, c_in=3, k=3, sigma_w=1.0,
              sigma_b=0.1, seed=0, progress=True) -> dict:
    """Empirical BN-only CNN kernels over channel counts vs the CNN limit and the per-pixel FCN limit (ReLU)."""
    from tqdm import tqdm

    from theory import cnn
    from theory.activations import RELU
    from theory.kernel_limit import LimitSpec

    cfg = CNN_SIZES[size]
    t0, c0, load0 = time.time(), time.process_time(), os.getloadavg()[0]
    settings = [(d, st) for d in depths for st in stats]
    with x64():
        imgs = cnn.make_images(seed, m, hw, c_in)
        lims = {}
        for i, (d, st) in enumerate(settings):
            spec = LimitSpec(RELU, d, sigma_w, sigma_b, st)
            key = jax.random.fold_in(jax.random.PRNGKey(seed + 5), i)
            lims[(d, st)] = (cnn.limit(key, imgs, spec, k=k, n_samples=cfg["mc_samples"], n_rep=cfg["mc_reps"]),
                             cnn.limit(key, imgs, spec, k=k, per_pixel_fcn=True, n_samples=cfg["mc_samples"],
                                       n_rep=cfg["mc_reps"]))
        kern = {s: {} for s in settings}
        jobs = [(c, s) for c in cfg["channels"] for s in range(cfg["seeds"])]
        x = jax.numpy.asarray(imgs)
        for c, s in tqdm(jobs, desc="CNN (channels, seed)", file=sys.stderr, disable=not progress):
            fixed, bn = jax.device_put(cnn.sample_weights(seed * 1_000_003 + s, c_in, c, max(depths), k))
            for d, st in settings:
                f, b = {"W": fixed["W"][:d], "b": fixed["b"][:d], "v": fixed["v"]}, \
                       {"gamma": bn["gamma"][:d], "beta": bn["beta"][:d]}
                lim = lims[(d, st)][0]
                kern[(d, st)].setdefault(c, []).append(cnn.bn_only_ntk(
                    x, b, f, phi=RELU.phi, sigma_w=sigma_w, sigma_b=sigma_b, stats=st,
                    pop_scales=lim.scales if st == "population" else None))
    res = []
    for d, st in settings:
        lc, lp = lims[(d, st)]
        rows = []
        for c in cfg["channels"]:
            ks = np.asarray(kern[(d, st)][c])
            km = ks.mean(0)
            e = np.array([rel_fro(q, lc.theta) for q in ks])
            rows.append({"channels": int(c), "seeds": len(ks),
                         "cnn_limit_mean": float(e.mean()),
                         "cnn_limit_seedavg": rel_fro(km, lc.theta),
                         # what the seed-averaged error would be with no bias (see theory.check.summarise)
                         "cnn_limit_noise_floor": float(np.sqrt(np.mean(e**2) / len(e))),
                         "fcn_per_pixel_mean": float(np.mean([rel_fro(q, lp.theta) for q in ks])),
                         "fcn_per_pixel_seedavg": rel_fro(km, lp.theta),
                         "spread_around_seed_mean": float(np.mean([rel_fro(q, km) for q in ks]))})
        cs = [r["channels"] for r in rows]
        res.append({"depth": d, "stats": st, "rows": rows,
                    "slope_cnn_limit": slope(cs, [r["cnn_limit_mean"] for r in rows]),
                    "slope_cnn_limit_seedavg": slope(cs, [r["cnn_limit_seedavg"] for r in rows]),
                    "slope_fcn_per_pixel_seedavg": slope(cs, [r["fcn_per_pixel_seedavg"] for r in rows]),
                    "slope_spread": slope(cs, [r["spread_around_seed_mean"] for r in rows]),
                    "limit_gap_fcn_per_pixel_vs_cnn": rel_fro(lp.theta, lc.theta),
                    "limit_gap_fcn_per_pixel_vs_cnn_scaled": rel_fro_best_scale(lc.theta, lp.theta),
                    "limit_mc_rel_stderr": max(lc.rel_stderr, lp.rel_stderr),
                    "theta_cnn_limit": lc.theta.tolist()})
    return {"config": {**cfg, "channels": list(cfg["channels"]), "m_images": m, "hw": hw, "c_in": c_in, "k": k,
                       "activation": "relu", "sigma_w": sigma_w, "sigma_b": sigma_b, "seed": seed,
                       "padding": "circular", "readout": "global average pooling"},
            "settings": res, "seconds": time.time() - t0, "process_cpu_seconds": time.process_time() - c0,
            "loadavg_start_end": [load0, os.getloadavg()[0]]}
