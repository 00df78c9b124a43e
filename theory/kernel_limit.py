"""Infinite-width BN-only NTK by layer-wise Gaussian moments over a *sample space* (FCN and CNN).

This is the recursion of ``theory/DERIVATION.md`` written once for every case we test:

* samples  -- the N rows over which BatchNorm takes its statistics (FCN: the m
  inputs of the batch; CNN: m images x P pixels);
* outputs  -- the S network outputs, read out from the samples by ``readout``
  (S x N; FCN: the identity; CNN: global average pooling, 1/P on image a's pixels);
* ``mix``  -- the linear map the fixed weights apply to second moments over the
  samples (FCN: identity; CNN with a k x k circular convolution: the average of
  the k^2 diagonal shifts), applied forward to the covariance and backward to
  the gradient second moments Pi.  One map for every layer, or a list of one
  per layer (``theory.cnn`` uses this for the per-pixel FCN comparison).

Per layer l, with h ~ N(0, K^{l-1}) over the N samples (one channel), u = BN(h),
y = gamma u + beta, x = phi(y) and d = gamma phi'(y):

    Sigma^l = E[phi(y) phi(y)^T],  A^l = E[(phi'(y) u)(phi'(y) u)^T],  B^l = E[phi'(y) phi'(y)^T]
    K^l     = sigma_w^2 mix(Sigma^l) + sigma_b^2
    Theta   = sum_l sigma_w^2 <Pi^{l+1}[a, a'], A^l + B^l>,   Pi^{L+1}[a, a'] = r_a r_a'^T
    Pi^l    = sigma_w^2 mix(E[J D Pi^{l+1} D J]),   D = diag(d),  J = dBN/dh

with J = I/s (``population``: fixed statistics s^l = sqrt(K^{l-1}(x, x)), so
E[J D P D J] = P * E[d d^T] / s^2), J = I/s_B (``batch_frozen``: batch
statistics with no gradient through them) or J = (I - 11^T/N - u u^T/N)/s_B
(``batch``: training-mode BN; J s_B is the projector orthogonal to 1 and u,
which we apply per Monte-Carlo sample in O(N^2) instead of forming the
N^4 moment tensor).  ``population`` with gamma = 1, beta = 0 uses the closed
forms of ``theory.duals`` (exact); every other case is Monte Carlo, averaged
over independent replicates whose spread is reported as a standard error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import functools

import jax
import jax.numpy as jnp
import numpy as np

from theory import x64
from theory.activations import Activation
from theory.duals import duals

STATS = ("population", "batch", "batch_frozen")
AFFINES = ("unit", "gaussian")


@dataclass(frozen=True)
class LimitSpec:
    """What the limit is computed for (mirrors the finite-width network's options)."""

    act: Activation
    depth: int
    sigma_w: float = 1.0
    sigma_b: float = 0.1
    stats: str = "batch"
    affine: str = "unit"  # "unit": gamma = 1, beta = 0 at init; "gaussian": gamma, beta ~ N(0, 1)
    eps: float = 1e-8

    def __post_init__(self):
        if self.stats not in STATS:
            raise ValueError(f"stats must be one of {STATS}, got {self.stats!r}")
        if self.affine not in AFFINES:
            raise ValueError(f"affine must be one of {AFFINES}, got {self.affine!r}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")

    @property
    def exact(self) -> bool:
        return self.stats == "population" and self.affine == "unit"


@dataclass
class Limit:
    """The limiting kernel on the S outputs and the per-layer ingredients (N x N over samples)."""

    theta: np.ndarray
    theta_gamma: np.ndarray
    theta_beta: np.ndarray
    sigmas: list = field(default_factory=list)   # Sigma^l = E[phi(y) phi(y)^T], l = 1..L (for Eq. 4)
    kernels: list = field(default_factory=list)  # K^{l-1}: covariance of h^l, l = 1..L
    scales: list = field(default_factory=list)   # population scales s^l (population stats only)
    rel_stderr: float = 0.0                      # MC: relative Frobenius standard error of theta


def identity_mix(m):
    return m


def input_kernel(x, sigma_w: float, sigma_b: float, mix: Callable = identity_mix) -> np.ndarray:
    """K^0 = sigma_w^2 mix(X X^T / d) + sigma_b^2 (rows of x = samples, columns = input channels)."""
    x = np.asarray(x, dtype=np.float64)
    return sigma_w**2 * mix(x @ x.T / x.shape[1]) + sigma_b**2


def _psd_root(k):
    w, v = np.linalg.eigh(np.asarray(k, dtype=np.float64))
    return v * np.sqrt(np.clip(w, 0.0, None))


def _population_scale(k, strict: bool = True) -> float:
    """sqrt of the common diagonal of k (``strict=False``: Monte-Carlo k, equal only up to sampling noise)."""
    d = np.diag(k)
    if strict and np.ptp(d) > 1e-6 * d.mean():
        raise ValueError("population BN needs equal variances K(x, x) for every sample; "
                         "normalise the inputs (network.normalise_inputs) and use circular padding")
    return float(np.sqrt(d.mean()))


# ----------------------------------------------------------------------------------------------
# Monte Carlo over one layer (jit-compiled scans over chunks of samples)
# ----------------------------------------------------------------------------------------------
def _sample_layer(key, root, s_pop, spec: LimitSpec, chunk: int):
    """(u, y, d, s) for ``chunk`` draws of one channel: h ~ N(0, root root^T) over the samples."""
    kz, kg, kb = jax.random.split(key, 3)
    n = root.shape[0]
    h = jax.random.normal(kz, (chunk, n), jnp.float64) @ root.T
    if spec.stats == "population":
        s = jnp.full((chunk, 1), s_pop)
        u = h / s
    else:
        mu = h.mean(1, keepdims=True)
        s = jnp.sqrt(((h - mu) ** 2).mean(1, keepdims=True) + spec.eps)
        u = (h - mu) / s
    if spec.affine == "gaussian":
        g = jax.random.normal(kg, (chunk, 1), jnp.float64)
        b = jax.random.normal(kb, (chunk, 1), jnp.float64)
    else:
        g, b = jnp.ones((chunk, 1)), jnp.zeros((chunk, 1))
    y = g * u + b
    return u, y, g * spec.act.dphi(y), s


@functools.partial(jax.jit, static_argnames=("spec", "chunk", "n_chunks", "third"))
def _forward_moments(key, root, s_pop, *, spec: LimitSpec, chunk: int, n_chunks: int, third: bool):
    """Sums over one channel's draws of Sigma, A, B, M2 = d d^T / s^2 and (``third``) T3 = d w u / s^2."""
    n = root.shape[0]

    def body(acc, sub):
        u, y, d, s = _sample_layer(sub, root, s_pop, spec, chunk)
        ph, dp = spec.act.phi(y), spec.act.dphi(y)
        r, ds = dp * u, d / s
        new = [ph.T @ ph, r.T @ r, dp.T @ dp, ds.T @ ds]
        if third:  # T3[b, e, c] = E[d_b w_e u_c / s^2], w = d u
            new.append(jnp.einsum("nb,ne,nc->bec", ds, ds * u, u))
        return [a + b for a, b in zip(acc, new)], None

    zero = [jnp.zeros((n, n)) for _ in range(4)] + ([jnp.zeros((n, n, n))] if third else [])
    sums, _ = jax.lax.scan(body, zero, jax.random.split(key, n_chunks))
    return [v / (n_chunks * chunk) for v in sums]


@functools.partial(jax.jit, static_argnames=("spec", "chunk", "n_chunks"))
def _fourth_moment(key, root, pi, *, spec: LimitSpec, chunk: int, n_chunks: int):
    """U4[a, a', b, c] = E[u_b u_c (w^T Pi[a, a'] w) / s^2]: the only P-dependent batch-BN term."""
    def body(acc, sub):
        u, _, d, s = _sample_layer(sub, root, 0.0, spec, chunk)
        w = d * u / s
        c4 = jnp.einsum("ne,abef,nf->nab", w, pi, w)
        return acc + jnp.einsum("nx,ny,nab->abxy", u, u, c4), None

    acc, _ = jax.lax.scan(body, jnp.zeros_like(pi), jax.random.split(key, n_chunks))
    return acc / (n_chunks * chunk)


def _backward_batch(pi, m2, t3, u4):
    """E[J D Pi D J] for training-mode BN from the moments (see ``theory/DERIVATION.md``).

    With G = D J = (D - A Q^T)/s, Q = [1, u]/sqrt(N), A = d * Q:
    G^T P G = (D P D - D P A Q^T - Q A^T P D + Q A^T P A Q^T)/s^2, whose expectation needs only
    M2 = E[d d^T/s^2], T3 = E[d_b w_e u_c/s^2] and U4 = E[u u^T (w^T P w)/s^2].
    """
    n = pi.shape[-1]
    t = m2[:, :, None] + t3  # N T[b, e, c] = E[d_b d_e (1 + u_e u_c)/s^2]
    term2 = np.einsum("abxe,xec->abxc", pi, t) / n
    term3 = np.einsum("abec,cex->abxc", pi, t) / n
    v1 = np.einsum("abef,fex->abx", pi, t3)
    v2 = np.einsum("abef,efx->abx", pi, t3)
    s4 = np.einsum("abef,ef->ab", pi, m2)
    term4 = (s4[..., None, None] + v1[..., :, None] + v2[..., None, :] + u4) / n**2
    return pi * m2 - term2 - term3 + term4


# ----------------------------------------------------------------------------------------------
def ntk_limit(key, x, spec: LimitSpec, *, readout=None, mix: Callable | list = identity_mix,
              n_samples: int = 200_000, n_rep: int = 4, chunk: int | None = None) -> Limit:
    """Limit of the BN-only NTK on the outputs (``readout`` @ samples); see the module docstring.

    ``x`` holds one row per sample (its input channels).  ``readout`` defaults to
    the identity (FCN).  Monte-Carlo cases average ``n_rep`` replicates of
    ``n_samples`` draws each and report their relative standard error.
    """
    if spec.exact:
        return _limit_once(None, x, spec, readout, mix, 1, None)
    reps = [_limit_once(k_, x, spec, readout, mix, n_samples, chunk) for k_ in jax.random.split(key, n_rep)]
    th = np.stack([r.theta for r in reps])
    mean = lambda attr: [np.mean([getattr(r, attr)[i] for r in reps], 0) for i in range(spec.depth)]  # noqa: E731
    se = th.std(0, ddof=1) / np.sqrt(n_rep) if n_rep > 1 else np.full_like(th[0], np.nan)
    return Limit(th.mean(0), np.mean([r.theta_gamma for r in reps], 0), np.mean([r.theta_beta for r in reps], 0),
                 mean("sigmas"), mean("kernels"),
                 [float(np.mean([r.scales[i] for r in reps])) for i in range(spec.depth)] if reps[0].scales else [],
                 float(np.linalg.norm(se) / np.linalg.norm(th.mean(0))))


def _limit_once(key, x, spec: LimitSpec, readout, mix, n_samples, chunk) -> Limit:
    mixes = list(mix) if isinstance(mix, (list, tuple)) else [mix] * spec.depth
    if len(mixes) != spec.depth:
        raise ValueError(f"need one mix per layer ({spec.depth}), got {len(mixes)}")
    with x64():
        k = input_kernel(x, spec.sigma_w, spec.sigma_b, mixes[0])
        n = k.shape[0]
        r = np.eye(n) if readout is None else np.asarray(readout, dtype=np.float64)
        if chunk is None:  # keep a chunk's sample tensors (chunk x max(N^2, S^2)) near 32 MB
            chunk = int(np.clip(4e6 // max(n * n, r.shape[0] ** 2), 16, 8192))
        n_chunks = max(1, -(-n_samples // chunk))
        keys = list(jax.random.split(key, spec.depth)) if key is not None else [None] * spec.depth
        mc = dict(spec=spec, chunk=chunk, n_chunks=n_chunks)
        lay, k_l, s_l = [], [], []
        for l in range(spec.depth):
            k_l.append(k)
            s_pop = _population_scale(k, strict=spec.exact or l == 0) if spec.stats == "population" else 0.0
            if spec.stats == "population":
                s_l.append(s_pop)
            if spec.exact:
                sig, sigd, a = duals(k / s_pop**2, spec.act)
                mom = [sig, a, sigd, sigd / s_pop**2]
            else:
                root = jnp.asarray(_psd_root(k))
                mom = [np.asarray(v) for v in _forward_moments(keys[l], root, s_pop, third=spec.stats == "batch", **mc)]
            lay.append(mom)
            if l + 1 < spec.depth:
                k = spec.sigma_w**2 * mixes[l + 1](mom[0]) + spec.sigma_b**2
        pi = np.einsum("ai,bj->abij", r, r)  # Pi^{L+1}[a, a'] = r_a r_a'^T
        tg = np.zeros((r.shape[0],) * 2)
        tb = np.zeros_like(tg)
        sw2 = spec.sigma_w**2
        for l in reversed(range(spec.depth)):
            _, a, b, m2, *t3 = lay[l]
            tg += sw2 * np.einsum("abij,ij->ab", pi, a)
            tb += sw2 * np.einsum("abij,ij->ab", pi, b)
            if l == 0:
                break
            if spec.stats == "batch":
                # same key as the forward pass: the same draws, so the moments are consistent
                u4 = np.asarray(_fourth_moment(keys[l], jnp.asarray(_psd_root(k_l[l])), jnp.asarray(pi), **mc))
                back = _backward_batch(pi, m2, t3[0], u4)
            else:
                back = pi * m2
            pi = sw2 * mixes[l](back)
        return Limit(tg + tb, tg, tb, [m[0] for m in lay], k_l, s_l)
