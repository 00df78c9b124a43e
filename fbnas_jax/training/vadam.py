"""Variational Adam (VAdam): natural-gradient variational inference as an optax transformation.

BaLeNAS (Zhang et al.) learns a Gaussian over the architecture parameters,
``q(alpha) = N(mu, diag(sigma^2))``, with the Bayesian learning rule in its Adam-like form
(VAdam, Khan et al. 2018, "Fast and scalable Bayesian deep learning by weight-perturbation
in Adam"; BaLeNAS Eqs. 14-18). Only ``mu`` is a parameter; the precision ``s`` is the
optimiser's second-moment (squared-gradient / Gauss-Newton) estimate, so ``q`` costs no
more memory than Adam. With prior ``N(0, I / delta)`` and ``N`` data points,
``delta~ = delta / N`` and, per step ``t`` (``g`` = the mean of the ``M`` gradients at the
sampled ``alpha_i = mu + sigma * eps_i``)::

    sigma   = 1 / sqrt(N * (s + delta~))                 (before the step)
    m      <- b1 * m + (1 - b1) * (g + delta~ * mu)      (momentum; the prior pulls mu to 0)
    s      <- b2 * s + (1 - b2) * g * g                  (Eq. 18: Gauss-Newton by g^2)
    mu     <- mu - lr * (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + delta~)

This is Khan et al.'s Algorithm (the reference PyTorch ``Vadam``): the square root, the bias
corrections and the heavy-ball momentum in ``m`` are what turn the Vprop/VON update of
Eqs. 13-17 (``(g + delta~ mu) / (s + delta~)``, momentum on ``mu``) into the practical Adam
form that BaLeNAS trains with. ``s`` starts at ``(init_precision - delta) / N`` so that the
first samples have ``sigma = 1 / sqrt(init_precision)`` (``init_precision = delta`` by
default: the prior's spread). As ``N -> inf`` (``sigma -> 0``, ``delta~ -> 0``) the update is
exactly Adam (``eps = 0``) on ``mu`` at ``mu``: ``tests/test_balenas.py`` checks both this and
a hand-computed step.

Sampling is not part of an optax update (the gradient must be taken *at* the samples), so
:class:`VAdam` also gives :meth:`VAdam.std` and :meth:`VAdam.sample` from the same state.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class VAdamState(NamedTuple):
    count: jax.Array  # int32 steps taken
    momentum: Any  # m, like the parameters
    precision: Any  # s, like the parameters (the squared-gradient / GGN estimate)


@dataclasses.dataclass(frozen=True)
class VAdam:
    """VAdam hyper-parameters; :meth:`transform` is the optax ``GradientTransformation``.

    learning_rate: ``beta_t`` (a float or an optax schedule of the step count).
    dataset_size: ``N``, the number of examples the architecture loss averages over (BaLeNAS /
        DARTS: the architecture half of the training split).
    prior_precision: ``delta > 0`` of the prior ``N(0, I / delta)``; ``delta / N`` plays the
        role of DARTS's architecture weight decay.
    init_precision: initial posterior precision ``1 / sigma_0^2`` (None: ``delta``).
    b1, b2: momentum and second-moment decays (BaLeNAS keeps DARTS's architecture Adam: 0.5, 0.999).
    num_samples: ``M``, Monte-Carlo samples of ``alpha`` per step.
    """

    learning_rate: Any
    dataset_size: int
    prior_precision: float = 1.0
    init_precision: float | None = None
    b1: float = 0.5
    b2: float = 0.999
    num_samples: int = 1

    def __post_init__(self):
        checks = [(int(self.dataset_size) >= 1, f"dataset_size must be >= 1, got {self.dataset_size}"),
                  (self.prior_precision > 0, f"prior_precision must be > 0, got {self.prior_precision}"),
                  (self.init_precision is None or self.init_precision >= self.prior_precision,
                   f"init_precision must be >= prior_precision ({self.prior_precision}), got {self.init_precision}"),
                  (0 <= self.b1 < 1 and 0 <= self.b2 < 1, f"b1, b2 must be in [0, 1), got {self.b1}, {self.b2}"),
                  (int(self.num_samples) >= 1, f"num_samples must be >= 1, got {self.num_samples}")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"VAdam: {message}")

    @property
    def prior_term(self) -> float:
        """``delta~ = delta / N``."""
        return self.prior_precision / self.dataset_size

    def init(self, params) -> VAdamState:
        p0 = self.prior_precision if self.init_precision is None else self.init_precision
        s0 = (p0 - self.prior_precision) / self.dataset_size
        return VAdamState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params),
                          jax.tree.map(lambda p: jnp.full_like(p, s0), params))

    def update(self, grads, state: VAdamState, params=None):
        if params is None:
            raise ValueError("VAdam needs the parameters (mu) in update(grads, state, params): the prior term")
        count = state.count + 1
        dt = self.prior_term
        m = jax.tree.map(lambda m, g, p: self.b1 * m + (1 - self.b1) * (g + dt * p), state.momentum, grads, params)
        s = jax.tree.map(lambda s, g: self.b2 * s + (1 - self.b2) * g * g, state.precision, grads)
        c1 = 1 - self.b1 ** count.astype(jnp.float32)
        c2 = 1 - self.b2 ** count.astype(jnp.float32)
        lr = self.learning_rate(state.count) if callable(self.learning_rate) else self.learning_rate
        updates = jax.tree.map(lambda m, s: -lr * (m / c1) / (jnp.sqrt(s / c2) + dt), m, s)
        return updates, VAdamState(count, m, s)

    def transform(self) -> optax.GradientTransformation:
        return optax.GradientTransformation(self.init, self.update)

    def std(self, state: VAdamState):
        """``sigma = 1 / sqrt(N (s + delta~))`` per parameter: the posterior spread now."""
        return jax.tree.map(lambda s: jax.lax.rsqrt(float(self.dataset_size) * (s + self.prior_term)), state.precision)

    def sample(self, key, params, state: VAdamState, num: int | None = None):
        """``num`` (default ``M``) draws ``mu + sigma * eps``, stacked on a new leading axis."""
        num = self.num_samples if num is None else int(num)
        leaves, tree = jax.tree.flatten(params)
        keys = jax.random.split(key, len(leaves))
        sig = jax.tree.leaves(self.std(state))
        out = [p[None] + s[None] * jax.random.normal(k, (num,) + p.shape, p.dtype)
               for p, s, k in zip(leaves, sig, keys)]
        return jax.tree.unflatten(tree, out)


def vadam(learning_rate, dataset_size: int, **kwargs) -> optax.GradientTransformation:
    """``VAdam(learning_rate, dataset_size, **kwargs).transform()``."""
    return VAdam(learning_rate, dataset_size, **kwargs).transform()
