"""The reference kernels the empirical BN-only NTK is compared with, and the error measures.

Variants (every one is reported; the verdict uses the most generous):

==================  ===========================================================================
``derived``         the derived limit (``theory.kernel_limit``), raw scale
``derived_scaled``  the derived limit after the best scalar rescaling (shape only)
``eq4``             Eq. 4 verbatim: population Sigma ("f ~ N(0, 1)"), inner constant sigma_w^2
``eq4_scaled``      Eq. 4 verbatim after the best outer rescaling
``eq4_matched``     (a) Eq. 4 built from the Sigma^l = E[phi(y) phi(y)^T] of the network as it
                    is -- batch statistics when it uses batch statistics, y = gamma u + beta with
                    random gamma, beta when they are random -- best outer rescaling
``eq4_free``        (b) as ``eq4_matched`` with a free constant c in place of sigma_w^2 inside the
                    recursion, c fitted (with the outer scale) to the seed-averaged empirical
                    kernel at the largest width
==================  ===========================================================================

Variant (c), gamma, beta ~ N(0, 1) at initialisation, is a property of the
network, not of the reference: ``Setting(affine="gaussian")``.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from theory.limits import eq4_recursion

VARIANTS = ("derived", "derived_scaled", "eq4", "eq4_scaled", "eq4_matched", "eq4_free")
LABELS = {"derived": "derived limit", "derived_scaled": "derived limit (best scale)",
          "eq4": "Eq. 4 verbatim", "eq4_scaled": "Eq. 4 (best scale)",
          "eq4_matched": "Eq. 4, matched Sigma (best scale)", "eq4_free": "Eq. 4, fitted c (best scale)"}
SCALED = {"derived": False, "derived_scaled": True, "eq4": False, "eq4_scaled": True,
          "eq4_matched": True, "eq4_free": True}


def rel_fro(a, b) -> float:
    """||a - b||_F / ||b||_F."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def rel_fro_best_scale(a, b) -> float:
    """min_c ||a - c b||_F / ||a||_F: shape error after the best scalar rescaling of b."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    c = a @ b / (b @ b)
    return float(np.linalg.norm(a - c * b) / np.linalg.norm(a))


def fit_inner_constant(target, sigmas) -> tuple[float, float]:
    """c minimising the best-scale error of eq4_recursion(sigmas, c) against ``target``; (c, error).

    A log-spaced grid over c in [1e-3, 1e3] followed by a bounded refinement,
    so the fit does not stop in a local minimum.  Depth 1 has no inner constant.
    """
    if len(sigmas) == 1:
        return float("nan"), rel_fro_best_scale(target, sigmas[0])
    f = lambda lc: rel_fro_best_scale(target, eq4_recursion(sigmas, float(np.exp(lc))))  # noqa: E731
    grid = np.linspace(np.log(1e-3), np.log(1e3), 121)
    i = int(np.argmin([f(g) for g in grid]))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    r = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    best = min((r.fun, r.x), (f(grid[i]), grid[i]))
    return float(np.exp(best[1])), float(best[0])


def reference_kernels(limit_theta, eq4_verbatim, matched_sigmas, sigma_w: float, free_c=None) -> dict:
    """The kernel each variant compares against (``free_c`` from :func:`fit_inner_constant`; None: not yet fitted)."""
    refs = {"derived": limit_theta, "derived_scaled": limit_theta, "eq4": eq4_verbatim, "eq4_scaled": eq4_verbatim,
            "eq4_matched": eq4_recursion(matched_sigmas, sigma_w**2)}
    if free_c is not None:
        refs["eq4_free"] = eq4_recursion(matched_sigmas, 1.0 if np.isnan(free_c) else free_c)
    return refs


def error(kernel, ref, variant: str) -> float:
    """The variant's error measure of one empirical kernel."""
    return rel_fro_best_scale(kernel, ref) if SCALED[variant] else rel_fro(kernel, ref)
