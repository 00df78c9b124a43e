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
``stats="population"``: u = h / s^l with deterministic per-layer constants
s^l (the infinite-width population standard deviation, from
``theory.limits.population_scales``); samples are then independent.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


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


def batch_norm(h, eps: float):
    """Training-mode BN over axis 0 (the batch), no affine part."""
    mu = h.mean(0)
    var = ((h - mu) ** 2).mean(0)
    return (h - mu) / jnp.sqrt(var + eps)


def apply(fixed, bn, x, *, phi, sigma_w: float = 1.0, sigma_b: float = 0.1,
          stats: str = "batch", pop_scales=None, eps: float = 1e-8):
    """Network output, shape (batch, 1)."""
    z = x
    for l, (W, b) in enumerate(zip(fixed["W"], fixed["b"])):
        h = sigma_w * z @ W / jnp.sqrt(z.shape[-1]) + sigma_b * b
        if stats == "batch":
            u = batch_norm(h, eps)
        elif stats == "population":
            u = h / pop_scales[l]
        else:
            raise ValueError(f"stats must be 'batch' or 'population', got {stats!r}")
        z = phi(bn["gamma"][l] * u + bn["beta"][l])
    return (sigma_w * z @ fixed["v"] / jnp.sqrt(z.shape[-1]))[:, None]


def normalise_inputs(x):
    """Project rows onto the sphere of radius sqrt(d) (so every K^0(x, x) is equal)."""
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True) * jnp.sqrt(x.shape[-1])


def make_inputs(key, m: int, d: int):
    """m Gaussian inputs in R^d on the sphere of radius sqrt(d)."""
    return normalise_inputs(jax.random.normal(key, (m, d), jnp.float64))
