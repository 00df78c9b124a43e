"""Which parameters train: the BatchNorm partition, and an optimiser that respects it.

BN-NAS / FBN-NAS freeze every convolution and linear weight at its initial value and train
only BatchNorm scale (gamma) and shift (beta). We label every leaf of the ``params`` tree
``"trainable"`` or ``"frozen"`` and build the optimiser with ``optax.multi_transform``, the
frozen branch being ``optax.set_to_zero()``.

Two details make "frozen" mean *bit-identical*, not merely "unchanged up to rounding":

* :func:`apply_updates` never touches frozen leaves (``p + 0.0`` would turn ``-0.0`` into
  ``+0.0``);
* :func:`stop_frozen_gradients` wraps frozen leaves in ``lax.stop_gradient`` before the
  forward, so XLA does not even compute convolution weight gradients (a large saving:
  BN-only backprop only needs input gradients).
"""
from __future__ import annotations

from typing import Any

import jax
import optax
from flax import traverse_util

TRAINABLE, FROZEN = "trainable", "frozen"
PARAM_MODES = ("bn_only", "all")
BN_LEAVES = ("scale", "bias")


def is_batchnorm_leaf(path: tuple[str, ...]) -> bool:
    """A leaf ``(..., <module>, 'scale'|'bias')`` whose module is one of our BatchNorms.

    Our BatchNorm modules are named ``bn``, ``*_bn`` (e.g. ``stem_bn``, ``skip_connect_bn``)
    or ``BatchNorm_<i>``; Dense/Conv biases live in modules with other names.
    """
    if len(path) < 2 or path[-1] not in BN_LEAVES:
        return False
    module = path[-2]
    return module == "bn" or module.endswith("_bn") or module.startswith("BatchNorm")


def param_labels(params: Any, mode: str = "bn_only") -> Any:
    """Pytree like ``params`` with ``"trainable"``/``"frozen"`` leaves."""
    if mode not in PARAM_MODES:
        raise ValueError(f"trainable-parameter mode must be one of {PARAM_MODES}, got {mode!r}")
    flat = traverse_util.flatten_dict(params)
    labels = {
        path: TRAINABLE if (mode == "all" or is_batchnorm_leaf(path)) else FROZEN for path in flat
    }
    return traverse_util.unflatten_dict(labels)


def masked_optimizer(inner: optax.GradientTransformation, labels: Any) -> optax.GradientTransformation:
    """``inner`` on trainable leaves, zero updates (and no state) on frozen ones."""
    return optax.multi_transform({TRAINABLE: inner, FROZEN: optax.set_to_zero()}, labels)


def stop_frozen_gradients(params: Any, labels: Any) -> Any:
    return jax.tree.map(lambda p, l: p if l == TRAINABLE else jax.lax.stop_gradient(p), params, labels)


def apply_updates(params: Any, updates: Any, labels: Any) -> Any:
    """``optax.apply_updates`` on trainable leaves only; frozen leaves are returned as is."""
    return jax.tree.map(
        lambda p, u, l: (p + u).astype(p.dtype) if l == TRAINABLE else p, params, updates, labels
    )


def count(params: Any, labels: Any) -> dict[str, int]:
    """Number of scalars per label, e.g. ``{'trainable': 3104, 'frozen': 1709882}``."""
    out = {TRAINABLE: 0, FROZEN: 0}
    for p, l in zip(jax.tree.leaves(params), jax.tree.leaves(labels)):
        out[l] += int(p.size)
    return out
