"""Registered per-architecture indicators measured on op masks (pruned supernets), per repeat.

:func:`indicator_measure` turns registered indicators (``ntk_cond``, ``linear_regions``, the
TEG indicators, ...) into the ``measure(masks) -> {name: (R, n)}`` that
:func:`fbnas_jax.search.prune.prune_search` needs. Each indicator is built by its own
``build_arch`` -- nothing here re-implements one -- once per repeat ``r``, from a context
holding a fresh supernet initialised with seed ``(seed, r)`` and the ``r``-th block of the
images, with ``repeats=1``: so every candidate mask of a round and the current mask share the
weights and the batch of a repeat (as TE-NAS copies the same weights into the network with
and without the op), and the per-repeat scores give TE-NAS's per-repeat relative changes.

One compiled function measures a chunk of masks: ``lax.map`` (CPU: masks one after another,
canonical-gradient convolutions) or ``vmap`` (GPU) over the masks, ``lax.map`` over the
repeats inside; the states (weights, images) are arguments, never constants.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fbnas_jax.indicators import base as ind_base
from fbnas_jax.models.execution import with_strategy
from fbnas_jax.spaces import of_network

__all__ = ["indicator_measure", "PRUNE_OPTIONS"]

#: TE-NAS's settings for NB201 pruning: NTK on batches of 72 (``prune_tenas.py``,
#: ``batch_size=72`` for NB201), linear regions on 1,000 inputs per repeat.
PRUNE_OPTIONS: dict[str, dict[str, Any]] = {"ntk_cond": {"batch_size": 72}, "linear_regions": {"batch_size": 1000}}


def indicator_measure(net, names: Sequence[str], images, labels=None, *, seed: int = 0, repeats: int = 3,
                      options: Mapping[str, Mapping[str, Any]] | None = None, execution: str = "map"):
    """``measure(masks float32 (n, E, K)) -> {name: scores (repeats, n)}`` (higher = better).

    ``net``: the supernet (it must accept op weights, e.g. NB201). ``images`` / ``labels``:
    normalised ``(M, H, W, 3)`` / ``(M,)``; repeat ``r`` uses block ``r`` of ``M // repeats``
    (each indicator reads the first ``batch_size`` of its block, see
    :func:`fbnas_jax.indicators.training_free.resolve_options`). ``options``: per-indicator
    settings (default :data:`PRUNE_OPTIONS`); ``repeats`` is forced to 1 per context.
    ``execution``: ``"map"`` or ``"vmap"`` over the masks of a chunk.
    """
    if execution not in ("map", "vmap"):
        raise ValueError(f"execution must be 'map' or 'vmap', got {execution!r}")
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(dict.fromkeys(names))
    if not names:
        raise ValueError("no indicator to measure")
    inds = [ind_base.get(n) for n in names]
    for ind in inds:
        if not ind.per_arch:
            raise ValueError(f"indicator {ind.name!r} is not a per-architecture indicator ({ind.family}); pruning "
                             "measures each op mask with a network, so it needs one of: "
                             + ", ".join(sorted(n for n, i in ind_base.REGISTRY.items() if i.per_arch)))
    images = np.asarray(images, np.float32)
    per = len(images) // int(repeats)
    if per < 1:
        raise ValueError(f"{len(images)} images cannot be split into {repeats} repeats")
    opts = {n: dict(PRUNE_OPTIONS.get(n, {})) for n in names}
    for n, o in (options or {}).items():
        opts.setdefault(n, {}).update(o)
    for n in names:
        opts[n]["repeats"] = 1
    net = with_strategy(net, "switch" if execution == "map" else "select")
    network = of_network(net).network()
    fns, states, finishes = {}, {n: [] for n in names}, {n: [] for n in names}
    shape = tuple(images.shape[1:])
    init = jax.jit(lambda k: network.init_variables(net, k, shape))  # one compilation for every repeat
    for r in range(int(repeats)):
        variables = init(jax.random.key(int(seed) * 1000 + r, impl="rbg"))
        ctx = ind_base.ScoringContext(
            net=net, init_variables=variables, images=images[r * per:(r + 1) * per],
            labels=None if labels is None else np.asarray(labels, np.int32)[r * per:(r + 1) * per],
            key=jax.random.key(int(seed) * 1000 + r), options=opts)
        for ind in inds:
            f, state = ind_base.split_state(ind.build_arch(ctx))
            fns[ind.name] = f
            states[ind.name].append(state)
            finishes[ind.name].append(ind.finish_fn(ctx))  # host step (e.g. ntk_cond's eigenvalues)
    stacked = {n: jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *states[n]) for n in names}

    def run(states, masks):
        def one(mask):
            return {n: jax.lax.map(lambda st, n=n: fns[n](*st, mask), states[n]) for n in names}
        return jax.vmap(one)(masks) if execution == "vmap" else jax.lax.map(one, masks)

    compiled = jax.jit(run)

    def measure(masks) -> dict[str, np.ndarray]:
        out = jax.device_get(compiled(stacked, jnp.asarray(masks, jnp.float32)))  # {name: (n, R, ...)}
        return {n: np.stack([np.asarray(fin(jax.tree.map(lambda a, r=r: a[:, r], out[n])), np.float64)
                             for r, fin in enumerate(finishes[n])]) for n in names}  # (R, n)

    measure.names = tuple(names)
    measure.options = {n: dict(o) for n, o in opts.items()}
    measure.repeats = int(repeats)
    return measure
