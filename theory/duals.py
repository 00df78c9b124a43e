"""Closed-form Gaussian expectations ("dual activations") in NumPy, vectorised over all pairs.

For u ~ N(0, Lam) (Lam an N x N covariance over samples) these return the
N x N matrices the BN-only NTK limit needs:

* ``sigma``     Sigma     = E[phi(u) phi(u)^T]            (NNGP / Eq. 5 kernel)
* ``sigma_dot`` Sigma_dot = E[phi'(u) phi'(u)^T]          (derivative kernel; also the beta term)
* ``gamma``     A         = E[(phi'(u) u)(phi'(u) u)^T]   (gamma term)

ReLU: arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009), A = Sigma
because relu'(u) u = relu(u).  erf: arcsine kernel (Williams 1997) and, for
Sigma_dot and A, the Gaussian integral of exp(-u^2 - u'^2) (times u u'),
which for a 2 x 2 block L gives (4/pi) det(I + 2L)^{-1/2} and
(4/pi) L_ab det(I + 2L)^{-3/2}.  Identity: (Lam, 1, Lam).  Other activations fall back to 2-D
Gauss-Hermite quadrature.  ``tests/test_theory_kernels.py`` checks these
against neural-tangents' stax duals and Monte Carlo.
"""
from __future__ import annotations

import numpy as np

from theory.activations import Activation


def _pair_parts(lam):
    lam = np.asarray(lam, dtype=np.float64)
    d = np.sqrt(np.clip(np.diag(lam), 0.0, None))
    nn = np.outer(d, d)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(nn > 0, lam / np.where(nn > 0, nn, 1.0), 0.0)
    return lam, np.clip(c, -1.0, 1.0), nn


def relu_duals(lam):
    """(Sigma, Sigma_dot, A) for ReLU; A = Sigma."""
    lam, c, nn = _pair_parts(lam)
    th = np.arccos(c)
    sig = nn * (np.sin(th) + (np.pi - th) * c) / (2 * np.pi)
    sigd = (np.pi - th) / (2 * np.pi)
    return sig, sigd, sig


def erf_duals(lam):
    """(Sigma, Sigma_dot, A) for phi = erf."""
    lam = np.asarray(lam, dtype=np.float64)
    q = 1.0 + 2.0 * np.diag(lam)
    qq = np.outer(q, q)
    sig = 2.0 / np.pi * np.arcsin(np.clip(2.0 * lam / np.sqrt(qq), -1.0, 1.0))
    det = qq - 4.0 * lam**2  # det(I + 2 L) of each 2 x 2 block
    np.fill_diagonal(det, 1.0 + 4.0 * np.diag(lam))  # a = a': the 1-D integral
    sigd = 4.0 / np.pi / np.sqrt(det)
    a = 4.0 / np.pi * lam / det**1.5
    return sig, sigd, a


def quadrature_duals(lam, act: Activation, n_quad: int = 64):
    """(Sigma, Sigma_dot, A) by 2-D Gauss-Hermite quadrature, all pairs at once."""
    lam, c, nn = _pair_parts(lam)
    t, w = np.polynomial.hermite_e.hermegauss(n_quad)
    w = w / w.sum()
    d = np.sqrt(np.clip(np.diag(lam), 0.0, None))
    rho = c[..., None, None]
    t1, t2 = t[:, None], t[None, :]
    ua = d[:, None, None, None] * t1
    ub = d[None, :, None, None] * (rho * t1 + np.sqrt(1.0 - rho**2) * t2)
    ww = np.outer(w, w)
    phi, dphi = (lambda z: np.asarray(act.phi(z))), (lambda z: np.asarray(act.dphi(z)))
    ua = np.broadcast_to(ua, ub.shape)
    e = lambda f, g: np.einsum("abij,ij->ab", f(ua) * g(ub), ww)  # noqa: E731
    sig = e(phi, phi)
    sigd = e(dphi, dphi)
    a = e(lambda z: dphi(z) * z, lambda z: dphi(z) * z)
    return (sig + sig.T) / 2, (sigd + sigd.T) / 2, (a + a.T) / 2


def duals(lam, act: Activation):
    """(Sigma, Sigma_dot, A) for u ~ N(0, lam): closed form for relu/erf, quadrature otherwise."""
    if act.name == "relu":
        return relu_duals(lam)
    if act.name == "erf":
        return erf_duals(lam)
    if act.name == "linear":
        lam = np.asarray(lam, dtype=np.float64)
        return lam, np.ones_like(lam), lam
    return quadrature_duals(lam, act)
