"""Supernet indicators under routed execution (``execution="route"`` of :mod:`fbnas_jax.engine`).

Chunk functions ``(state..., encodings (K, 6)) -> {name: (K, ...)}`` computing the same device
outputs as the per-architecture builders of :mod:`fbnas_jax.indicators.supernet` (NASWOT
kernel ``(K, B, B)`` for expressivity, whose log-det stays the host step; accuracy and minus
loss; MC-BN uncertainty), from one routed forward of the chunk
(:func:`fbnas_jax.models.nb201_routed.routed_apply`): every op runs only for the
architectures that chose it, in one large batch per (edge, op). NB201 supernets only.
``trainability`` / ``gamma`` (BN tables, no forward) run as always and need nothing here.
The training-free gradient proxies snip, grad_norm, grasp and ntk_cond have routed forms too
(:mod:`fbnas_jax.indicators.routed_grads`), dispatched by :func:`build`.
"""
from __future__ import annotations

import jax.numpy as jnp

from fbnas_jax.indicators import routed_grads
from fbnas_jax.indicators.base import ScoringContext, bind_state
from fbnas_jax.indicators.supernet import SUPERNET_FORWARD, forward_outputs, mc_bn_probs_of, mc_stacked, mc_uncertainty
from fbnas_jax.models.layers import ForwardMode
from fbnas_jax.models.nb201_routed import routed_apply

#: per-architecture indicators with a routed form
ROUTABLE = SUPERNET_FORWARD + ("uncertainty",) + routed_grads.GRAD_ROUTABLE


def check_routable(ctx: ScoringContext, names) -> None:
    """Raise ``ValueError`` unless every per-architecture indicator of ``names`` has a routed
    form and the network is the NB201 supernet."""
    bad = [n for n in names if n not in ROUTABLE]
    if bad:
        raise ValueError(f"execution='route' supports the per-architecture indicators {list(ROUTABLE)} "
                         f"(and the BN-table ones: gamma, trainability), not {bad}; use 'vmap' or 'map' for those")
    space = getattr(ctx.net, "space", None)
    if space != "nb201" or getattr(ctx.net, "arch", None) is not None:
        raise ValueError(f"execution='route' is implemented for the NB201 supernet only, not {type(ctx.net).__name__} "
                         f"(space {space!r}); use 'vmap' or 'map'")


def _forward_chunk(variables, images, labels, encodings, *, net, names, cap):
    logits, kernel = routed_apply(net, variables, images, encodings, cap=cap,
                                  mode=ForwardMode(train=True, relu_kernel="expressivity" in names))
    return forward_outputs(logits, kernel, labels, names)  # expressivity (K, B, B); finish: naswot_logdet per row


def _expressivity_chunk(variables, images, encodings, *, net, cap):
    return _forward_chunk(variables, images, None, encodings, net=net, names=("expressivity",), cap=cap)


def _uncertainty_chunk(variables, train_images, images, encodings, *, net, cap, stacked):
    """``-mean Var_t[softmax]`` per architecture: :func:`~fbnas_jax.indicators.supernet.mc_bn_probs_of`
    with the T Monte-Carlo forwards each routed over the chunk."""
    probs = mc_bn_probs_of(lambda x, mode: routed_apply(net, variables, x, encodings, cap=cap, mode=mode)[0],
                           train_images, images, stacked=stacked)
    return {"uncertainty": mc_uncertainty(probs)}


def build(ctx: ScoringContext, names, cap: int):
    """The routed chunk function of ``names`` (members of one job) with ``cap`` slots per op."""
    names = tuple(names)
    check_routable(ctx, names)
    if set(names) <= set(routed_grads.GRAD_ROUTABLE):
        return routed_grads.build(ctx, names, cap)
    if names == ("uncertainty",):
        train_images = jnp.asarray(ctx.train_images)
        if train_images.ndim != 5:
            raise ValueError(f"train_images must be (T, B', H, W, 3) MC mini-batches, got {train_images.shape}")
        # "auto" is sequential here, on every backend: the routed batch (cap * B per op) is already
        # large, and stacking the T forwards would multiply the chunk's memory by T
        stacked = mc_stacked(ctx, auto=False)
        return bind_state(_uncertainty_chunk, ctx.variables, train_images, jnp.asarray(ctx.images), net=ctx.net,
                          cap=int(cap), stacked=stacked)
    if "uncertainty" in names:
        raise ValueError("uncertainty is a job of its own (it shares no forward)")
    if names == ("expressivity",):
        return bind_state(_expressivity_chunk, ctx.variables, jnp.asarray(ctx.images), net=ctx.net, cap=int(cap))
    return bind_state(_forward_chunk, ctx.variables, jnp.asarray(ctx.images), jnp.asarray(ctx.labels, jnp.int32),
                      net=ctx.net, names=names, cap=int(cap))
