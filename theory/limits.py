"""Infinite-width kernels: the paper's Eq. 4-5 and this project's derived BN-only NTK.

See ``theory/DERIVATION.md`` for the derivation and assumptions.  Notation
(all matrices are over the batch B = rows of X, m = |B|):

* K^{l}: covariance of the pre-BN activations h^{l+1} (GP prior), K^0 =
  sigma_w^2 X X^T / d + sigma_b^2.
* u^l = BN(h^l); A^l = E[(phi'(u) u)(phi'(u) u)^T] (gamma term),
  B^l = E[phi'(u) phi'(u)^T] (beta term).
* Pi^{l}: 4-index backward tensor Pi[a, b, a', b'] = n * E[dF(a)/dx_c(b) dF(a')/dx_c(b')] / sigma_w^2.

Derived limit:  Theta = sum_l sigma_w^2 * sum_{b,b'} Pi^{l+1}[a,b,a',b'] (A^l + B^l)[b,b'],
with Pi^{L+1}[a,b,a',b'] = delta_ab delta_a'b' and
Pi^{l} = sigma_w^2 * sum_{e,e'} Pi^{l+1}[a,e,a',e'] M^l[e,b,e',b'],
M^l = E[(phi'(u) J)_{eb} (phi'(u) J)_{e'b'}], J = dBN/dh (batch Jacobian).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from theory.activations import Activation
from theory.gaussian import _psd_sqrt_rows, dual_kernels, pairwise_expectation


def input_kernel(x, sigma_w: float, sigma_b: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return sigma_w**2 * x @ x.T / x.shape[1] + sigma_b**2


# --------------------------------------------------------------------------------------
# population statistics (BN = deterministic rescaling) -- closed form via stax duals
# --------------------------------------------------------------------------------------
def population_layers(x, depth: int, act: Activation, sigma_w=1.0, sigma_b=0.1):
    """Per layer l=1..L: (scale s^l, Lam^l = K/s^2, Sigma^l, Sigma_dot^l)."""
    k = input_kernel(x, sigma_w, sigma_b)
    out = []
    for _ in range(depth):
        s2 = float(np.mean(np.diag(k)))
        lam = k / s2
        sig, sigd = dual_kernels(lam, act)
        out.append((np.sqrt(s2), lam, sig, sigd))
        k = sigma_w**2 * sig + sigma_b**2
    return out


def population_scales(x, depth, act, sigma_w=1.0, sigma_b=0.1):
    """The deterministic BN scales s^l used by ``network.apply(stats='population')``."""
    return [s for s, *_ in population_layers(x, depth, act, sigma_w, sigma_b)]


def eq4_kernel(x, depth: int, act: Activation, sigma_w=1.0, sigma_b=0.1) -> np.ndarray:
    """Paper's Eq. 4-5 verbatim: Theta^1 = Sigma^1, Theta^l = sigma_w^2 Sigma^l * Theta^{l-1} + Sigma^l.

    Sigma^l = E[phi(u)phi(u')] with u the BN-normalised pre-activation (unit
    variance, 'f ~ N(0,1)'), whose correlation is propagated by the GP prior;
    products are entrywise (kernel matrices over the batch).
    """
    theta = None
    for _, _, sig, _ in population_layers(x, depth, act, sigma_w, sigma_b):
        theta = sig if theta is None else sigma_w**2 * sig * theta + sig
    return theta


def _gamma_term(lam, act: Activation, sig):
    """E[phi'(u)u phi'(u')u']: equals Sigma for ReLU (phi'(u)u = phi(u)), else quadrature."""
    if act.name == "relu":
        return sig
    f = lambda t: act.dphi(t) * t  # noqa: E731
    return pairwise_expectation(lam, f, f)


def derived_population_kernel(x, depth, act, sigma_w=1.0, sigma_b=0.1, which=("gamma", "beta")):
    """Derived BN-only NTK limit for population (fixed) BN statistics; closed form.

    Theta = sum_l sigma_w^2 P^{l+1} * (A^l + B^l), P^{L+1} = 1,
    P^l = P^{l+1} * sigma_w^2 Sigma_dot^l / (s^l)^2  (entrywise).
    """
    layers = population_layers(x, depth, act, sigma_w, sigma_b)
    m = np.asarray(x).shape[0]
    p = np.ones((m, m))
    theta = np.zeros((m, m))
    for s, lam, sig, sigd in reversed(layers):
        term = np.zeros((m, m))
        if "gamma" in which:
            term += _gamma_term(lam, act, sig)
        if "beta" in which:
            term += sigd
        theta += sigma_w**2 * p * term
        p = p * sigma_w**2 * sigd / s**2
    return theta


# --------------------------------------------------------------------------------------
# batch statistics -- Monte Carlo over the m-dimensional GP prior
# --------------------------------------------------------------------------------------
def _batch_layer_moments(key, k, act: Activation, n_samples: int, eps: float, chunk: int = 20_000):
    """MC moments of one BN layer whose pre-activations h ~ N(0, k) over the batch."""
    m = k.shape[0]
    root = jnp.asarray(_psd_sqrt_rows(k))
    eye_c = jnp.eye(m) - 1.0 / m
    sums = {"phiphi": 0.0, "A": 0.0, "B": 0.0, "M": 0.0}
    n_done = 0
    for i, sub in enumerate(jax.random.split(key, max(1, n_samples // chunk))):
        n = min(chunk, n_samples - n_done)
        h = jax.random.normal(sub, (n, m), jnp.float64) @ root.T
        mu = h.mean(1, keepdims=True)
        s = jnp.sqrt(((h - mu) ** 2).mean(1, keepdims=True) + eps)
        u = (h - mu) / s
        ph, dph = act.phi(u), act.dphi(u)
        r = dph * u
        jac = (eye_c[None] - u[:, :, None] * u[:, None, :] / m) / s[:, :, None]  # J[e, b]
        q = (dph[:, :, None] * jac).reshape(n, m * m)
        sums["phiphi"] += ph.T @ ph
        sums["A"] += r.T @ r
        sums["B"] += dph.T @ dph
        sums["M"] += q.T @ q
        n_done += n
    mom = {k_: np.asarray(v) / n_done for k_, v in sums.items()}
    mom["M"] = mom["M"].reshape(m, m, m, m)  # [e, b, e', b']
    return mom


def derived_batch_kernel(key, x, depth, act, sigma_w=1.0, sigma_b=0.1, n_samples=100_000,
                         eps=1e-8, which=("gamma", "beta")) -> np.ndarray:
    """Derived BN-only NTK limit with batch statistics over the batch = rows of x (one MC draw)."""
    k = input_kernel(x, sigma_w, sigma_b)
    m = k.shape[0]
    moms = []
    for sub in jax.random.split(key, depth):
        mom = _batch_layer_moments(sub, k, act, n_samples, eps)
        moms.append(mom)
        k = sigma_w**2 * mom["phiphi"] + sigma_b**2
    eye = np.eye(m)
    pi = np.einsum("ab,cd->abcd", eye, eye)  # Pi^{L+1}[a, b, a', b']
    theta = np.zeros((m, m))
    for mom in reversed(moms):
        term = np.zeros((m, m))
        if "gamma" in which:
            term += mom["A"]
        if "beta" in which:
            term += mom["B"]
        theta += sigma_w**2 * np.einsum("abcd,bd->ac", pi, term)
        pi = sigma_w**2 * np.einsum("aecf,ebfd->abcd", pi, mom["M"])
    return theta


def derived_batch_kernel_mc(key, x, depth, act, sigma_w=1.0, sigma_b=0.1, n_samples=100_000,
                            n_rep=4, eps=1e-8):
    """Mean of ``n_rep`` independent MC draws and its relative Frobenius standard error."""
    draws = np.stack([
        derived_batch_kernel(k_, x, depth, act, sigma_w, sigma_b, n_samples, eps)
        for k_ in jax.random.split(key, n_rep)
    ])
    mean = draws.mean(0)
    se = draws.std(0, ddof=1) / np.sqrt(n_rep)
    return mean, float(np.linalg.norm(se) / np.linalg.norm(mean))
