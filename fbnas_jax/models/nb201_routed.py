"""The NB201 supernet executed *routed*: K architectures in one program, each op computed
only for the architectures that chose it (mixture-of-experts style).

Why: ``vmap`` over architectures (``strategy="select"``) computes every candidate op for
every architecture (~4-5x the subnet's FLOPs); ``lax.map`` with ``lax.switch`` computes only
the chosen ops but one architecture at a time (small, latency-bound launches). Because the
supernet's weights are *shared* across architectures, the architectures that chose op k on
an edge can be stacked and run through op k as one large batch: the FLOPs of the subnets in
the launches of vmap. Only BatchNorm statistics are per architecture (each architecture
normalises with its own batch statistics, as in every other execution).

:func:`routed_apply` reads the variables of the ordinary supernet
(:class:`fbnas_jax.models.nb201.NB201Net`, same tree: every checkpoint works) and applies its
own modules (ReLUConvBN, BatchNorm, ResNetBasicBlock, ...) to their sub-trees:

* images ``(B, H, W, C)`` are shared by the K architectures (as in scoring): the stem runs
  once and is broadcast;
* on each edge and each op ``k`` (``none`` costs nothing), ``idx = nonzero(choice == k,
  size=cap)`` selects up to ``cap`` architectures (static), their inputs are gathered to
  ``(cap, B, ...)`` (empty slots read zeros), the op runs ``vmap``-ed over that axis with
  shared parameters (XLA folds it into one ``cap * B`` convolution) and the results are
  scatter-added back (empty slots dropped). The host guarantees ``n_k <= cap``
  (:mod:`fbnas_jax.models.routing`); a padding architecture (``-1`` on every edge) takes no op;
* reduction blocks and the head run per architecture (``vmap`` over K, per-architecture BN);
* NASWOT codes are recorded as in the supernet (per node, weighted by how many out-edges
  chose a convolution; plus the reduction blocks' and the head's ReLUs) as ``(K, B, B)``.

Values equal ``vmap`` of the select supernet to float rounding (``tests/test_routing.py``).
Forward only (scoring: expressivity, supernet accuracy/loss, MC-BN uncertainty).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from fbnas_jax.models.layers import (
    BatchNorm, ForwardMode, ReLU, ReLUConvBN, ResNetBasicBlock, avg_pool_3x3, conv2d, relu_code_kernel,
    relu_kernel_total,
)
from fbnas_jax.spaces import nb201

_CONV_OPS = tuple(k for k, name in enumerate(nb201.OPS) if name.startswith("nor_conv"))


def _vars(variables, *path):
    """``{'params': ..., 'batch_stats': ...}`` of the sub-module at ``path`` (stats if it has any)."""
    out = {}
    for col in ("params", "batch_stats"):
        node = variables.get(col)
        for key in path:
            node = None if node is None else node.get(key)
        if node is not None:
            out[col] = node
    return out


def _apply(module, variables, x, mode: ForwardMode | None, record: bool):
    """``(y, kernel)`` of ``module`` on ONE architecture's input; kernel = its NASWOT codes
    (``(B, B)``, 0 when not recording)."""
    args = () if mode is None else (mode,)
    if not record:
        return module.apply(variables, x, *args), jnp.zeros((), jnp.float32)
    y, state = module.apply(variables, x, *args, mutable=["relu_kernel"])
    return y, relu_kernel_total(state.get("relu_kernel", {}))


def _per_arch(module, variables, xs, mode, record):
    """``module`` on each architecture's input ``xs`` (leading axis), shared variables."""
    return jax.vmap(lambda x: _apply(module, variables, x, mode, record))(xs)


def _edge_op(net, k: int, features: int, dtype, edge_vars, mode: ForwardMode):
    """``x -> y`` of op ``k`` of an edge for ONE architecture (the select supernet's op)."""
    name = nb201.OPS[k]
    if name in ("nor_conv_1x1", "nor_conv_3x3"):
        module = ReLUConvBN(features, 1 if name == "nor_conv_1x1" else 3, 1, net.bn_momentum, dtype=dtype)
        v = _vars(edge_vars, name)
        return lambda x: module.apply(v, x, mode)
    bn = None
    if net.bn_mode == "fair":
        bn_module, v = BatchNorm(net.bn_momentum), _vars(edge_vars, f"{name}_bn")
        bn = lambda y: bn_module.apply(v, y, mode)  # noqa: E731
    pool = name == "avg_pool_3x3"

    def op(x):
        y = avg_pool_3x3(x) if pool else x
        return y if bn is None else bn(y)
    return op


def routed_edge(op_fns, x, choice, cap: int, combine: str = "gather"):
    """Sum over ops k of ``op_fns[k]`` applied to the architectures whose ``choice == k``.

    ``x``: ``(K, B, ...)``; ``choice``: ``(K,)`` int (``-1``: none); ``op_fns``: ``{k: fn}``
    per-architecture functions (ops absent from the dict output zero, like ``none``).
    At most ``cap`` architectures may choose each op (checked on the host).

    ``combine``: how the op outputs return to their architectures. ``"gather"``: the
    ``len(op_fns) * cap`` outputs and a zero row are stacked and each architecture reads its
    row (its op's block, its rank among the architectures choosing that op); ``"scatter"``:
    scatter-add into zeros (XLA:CPU runs scatters slowly)."""
    kk = x.shape[0]
    ys, slots = [], []
    for k, fn in op_fns.items():
        idx = jnp.nonzero(choice == k, size=cap, fill_value=kk)[0]
        xs = jnp.take(x, idx, axis=0, mode="fill", fill_value=0)  # empty slots: zeros
        ys.append(jax.vmap(fn)(xs).astype(x.dtype))
        slots.append(idx)
    if combine == "scatter":
        out = jnp.zeros_like(x)
        for idx, y in zip(slots, ys):
            out = out.at[idx].add(y, mode="drop")
        return out
    ops = jnp.asarray(list(op_fns), jnp.int32)
    hit = choice[:, None] == ops[None, :]  # (K, n_ops)
    rank = jnp.cumsum(hit, axis=0) - 1  # rank of each architecture among those choosing the op
    block = jnp.argmax(hit, axis=1)
    pos = jnp.where(jnp.any(hit, axis=1), block * cap + jnp.take_along_axis(rank, block[:, None], 1)[:, 0],
                    len(ys) * cap)  # none / padding: the zero row
    stacked = jnp.concatenate(ys + [jnp.zeros_like(ys[0][:1])], axis=0)
    return stacked.at[pos].get(mode="promise_in_bounds")  # pos < len(stacked) by construction


def routed_apply(net, variables, images, encodings, *, cap: int, mode: ForwardMode = ForwardMode(),
                 combine: str = "gather"):
    """``(logits (K, B, classes) float32, kernel (K, B, B) or None)`` of the K architectures
    ``encodings`` ``(K, 6)`` (``-1`` rows: padding) on the shared ``images`` ``(B, H, W, C)``.

    ``net``: the :class:`~fbnas_jax.models.nb201.NB201Net` supernet whose ``variables`` these
    are (its sizes, BN mode and compute dtype are read). ``mode.relu_kernel``: also return the
    NASWOT kernel of each architecture (its ReLU codes, as ``relu_kernel_total`` of the supernet).
    ``combine``: how op outputs return to their architectures (:func:`routed_edge`).
    Running statistics are never updated (forward only)."""
    if net.arch is not None:
        raise ValueError("routed execution runs the supernet (arch=None), not a stand-alone network")
    if encodings.ndim != 2 or encodings.shape[1] != nb201.NUM_EDGES:
        raise ValueError(f"routed_apply: encodings must be (K, {nb201.NUM_EDGES}), got {encodings.shape}")
    record = bool(mode.relu_kernel)
    edge_mode = dataclasses.replace(mode, relu_kernel=False)
    dtype = None if net.compute_dtype == "float32" else jnp.dtype(net.compute_dtype)
    kk = encodings.shape[0]
    enc = encodings.astype(jnp.int32)
    c = net.channels
    # stem: identical for every architecture, computed once
    x = conv2d(c, 3, name="stem_conv", dtype=dtype).apply(_vars(variables, "stem_conv"), images)
    x = BatchNorm(net.bn_momentum).apply(_vars(variables, "stem_bn"), x, mode)
    x = jnp.broadcast_to(x[None], (kk,) + x.shape)
    kernel = jnp.zeros((kk, images.shape[0], images.shape[0]), jnp.float32) if record else None
    is_conv = sum((enc == k).astype(jnp.float32) for k in _CONV_OPS)  # (K, 6): edge chose a convolution
    cell = 0
    for stage, width in enumerate((c, 2 * c, 4 * c)):
        if stage > 0:
            block = ResNetBasicBlock(width, net.bn_momentum, dtype=dtype)
            x, k = _per_arch(block, _vars(variables, f"reduction_{stage - 1}"), x, mode, record)
            kernel = kernel + k if record else None
        for _ in range(net.cells_per_stage):
            cv = _vars(variables, f"cell_{cell}")
            nodes, e = [x], 0
            weights = [0.0] * (nb201.NUM_NODES - 1)
            for node in range(1, nb201.NUM_NODES):
                total = 0.0
                for j in range(node):
                    ev = _vars(cv, f"edge_{e}")
                    ops = {k: _edge_op(net, k, width, dtype, ev, edge_mode) for k in range(1, nb201.NUM_OPS)}
                    total = total + routed_edge(ops, nodes[j], enc[:, e], cap, combine)
                    weights[j] = weights[j] + is_conv[:, e]
                    e += 1
                nodes.append(total)
            if record:  # the Cell's per-node NASWOT codes of its convolutions' ReLUs
                for j, w in enumerate(weights):
                    kernel = kernel + jax.vmap(relu_code_kernel)(nodes[j]) * w[:, None, None]
            x = nodes[-1]
            cell += 1
    x, k = _per_arch(BatchNorm(net.bn_momentum), _vars(variables, "lastact_bn"), x, mode, False)
    if record:
        kernel = kernel + _per_arch(ReLU(), {}, x, mode, True)[1]
    x = jnp.mean(nn.relu(x), axis=(2, 3))  # (K, B, channels)
    head = nn.Dense(net.num_classes, kernel_init=nn.initializers.lecun_normal(), dtype=dtype)
    logits = head.apply(_vars(variables, "classifier"), x).astype(jnp.float32)
    return logits, kernel
