"""How a weight-sharing supernet runs "the chosen op": every op masked, or only the chosen one.

Every supernet in ``fbnas_jax.models`` takes the architecture as an *input* (an encoding), so
one compiled forward serves every architecture. Where a layer picks one of several
candidate ops by an index from the encoding, it calls :func:`choose_op`, which has two
execution strategies -- a static ``strategy`` field of the network module:

``"select"`` (all ops)
    every candidate op is computed and all but the chosen one multiplied by zero. This is
    what ``jax.vmap`` over architectures needs (a vmapped index has no single branch to
    take), and on a GPU one vmapped launch of many architectures wins despite the ~5x
    wasted work. ``active = (choice == k)`` masks BatchNorm running-statistic updates and
    anything recorded per op.
``"switch"`` (chosen op only)
    ``flax.linen.switch`` (``lax.switch``): only the chosen branch runs, forward and
    backward. It pays off where architectures run one at a time -- under ``lax.map`` or a
    Python loop over a jitted per-architecture function (the scoring engine's ``map`` and
    ``loop`` execution, the SPOS/FairNAS training steps). Under ``vmap`` JAX turns it back
    into a select. At initialisation every branch runs, so every op gets its variables.

A third execution lives outside this module: *routed* (the scoring engine's
``execution="route"``, :mod:`fbnas_jax.models.nb201_routed`), where one program runs a chunk
of architectures and every op of an edge only for the architectures that chose it, stacked
into one large batch (the weights are shared; BN statistics stay per architecture). It
reads the same variables as ``"select"`` and gives its values to float rounding.

An edge may instead receive a weight per op (:func:`mix_ops`): one-hot is a subnet, a
0/1 mask with several ones a pruned supernet (the edge sums its live ops), real weights a
continuous relaxation. Networks accept either form of architecture input.

Both strategies give the same values (``tests/test_execution.py``). A branch under ``switch`` must not
*create* variables that other branches lack after initialisation: in particular it must not
``sow`` (the variable structure would differ per branch); NB201 records the NASWOT codes of
its convolutions' ReLUs once per edge instead (they all read the edge input). Networks
should build convolutions inside switch branches with
``conv_general_dilated=fbnas_jax.models.conv.canonical_grad_conv`` (see that module: XLA:CPU
otherwise runs their gradients ~10x slower inside a branch).
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

STRATEGIES = ("select", "switch")

#: ``branch(module, x, active) -> y``; ``None`` marks an op that outputs exactly zero.
Branch = Callable | None


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    return strategy


def choose_op(module: nn.Module, choice, branches: Sequence[Branch], x, *, strategy: str):
    """Output of ``branches[choice](module, x, active)`` under ``strategy`` (see module doc).

    ``choice``: int32 scalar (traced). ``branches``: one per op; all must return arrays of
    one shape and dtype (``None`` = zeros like ``x``).
    """
    check_strategy(strategy)
    if strategy == "select" or module.is_initializing():
        out = None
        for k, branch in enumerate(branches):
            if branch is None:
                continue
            active = choice == k
            y = jnp.where(active, branch(module, x, active), 0.0)
            out = y if out is None else out + y
        return jnp.zeros_like(x) if out is None else out
    fns = [(lambda mdl, x: jnp.zeros_like(x)) if b is None else (lambda mdl, x, b=b: b(mdl, x, None))
           for b in branches]
    return nn.switch(choice, fns, module, x)


def mix_ops(module: nn.Module, weights, branches: Sequence[Branch], x):
    """``sum_k weights[k] * branches[k](module, x, weights[k] != 0)``: a mixed edge.

    ``weights``: float array of shape ``(len(branches),)`` (traced). A one-hot vector is a
    subnet and gives exactly the value of :func:`choose_op` (``1 * y + 0 * z = y`` in floating
    point; ``active`` masks BN running statistics the same way); a 0/1 mask with several ones
    is a pruned supernet whose edge outputs the sum of its live ops (TE-NAS, DARTS); real
    weights are a continuous relaxation (DARTS, BaLeNAS). Every branch runs: the gradient
    with respect to ``weights`` needs every op's output.
    """
    out = None
    for k, branch in enumerate(branches):
        if branch is None:
            continue
        w = weights[k]
        y = w.astype(x.dtype) * branch(module, x, w != 0)
        out = y if out is None else out + y
    return jnp.zeros_like(x) if out is None else out


def is_mixed(choice) -> bool:
    """True when an edge's ``choice`` is a weight vector (mixed op) rather than an op index."""
    return getattr(choice, "ndim", 0) == 1


def with_strategy(net: nn.Module, strategy: str) -> nn.Module:
    """``net`` executing with ``strategy`` (a clone; the parameters are the same).

    Networks without a ``strategy`` field (stand-alone nets, spaces that do not offer
    conditional execution) are returned unchanged: they compute only their own ops anyway,
    or always select.
    """
    check_strategy(strategy)
    if getattr(net, "strategy", None) in (None, strategy):
        return net
    return net.clone(strategy=strategy)
