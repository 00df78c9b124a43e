"""FCN kernels in closed form: the paper's Eq. 4-5 and the derived BN-only NTK for population statistics.

See ``theory/DERIVATION.md``.  All matrices are over the batch (rows of x).
With population statistics (BN a fixed rescaling u = h / s_l) and
Sigma^l = E[phi(u) phi(u)^T], Sigma_dot^l = E[phi'(u) phi'(u)^T],
A^l = E[(phi'(u) u)(phi'(u) u)^T] (= Sigma^l for ReLU), u ~ N(0, K^{l-1}/s_l^2):

    derived (Theorem):  Theta = sigma_w^2 U^L,  U^0 = 0,
                        U^l = (sigma_w^2 / s_l^2) Sigma_dot^l * U^{l-1} + A^l + Sigma_dot^l
    paper's Eq. 4:      Theta^1 = Sigma^1,  Theta^l = sigma_w^2 Sigma^l * Theta^{l-1} + Sigma^l

(* entrywise).  The general case (batch statistics, random gamma/beta, CNNs)
is ``theory.kernel_limit.ntk_limit``; for population statistics both agree
(tested).
"""
from __future__ import annotations

import numpy as np

from theory.activations import Activation
from theory.duals import duals
from theory.kernel_limit import input_kernel

__all__ = ["input_kernel", "population_layers", "population_scales", "eq4_recursion", "eq4_kernel",
           "derived_population_kernel"]


def population_layers(x, depth: int, act: Activation, sigma_w=1.0, sigma_b=0.1):
    """Per layer l = 1..L: (s_l, Lam^l = K^{l-1}/s_l^2, Sigma^l, Sigma_dot^l, A^l)."""
    k = input_kernel(x, sigma_w, sigma_b)
    out = []
    for _ in range(depth):
        s2 = float(np.mean(np.diag(k)))
        lam = k / s2
        sig, sigd, a = duals(lam, act)
        out.append((np.sqrt(s2), lam, sig, sigd, a))
        k = sigma_w**2 * sig + sigma_b**2
    return out


def population_scales(x, depth, act, sigma_w=1.0, sigma_b=0.1):
    """The deterministic BN scales s_l used by ``network.apply(stats='population')``."""
    return [s for s, *_ in population_layers(x, depth, act, sigma_w, sigma_b)]


def eq4_recursion(sigmas, inner: float) -> np.ndarray:
    """Eq. 4 on given per-layer kernels: Theta^1 = Sigma^1, Theta^l = inner * Sigma^l * Theta^{l-1} + Sigma^l.

    ``inner = sigma_w^2`` is the paper's; the fair variants pass other Sigma's
    (batch statistics, random gamma/beta) or a fitted constant.
    """
    theta = None
    for sig in sigmas:
        theta = sig if theta is None else inner * sig * theta + sig
    return theta


def eq4_kernel(x, depth: int, act: Activation, sigma_w=1.0, sigma_b=0.1) -> np.ndarray:
    """Paper's Eq. 4-5 verbatim: Sigma^l = E[phi(u) phi(u')], u the BN-normalised ('f ~ N(0, 1)') GP prior."""
    return eq4_recursion([sig for _, _, sig, _, _ in population_layers(x, depth, act, sigma_w, sigma_b)],
                         sigma_w**2)


def derived_population_kernel(x, depth, act, sigma_w=1.0, sigma_b=0.1, which=("gamma", "beta")):
    """The theorem's closed form for population statistics (forward recursion, see module docstring).

    ``which`` selects the gamma term (A^l) and/or the beta term (Sigma_dot^l).
    """
    u = 0.0
    for s, _, _, sigd, a in population_layers(x, depth, act, sigma_w, sigma_b):
        term = (a if "gamma" in which else 0.0) + (sigd if "beta" in which else 0.0)
        u = sigma_w**2 / s**2 * sigd * u + term
    return sigma_w**2 * u
