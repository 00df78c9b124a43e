"""Activation functions with the pieces the kernel code needs.

Each entry gives phi, its derivative, and (where neural-tangents has one) the
stax layer whose closed-form dual activation gives E[phi(u)phi(u')] and
E[phi'(u)phi'(u')] for (u, u') jointly Gaussian.  Activations without a
closed form fall back to Gauss-Hermite quadrature in ``theory.gaussian``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class Activation:
    """phi, phi' and an optional neural-tangents stax layer factory."""

    name: str
    phi: Callable[[jax.Array], jax.Array]
    dphi: Callable[[jax.Array], jax.Array]
    stax_layer: Callable[[], tuple] | None = None


def _relu_stax():
    from theory.nt_compat import stax

    return stax.Relu()


def _erf_stax():
    from theory.nt_compat import stax

    return stax.Erf(a=1.0, b=1.0, c=0.0)


RELU = Activation(
    "relu",
    lambda x: jnp.maximum(x, 0.0),
    lambda x: (x > 0).astype(x.dtype),
    _relu_stax,
)
ERF = Activation(
    "erf",
    jax.scipy.special.erf,
    lambda x: 2.0 / jnp.sqrt(jnp.pi) * jnp.exp(-(x**2)),
    _erf_stax,
)
TANH = Activation("tanh", jnp.tanh, lambda x: 1.0 - jnp.tanh(x) ** 2, None)
# identity: the BN-only NTK of a linear net has an exact finite-width expectation (tests use it)
LINEAR = Activation("linear", lambda x: x, jnp.ones_like, None)

ACTIVATIONS = {a.name: a for a in (RELU, ERF, TANH, LINEAR)}


def get_activation(name: str) -> Activation:
    """Look up an activation by name (relu, erf, tanh, linear)."""
    try:
        return ACTIVATIONS[name]
    except KeyError as e:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from e
