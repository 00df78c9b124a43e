"""Finite-width FCN-BN network used for every empirical check (pure functions).

Architecture (NTK parameterisation; W, b, v ~ N(0, 1) i.i.d., fixed in BN-only training):

    x^0 = x                       (inputs normalised to ||x||^2 = d)
    h^l = sigma_w W^l x^{l-1} / sqrt(n_{l-1}) + sigma_b b^l      l = 1..L
    u^l = BN(h^l)                 per channel, see ``stats`` below
    y^l = gamma^l * u^l + beta^l  (gamma = 1, beta = 0 at initialisation)
    x^l = phi(y^l)
    f(x) = sigma_w v . x^L / sqrt(n_L)

``stats="batch"``: u = (h - mean_B h) / sqrt(var_B h + eps) over the batch B
(the rows of ``x``), i.e. the training-mode BatchNorm the paper trains with.
``stats="batch_frozen"``: the same forward pass with no gradient through the
batch mean and variance (eval-mode BN whose running statistics equal this
batch's).  ``stats="population"``: u = h / s^l with deterministic per-layer
constants s^l (the infinite-width standard deviation over initialisations,
``theory.kernel_limit.Limit.scales``); samples are then independent.

Weights come either from JAX keys (:func:`init_params`) or, for the sweeps,
from NumPy generators (:func:`sample_weights`: faster on CPU, and one draw of
the deepest net serves every setting of a sweep -- common random numbers).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def init_params(key, d_in: int, width: int, depth: int):
    """Return (fixed, bn): Gaussian weights/biases/readout and BN gamma=1, beta=0."""
    keys = jax.random.split(key, 2 * depth + 1)
    fans = [d_in] + [width] * depth
    fixed = {
        "W": [jax.random.normal(keys[2 * i], (fans[i], width), jnp.float64) for i in range(depth)],
        "b": [jax.random.normal(keys[2 * i + 1], (width,), jnp.float64) for i in range(depth)],
        "v": jax.random.normal(keys[-1], (width,), jnp.float64),
    }
    bn = {
        "gamma": [jnp.ones((width,), jnp.float64) for _ in range(depth)],
        "beta": [jnp.zeros((width,), jnp.float64) for _ in range(depth)],
    }
    return fixed, bn


def sample_weights(seed: int, d_in: int, width: int, depth: int):
    """NumPy float64 draw of (fixed, bn_unit, bn_gaussian) for one (seed, width).

    ``bn_unit`` is the default gamma = 1, beta = 0; ``bn_gaussian`` draws gamma,
    beta ~ N(0, 1) (the paper's "Gaussian initialised BatchNorm").  The first
    ``l`` layers of a depth-``depth`` draw serve as a depth-``l`` net.
    """
    rng = np.random.default_rng([int(seed), int(width), 0xB17])
    fans = [d_in] + [width] * depth
    fixed = {"W": [rng.standard_normal((fans[i], width)) for i in range(depth)],
             "b": [rng.standard_normal(width) for _ in range(depth)],
             "v": rng.standard_normal(width)}
    unit = {"gamma": [np.ones(width) for _ in range(depth)], "beta": [np.zeros(width) for _ in range(depth)]}
    gauss = {"gamma": [rng.standard_normal(width) for _ in range(depth)],
             "beta": [rng.standard_normal(width) for _ in range(depth)]}
    return fixed, unit, gauss


def truncate(fixed, bn, depth: int):
    """The first ``depth`` layers of a deeper draw (the readout v is shared)."""
    return ({"W": fixed["W"][:depth], "b": fixed["b"][:depth], "v": fixed["v"]},
            {"gamma": bn["gamma"][:depth], "beta": bn["beta"][:depth]})


def batch_norm(h, eps: float, axes=(0,), frozen: bool = False):
    """Training-mode BN over ``axes`` (the batch), no affine part; ``frozen``: no gradient through the statistics."""
    mu = h.mean(axes, keepdims=True)
    var = ((h - mu) ** 2).mean(axes, keepdims=True)
    if frozen:
        mu, var = jax.lax.stop_gradient(mu), jax.lax.stop_gradient(var)
    return (h - mu) / jnp.sqrt(var + eps)


def normalise(h, l: int, *, stats: str, pop_scales=None, eps: float = 1e-8, axes=(0,)):
    """BN without affine part for layer ``l`` under the chosen statistics (shared by the FCN and CNN)."""
    if stats == "batch":
        return batch_norm(h, eps, axes)
    if stats == "batch_frozen":
        return batch_norm(h, eps, axes, frozen=True)
    if stats == "population":
        if pop_scales is None:
            raise ValueError("stats='population' needs pop_scales (kernel_limit.ntk_limit(...).scales)")
        return h / pop_scales[l]
    raise ValueError(f"stats must be 'batch', 'batch_frozen' or 'population', got {stats!r}")


def apply(fixed, bn, x, *, phi, sigma_w=1.0, sigma_b=0.1,
          stats: str = "batch", pop_scales=None, eps: float = 1e-8):
    """Network output, shape (batch, 1).  ``sigma_w``, ``sigma_b`` may be traced scalars."""
    z = x
    for l, (W, b) in enumerate(zip(fixed["W"], fixed["b"])):
        h = sigma_w * z @ W / jnp.sqrt(z.shape[-1]) + sigma_b * b
        u = normalise(h, l, stats=stats, pop_scales=pop_scales, eps=eps)
        z = phi(bn["gamma"][l] * u + bn["beta"][l])
    return (sigma_w * z @ fixed["v"] / jnp.sqrt(z.shape[-1]))[:, None]


def normalise_inputs(x):
    """Project rows onto the sphere of radius sqrt(d) (so every K^0(x, x) is equal)."""
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True) * jnp.sqrt(x.shape[-1])


def make_inputs(key, m: int, d: int):
    """m Gaussian inputs in R^d on the sphere of radius sqrt(d)."""
    return normalise_inputs(jax.random.normal(key, (m, d), jnp.float64))


def circle_inputs(m: int, d: int):
    """m equally spaced points on a circle (first two coordinates), radius sqrt(d): structured inputs."""
    t = 2 * np.pi * np.arange(m) / m
    x = np.zeros((m, d))
    x[:, 0], x[:, 1] = np.cos(t), np.sin(t)
    return jnp.asarray(x * np.sqrt(d))


def inputs_by_name(name: str, m: int, d: int):
    """``gauss<k>``: m i.i.d. points on the sphere (draw k); ``circle``: :func:`circle_inputs`."""
    if name == "circle":
        return circle_inputs(m, d)
    if name.startswith("gauss") and name[5:].isdigit():
        return make_inputs(jax.random.fold_in(jax.random.PRNGKey(20240), int(name[5:])), m, d)
    raise ValueError(f"unknown inputs {name!r}: use 'gauss<k>' (k = 0, 1, ...) or 'circle'")
