"""A small BN-only CNN and its infinite-channel limit: does Theorem 1 carry over to convolutions?

Network (NTK parameterisation, weights fixed, only BN gamma/beta trained):

    h^l = sigma_w conv_kxk(x^{l-1}, W^l) / sqrt(C_{l-1} k^2) + sigma_b b^l    (circular padding)
    x^l = phi(gamma^l BN(h^l) + beta^l),     f = sigma_w v . mean_pixels(x^L) / sqrt(C)

BN statistics per channel over images x pixels (``batch``) or the fixed
population scale (``population``).  Circular padding and inputs with equal
pixel norms keep every pixel's variance equal, as population BN requires.

The limit (C -> infinity) is ``theory.kernel_limit.ntk_limit`` over the
sample space images x pixels with ``mix`` = the average over the k^2 diagonal
shifts (the CNN-GP/CNTK rule: a k x k convolution averages the covariance of
the k^2 neighbour pairs) and a global-average-pooling readout.  The "FCN limit
applied per pixel" uses the convolution only at layer 1 (the patch) and the
identity above, i.e. treats the net as a per-pixel FCN on 3 x 3 patches.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from theory import network


def make_images(seed: int, m: int, hw: int, c_in: int) -> np.ndarray:
    """m random images (hw x hw x c_in), every pixel vector rescaled to norm sqrt(c_in)."""
    x = np.random.default_rng([int(seed), 0xC44]).standard_normal((m, hw, hw, c_in))
    return x / np.linalg.norm(x, axis=-1, keepdims=True) * np.sqrt(c_in)


def conv_mix(m: int, hw: int, k: int = 3):
    """mix(M) for M (..., N, N), N = m hw^2 (image-major): mean over k x k shifts d of M[p + d, p' + d]."""
    r = k // 2
    shifts = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]

    def mix(a):
        a = np.asarray(a)
        lead = a.shape[:-2]
        t = a.reshape(lead + (m, hw, hw, m, hw, hw))
        ax = tuple(len(lead) + i for i in (1, 2, 4, 5))
        out = sum(np.roll(t, (dy, dx, dy, dx), axis=ax) for dy, dx in shifts) / len(shifts)
        return out.reshape(a.shape)

    return mix


def readout_matrix(m: int, hw: int) -> np.ndarray:
    """(m, N): global average pooling of image a's pixels."""
    return np.kron(np.eye(m), np.full((1, hw * hw), 1.0 / hw**2))


def limit(key, images, spec, *, k: int = 3, per_pixel_fcn: bool = False, n_samples=100_000, n_rep=4):
    """Infinite-channel BN-only NTK of the CNN on ``images`` (m x hw x hw x c); see the module docstring."""
    from theory.kernel_limit import identity_mix, ntk_limit

    m, hw, _, c = images.shape
    cm = conv_mix(m, hw, k)
    mixes = [cm] + [identity_mix if per_pixel_fcn else cm] * (spec.depth - 1)
    return ntk_limit(key, images.reshape(-1, c), spec, readout=readout_matrix(m, hw), mix=mixes,
                     n_samples=n_samples, n_rep=n_rep)


def sample_weights(seed: int, c_in: int, channels: int, depth: int, k: int = 3):
    """NumPy draw of (fixed, bn) with gamma = 1, beta = 0; the first l layers serve as a depth-l net."""
    rng = np.random.default_rng([int(seed), int(channels), 0xC44])
    fans = [c_in] + [channels] * depth
    fixed = {"W": [rng.standard_normal((k, k, fans[i], channels)) for i in range(depth)],
             "b": [rng.standard_normal(channels) for _ in range(depth)],
             "v": rng.standard_normal(channels)}
    bn = {"gamma": [np.ones(channels) for _ in range(depth)], "beta": [np.zeros(channels) for _ in range(depth)]}
    return fixed, bn


def circular_conv(z, w):
    """Cross-correlation with circular padding, (m, H, W, C) x (k, k, C, C') -> (m, H, W, C').

    Written as k^2 shifted copies and one matrix product: XLA's float64
    convolution on CPU is orders of magnitude slower than its float64 GEMM.
    """
    k = w.shape[0]
    r = k // 2
    patches = [jnp.roll(z, (-dy, -dx), axis=(1, 2)) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    return jnp.concatenate(patches, -1) @ w.reshape(k * k * w.shape[2], w.shape[3])


def apply(fixed, bn, x, *, phi, sigma_w=1.0, sigma_b=0.1, stats="batch", pop_scales=None, eps=1e-8):
    """CNN output (m, 1) for images x (m, hw, hw, c)."""
    z = x
    for l, (W, b) in enumerate(zip(fixed["W"], fixed["b"])):
        k, c = W.shape[0], W.shape[2]
        h = circular_conv(z, W)
        h = sigma_w * h / jnp.sqrt(c * k * k) + sigma_b * b
        u = network.normalise(h, l, stats=stats, pop_scales=pop_scales, eps=eps, axes=(0, 1, 2))
        z = phi(bn["gamma"][l] * u + bn["beta"][l])
    return (sigma_w * z.mean((1, 2)) @ fixed["v"] / jnp.sqrt(z.shape[-1]))[:, None]


@functools.lru_cache(maxsize=None)
def make_bn_only_ntk(*, phi, stats="batch", eps=1e-8):
    """Jitted empirical BN-only NTK of the CNN (neural-tangents, BN params only; cf. ``theory.empirical``)."""
    from theory.nt_compat import NtkImplementation, empirical_ntk_fn

    def f(bn, x, *, fixed, hyper, pop_scales=None):
        return apply(fixed, bn, x, phi=phi, sigma_w=hyper[0], sigma_b=hyper[1], stats=stats,
                     pop_scales=pop_scales, eps=eps)

    ntk = empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=None,
                           implementation=NtkImplementation.JACOBIAN_CONTRACTION)
    return jax.jit(lambda x, bn, fixed, hyper, pop_scales=None:
                   ntk(x, None, bn, fixed=fixed, hyper=hyper, pop_scales=pop_scales))


def bn_only_ntk(x, bn, fixed, *, phi, sigma_w, sigma_b, stats="batch", pop_scales=None):
    fn = make_bn_only_ntk(phi=phi, stats=stats)
    ps = None if pop_scales is None else np.asarray(pop_scales, dtype=np.float64)
    return np.asarray(fn(x, bn, fixed, np.array([sigma_w, sigma_b], dtype=np.float64), ps))
