"""Gradient proxies under routed execution: snip, grad_norm, grasp and ntk_cond for a chunk of
K NB201 architectures in one routed program (``execution="route"`` of :mod:`fbnas_jax.engine`).

Why: under ``vmap`` these proxies take every architecture's weight gradient of *every* op of
the supernet; routed (:func:`fbnas_jax.models.nb201_routed.routed_apply`) each op runs only
for the architectures that chose it. The weights are shared, but each architecture needs
its own gradient, so the chunk is differentiated w.r.t. *copies* of the fresh supernet's
parameters (:func:`expand_params`): one per slot (``cap``) for every op of every cell, one per
architecture (K) for the stem, the reduction blocks, the last BN and the head. The chunk's
loss is the sum of the architectures' own losses, and an architecture reads only its own
copies, so the gradient w.r.t. a copy is its architecture's gradient (and a Hessian-gradient
product its own: architectures are independent). Each proxy's per-architecture reduction
(snip's ``sum |w g|``, grad_norm's per-layer norm, grasp's ``w * Hg``, the NTK's per-leaf
row products) is taken per copy and returned to its architecture with the routing indices
(:func:`to_archs`). A cell op's copies cost ``cap / K`` (~1/4) of per-architecture copies.

The copies of the convolution kernels are not copies but zero DELTAS to the shared kernels
(:func:`conv_deltas`; ``routed_apply(slot_deltas=True)``, :mod:`fbnas_jax.models.slot_conv`):
a slot convolves with ``w + 0``, so its forward and input gradient are ONE dense convolution
of all the slots with ``w`` (copies made them grouped convolutions, ``cap`` groups) while the
gradient w.r.t. its delta is its own kernel gradient. The products with the weights (snip's
``w g``, grasp's ``w Hg``) take the copies' values (``w``). ``slot_deltas=False``: the copies.

Definitions, batches and options are those of :mod:`fbnas_jax.indicators.training_free`
(the fresh supernet ``ctx.init_variables``, train-mode BN); the values equal the ``vmap``
execution's to float rounding (``tests/test_routing_grads.py``). ``fisher`` is not routed.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from fbnas_jax.indicators import _proxies as P
from fbnas_jax.indicators.base import ScoringContext, bind_state
from fbnas_jax.indicators.training_free import _check, _repeats, _single, resolve_options
from fbnas_jax.models.nb201_routed import ROUTED_OPS, edge_routes, routed_apply
from fbnas_jax.spaces import nb201

#: the cross-entropy-gradient proxies with a routed form (``fisher``: not routed)
CE_ROUTED = ("snip", "grad_norm", "grasp")
GRAD_ROUTABLE = CE_ROUTED + ("ntk_cond",)


def expand_params(params, cap: int, kk: int):
    """The copies differentiated under routing: every leaf of a cell (``cell_*``) broadcast to
    ``(cap, ...)`` (one copy per slot of its op), every other leaf to ``(K, ...)``."""
    return {name: jax.tree.map(lambda a, n=(cap if name.startswith("cell_") else kk): jnp.broadcast_to(
        a, (n,) + a.shape), sub) for name, sub in params.items()}


def conv_deltas(flat_copies):
    """The differentiated leaves of ``flat_copies`` (a flat ``{path: (copies, ...)}``): zeros for
    the convolution kernels (5-D: copies x HWIO; deltas to the shared kernels), the rest as is."""
    return {k: jnp.zeros_like(a) if k[-1] == "kernel" and a.ndim == 5 else a for k, a in flat_copies.items()}


def _op_row(path) -> tuple[int, int]:
    """``(edge, row of ROUTED_OPS)`` of a cell leaf ``('cell_i', 'edge_e', op or op_bn, ...)``."""
    op = path[2][:-3] if path[2].endswith("_bn") else path[2]
    return int(path[1][len("edge_"):]), ROUTED_OPS.index(nb201.OPS.index(op))


def to_archs(path, values, idx, kk: int):
    """Per-copy ``values`` ``(copies, ...)`` of the leaf at ``path`` -> per architecture
    ``(K, ...)``: a cell leaf's slot values are added to the architectures in the slots
    (``idx`` from :func:`edge_routes`; empty slots dropped), other leaves are per architecture."""
    if not path[0].startswith("cell_"):
        return values
    e, i = _op_row(path)
    return jnp.zeros((kk,) + values.shape[1:], values.dtype).at[idx[e, i]].add(values, mode="drop")


def _sum_to_archs(fn, flat_tree, idx, kk: int):
    """``sum over leaves of to_archs(fn(leaf))``: ``fn`` reduces a leaf to per-copy values."""
    out = 0.0
    for path, leaf in flat_tree.items():
        out = out + to_archs(path, fn(leaf), idx, kk)
    return out


def _per_copy(fn):
    """A per-copy reduction: ``fn`` over each copy's entries (all axes but the first)."""
    return lambda a: fn(a.reshape(a.shape[0], -1))


def ce_chunk(variables, images, labels, encodings, *, net, cap: int, names, slot_deltas: bool = True):
    """``{name: (K,)}`` of the routed cross-entropy proxies ``names`` (subset of
    :data:`CE_ROUTED`), as :func:`fbnas_jax.indicators._proxies.ce_family` per architecture.
    ``slot_deltas``: conv kernels differentiated as zero deltas (dense convolutions) or copies."""
    kk = encodings.shape[0]
    idx = edge_routes(encodings, cap)[0]
    w, rest = P.split(expand_params(variables["params"], cap, kk), P.is_weight)
    at = conv_deltas(w) if slot_deltas else w  # the point differentiated at

    def loss(dw):  # sum over the architectures of each one's mean cross-entropy
        logits, _ = routed_apply(net, variables, images, encodings, cap=cap, mode=P.TRAIN, copies=P.merge(dw, rest),
                                 slot_deltas=slot_deltas)
        return jnp.sum(jax.vmap(P.cross_entropy, (0, None))(logits, labels))

    if "grasp" in names:
        def z(dw):
            gw = jax.grad(loss)(dw)
            return sum(jnp.vdot(jax.lax.stop_gradient(gw[k]), gw[k]) for k in gw), gw

        hg, gw = jax.grad(z, has_aux=True)(at)
    else:
        gw = jax.grad(loss)(at)
    out = {}
    if "snip" in names:
        out["snip"] = _sum_to_archs(_per_copy(lambda a: jnp.sum(jnp.abs(a), 1)),
                                    {k: w[k] * gw[k] for k in w}, idx, kk)
    if "grad_norm" in names:
        out["grad_norm"] = _sum_to_archs(_per_copy(lambda a: jnp.sqrt(jnp.sum(jnp.square(a), 1))), gw, idx, kk)
    if "grasp" in names:
        out["grasp"] = -_sum_to_archs(_per_copy(lambda a: jnp.sum(a, 1)), {k: w[k] * hg[k] for k in w}, idx, kk)
    return out


def ntk_grams(variables, images, encodings, *, net, cap: int, block: int = 1, slot_deltas: bool = True):
    """``(K, B, B)``: TE-NAS's NTK Gram (:func:`fbnas_jax.indicators._proxies.ntk_gram`) of every
    architecture of the chunk. Row i of all K at once: the VJP of the chunk's summed logits with
    cotangent ``e_i`` for every architecture; its Gram products are taken per copy and leaf.
    ``slot_deltas``: as :func:`ce_chunk`."""
    kk, b = encodings.shape[0], images.shape[0]
    idx = edge_routes(encodings, cap)[0]
    w, rest = P.split(expand_params(variables["params"], cap, kk), P.is_ntk_weight)

    def f(dw):
        logits, _ = routed_apply(net, variables, images, encodings, cap=cap, mode=P.TRAIN, copies=P.merge(dw, rest),
                                 slot_deltas=slot_deltas)
        return jnp.sum(logits, axis=2)  # (K, B)

    _, vjp = jax.vjp(f, conv_deltas(w) if slot_deltas else w)
    row = lambda ct: vjp(jnp.broadcast_to(ct, (kk, b)))[0]  # noqa: E731
    eye = jnp.eye(b, dtype=jnp.float32)
    if block == 1:
        rows = jax.lax.map(row, eye)  # {leaf: (B, copies, ...)}
    elif block >= b:
        rows = jax.vmap(row)(eye)
    else:
        rows = jax.lax.map(row, eye, batch_size=block)

    def gram(r):  # (B, copies, ...) -> (copies, B, B)
        r = jnp.swapaxes(r.reshape(b, r.shape[1], -1), 0, 1)
        return r @ jnp.swapaxes(r, 1, 2)

    return _sum_to_archs(gram, rows, idx, kk) + jnp.zeros((kk, b, b), jnp.float32)


def _ce_routed(v, x, y, encodings, *, net, cap, names):
    return ce_chunk(v, x, y, encodings, net=net, cap=cap, names=names)


def _ntk_routed(vs, xs, encodings, *, net, cap, block):
    grams = jax.lax.map(lambda vx: ntk_grams(vx[0], vx[1], encodings, net=net, cap=cap, block=block), (vs, xs))
    return {"ntk_cond": jnp.swapaxes(grams, 0, 1)}  # (K, R, B, B); finish: ntk_cond_score


def build(ctx: ScoringContext, names, cap: int):
    """The routed chunk function of the gradient proxies ``names`` (one job: members of the
    ``ce_grads`` group, or ``ntk_cond``) with ``cap`` slots per op."""
    names = tuple(names)
    if names == ("ntk_cond",):
        _check(ctx, "ntk_cond")
        opts = resolve_options("ntk_cond", ctx)
        block = P.check_cotangent_block(opts.get("cotangent_block", 1))
        return bind_state(_ntk_routed, *_repeats(ctx, opts), net=ctx.net, cap=int(cap), block=block)
    bad = [n for n in names if n not in CE_ROUTED]
    if bad:
        raise ValueError(f"routed gradient proxies are {GRAD_ROUTABLE} (ntk_cond a job of its own), not {bad}")
    for n in names:
        _check(ctx, n, labels=True)
    return bind_state(_ce_routed, *_single(ctx, resolve_options(names[0], ctx), labels=True), net=ctx.net,
                      cap=int(cap), names=names)
