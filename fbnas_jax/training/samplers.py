"""Which architectures a supernet training step trains: SPOS, FairNAS, or a fixed network.

A sampler is a host function ``group(step) -> (G, *encoding_shape)`` int32: the group of
encodings step ``step`` trains (the train step sums their gradients and applies one update).
It is a function of ``(seed, step)`` alone, so a resumed run trains exactly what an
uninterrupted one would.

* ``spos``: single-path one-shot (Guo et al., 2020), one uniformly drawn architecture (G = 1);
* ``fairnas``: strict fairness (Chu et al., FairNAS): the space's fair group, in which every
  candidate op of every choice position appears exactly once (NB201: G = 5);
* ``fixed``: a stand-alone network (G = 1, the encoding is ignored).

Where the draws come from. A *product* space (:attr:`SearchSpace.choices` set: NB201)
draws from JAX's keyed stream ``fold_in(key(seed), step)`` -- uniform ``randint`` per position
for SPOS, an independent ``permutation`` per position for FairNAS -- the stream fbnas-jax has
always used, so committed NB201 runs stay bit-reproducible. Other spaces (NB101, whose cells
must be valid graphs) draw from :meth:`SearchSpace.sample` / :meth:`SearchSpace.fair_group`
with ``np.random.default_rng([seed, step, 0x5A3])``.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fbnas_jax.spaces import SearchSpace, get

SAMPLERS = ("spos", "fairnas", "fixed")
_SALT = 0x5A3  # separates the training stream from other users of (seed, step)


def _check(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")


def keyed_group(key: jax.Array, sampler: str, space: SearchSpace | str = "nb201") -> jax.Array:
    """The group of a product space drawn from ``key`` (jit-able); see the module docstring."""
    _check(sampler)
    space = get(space)
    shape = tuple(space.encoding_shape)
    if sampler == "fixed":
        return jnp.zeros((1,) + shape, jnp.int32)
    if space.choices is None:
        raise ValueError(f"the {space.name} space is not a product space; use make_sampler")
    choices = tuple(space.choices)
    positions = len(choices)
    if sampler == "spos":
        if len(set(choices)) == 1:  # one bound for all positions: NB201's original call
            return jax.random.randint(key, (1,) + shape, 0, choices[0], dtype=jnp.int32)
        high = jnp.asarray(choices, jnp.int32).reshape(shape)
        return jax.random.randint(key, (1,) + shape, 0, high, dtype=jnp.int32)
    if len(set(choices)) != 1:
        raise ValueError(f"the {space.name} space has positions with different numbers of options; "
                         "a FairNAS group needs the same number everywhere")
    keys = jax.random.split(key, positions)
    perms = jax.vmap(lambda k: jax.random.permutation(k, choices[0]))(keys)  # (positions, options)
    return perms.T.reshape((choices[0],) + shape).astype(jnp.int32)  # row t = t-th architecture


def make_sampler(space: SearchSpace | str, sampler: str, seed: int) -> Callable[[int], np.ndarray]:
    """``group(step) -> (G, *encoding_shape)`` int32 NumPy for ``space``; see the module docstring."""
    _check(sampler)
    space = get(space)
    shape = tuple(space.encoding_shape)
    if sampler == "fixed":
        zeros = np.zeros((1,) + shape, np.int32)
        return lambda step: zeros
    if space.choices is not None and (sampler == "spos" or len(set(space.choices)) == 1):
        base_key = jax.random.key(seed)
        draw = jax.jit(lambda step: keyed_group(jax.random.fold_in(base_key, step), sampler, space))
        return lambda step: np.asarray(draw(step))

    def group(step: int) -> np.ndarray:
        rng = np.random.default_rng([int(seed), int(step), _SALT])
        out = space.sample(rng, 1) if sampler == "spos" else space.fair_group(rng)
        return np.ascontiguousarray(out, dtype=np.int32).reshape((-1,) + shape)

    if sampler == "fairnas":
        group(0)  # fail now (NotImplementedError) if the space has no fair group
    return group
