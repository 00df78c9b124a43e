"""Gaussian expectations over a GP prior: closed-form duals, quadrature, Monte Carlo.

* :func:`dual_kernels` -- E[phi(u_a)phi(u_b)] and E[phi'(u_a)phi'(u_b)] for
  u ~ N(0, Lam), through neural-tangents' stax closed forms when available
  (ReLU: arc-cosine kernels; erf: arcsine kernel), else quadrature.
* :func:`pairwise_expectation` -- E[f(u_a) g(u_b)] for any f, g by 2-D
  Gauss-Hermite quadrature (exact to ~1e-10 for smooth f, g at 64 nodes;
  slower convergence for kinks like ReLU, hence the closed forms there).
"""
from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from theory.activations import Activation


def _psd_sqrt_rows(lam: np.ndarray) -> np.ndarray:
    """Rows X with X X^T = lam (eigendecomposition, robust to rank deficiency)."""
    w, v = np.linalg.eigh(np.asarray(lam, dtype=np.float64))
    return v * np.sqrt(np.clip(w, 0.0, None))


def dual_kernels(lam, act: Activation, n_quad: int = 64):
    """Return (Sigma, Sigma_dot) = (E[phi phi'], E[phi' phi']) for u ~ N(0, lam).

    Uses the stax closed form by feeding stax a Kernel whose nngp is ``lam`` and
    whose ntk is all-ones, so the layer's output ntk is exactly Sigma_dot.
    """
    lam = np.asarray(lam, dtype=np.float64)
    if act.stax_layer is None:
        return (
            pairwise_expectation(lam, act.phi, act.phi, n_quad),
            pairwise_expectation(lam, act.dphi, act.dphi, n_quad),
        )
    from theory.nt_compat import stax

    m = lam.shape[0]
    x = _psd_sqrt_rows(lam) * np.sqrt(m)
    k = stax.Dense(1, W_std=1.0, b_std=None)[2](jnp.asarray(x), None)
    k = k.replace(nngp=jnp.asarray(lam), cov1=jnp.asarray(np.diag(lam)), ntk=jnp.ones_like(k.nngp))
    out = act.stax_layer()[2](k)
    return np.asarray(out.nngp), np.asarray(out.ntk)


def pairwise_expectation(lam, f, g, n_quad: int = 64) -> np.ndarray:
    """E[f(u_a) g(u_b)] for (u_a, u_b) ~ N(0, lam[[a,b]][:,[a,b]]), all pairs, by Gauss-Hermite."""
    lam = np.asarray(lam, dtype=np.float64)
    t, w = np.polynomial.hermite_e.hermegauss(n_quad)  # weight exp(-t^2/2)
    w = w / w.sum()
    t1, t2 = np.meshgrid(t, t, indexing="ij")
    ww = np.outer(w, w)
    m = lam.shape[0]
    out = np.empty((m, m))
    for a in range(m):
        for b in range(a, m):
            saa, sbb, sab = lam[a, a], lam[b, b], lam[a, b]
            ua = np.sqrt(saa) * t1
            rho = sab / np.sqrt(saa * sbb) if saa * sbb > 0 else 0.0
            rho = float(np.clip(rho, -1.0, 1.0))
            ub = np.sqrt(sbb) * (rho * t1 + np.sqrt(1.0 - rho**2) * t2)
            val = float(np.sum(ww * np.asarray(f(jnp.asarray(ua))) * np.asarray(g(jnp.asarray(ub)))))
            out[a, b] = out[b, a] = val
    return out


def monte_carlo_pairwise(key, lam, f, g, n_samples: int = 200_000):
    """Monte Carlo E[f(u) g(u)^T] for u ~ N(0, lam); returns (mean, standard error)."""
    import jax

    lam = np.asarray(lam, dtype=np.float64)
    z = jax.random.normal(key, (n_samples, lam.shape[0]), dtype=jnp.float64)
    u = z @ jnp.asarray(_psd_sqrt_rows(lam)).T
    prod = f(u)[:, :, None] * g(u)[:, None, :]
    return np.asarray(prod.mean(0)), np.asarray(prod.std(0) / np.sqrt(n_samples))
