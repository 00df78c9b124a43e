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
  shared parameters (XLA folds it into one ``cap * B`` convolution) and each architecture
  reads its slot's output back (empty slots dropped). The host guarantees ``n_k <= cap``
  (:mod:`fbnas_jax.models.routing`); a padding architecture (``-1`` on every edge) takes no op;
* every cell of an architecture has its encoding, so the routing (``idx`` and the read-back
  rows) is computed once (:func:`edge_routes`), and the ``cells_per_stage`` cells of a stage,
  all of one shape, run as one ``lax.scan`` over their variables stacked at trace time
  (carry: the activations and the NASWOT kernel): the program holds 3 cells, not 3 x N,
  which is what its compile time grows with;
* reduction blocks and the head run per architecture (``vmap`` over K, per-architecture BN);
* NASWOT codes are recorded as in the supernet (per node, weighted by how many out-edges
  chose a convolution; plus the reduction blocks' and the head's ReLUs) as ``(K, B, B)``.

Values equal ``vmap`` of the select supernet to float rounding (``tests/test_routing.py``).
A forward (scoring: expressivity, supernet accuracy/loss, MC-BN uncertainty); with
``copies`` (per-slot / per-architecture copies of the parameters) its gradients are each
architecture's own (the gradient proxies, :mod:`fbnas_jax.indicators.routed_grads`);
with ``slot_deltas`` the conv kernels' copies are zero deltas to the shared kernels, so
the convolutions' forwards and input gradients stay dense (:mod:`fbnas_jax.models.slot_conv`).
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
from fbnas_jax.models.slot_conv import slot_conv
from fbnas_jax.spaces import nb201

#: the ops that run (``none``, op 0, costs nothing): the rows of :func:`edge_routes`
ROUTED_OPS = tuple(range(1, nb201.NUM_OPS))
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


def _with_params(variables, params):
    """``variables`` with its ``params`` replaced by ``params`` (None: unchanged)."""
    return variables if params is None else {**variables, "params": params}


def _apply(module, variables, x, mode: ForwardMode | None, record: bool):
    """``(y, kernel)`` of ``module`` on ONE architecture's input; kernel = its NASWOT codes
    (``(B, B)``, 0 when not recording)."""
    args = () if mode is None else (mode,)
    if not record:
        return module.apply(variables, x, *args), jnp.zeros((), jnp.float32)
    y, state = module.apply(variables, x, *args, mutable=["relu_kernel"])
    return y, relu_kernel_total(state.get("relu_kernel", {}))


def _per_arch(module, variables, xs, mode, record, params=None):
    """``module`` on each architecture's input ``xs`` (leading axis): shared variables, or with
    ``params`` one copy of its parameters per architecture (leading axis too)."""
    if params is None:
        return jax.vmap(lambda x: _apply(module, variables, x, mode, record))(xs)
    return jax.vmap(lambda x, p: _apply(module, _with_params(variables, p), x, mode, record))(xs, params)


def _cast(dtype, *arrays):
    return arrays if dtype is None else tuple(a.astype(dtype) for a in arrays)


def _over_slots(fn):
    """Marks ``fn`` as taking all the slots at once: ``(xs (S, ...), params (S, ...)) -> ys``."""
    fn.over_slots = True
    return fn


def _relu_conv_bn_deltas(net, ksize: int, stride: int, dtype, v, mode: ForwardMode):
    """``(xs, params) -> ys``: :class:`ReLUConvBN` of ALL the slots at once, whose ``params``
    hold zero DELTAS to the shared conv kernel of ``v`` (:func:`fbnas_jax.models.slot_conv.slot_conv`:
    the forward and the input gradient are one dense convolution) and each slot's BN copy;
    the module's values (no NASWOT recording)."""
    w, bn, bn_vars = v["params"]["conv"]["kernel"], BatchNorm(net.bn_momentum), _vars(v, "bn")

    def op(xs, p):
        r, wk, dk = _cast(dtype, jax.nn.relu(xs), w, p["conv"]["kernel"])
        ys = slot_conv(r, wk, dk, stride, ksize // 2, net.kernel_grad)
        return jax.vmap(lambda y, pb: bn.apply(_with_params(bn_vars, pb), y, mode))(ys, p["bn"])
    return _over_slots(op)


def _basic_block_deltas(net, dtype, v, mode: ForwardMode):
    """``(xs, params) -> ys``: :class:`ResNetBasicBlock` of all the architectures at once with
    zero kernel deltas in ``params`` (as :func:`_relu_conv_bn_deltas`)."""
    conv_a = _relu_conv_bn_deltas(net, 3, 2, dtype, _vars(v, "conv_a"), mode)
    conv_b = _relu_conv_bn_deltas(net, 3, 1, dtype, _vars(v, "conv_b"), mode)
    w = v["params"]["shortcut"]["kernel"]

    def block(xs, p):
        ys = conv_b(conv_a(xs, p["conv_a"]), p["conv_b"])
        s = jax.vmap(lambda x: nn.avg_pool(x, (2, 2), strides=(2, 2)))(xs)
        return ys + slot_conv(*_cast(dtype, s, w, p["shortcut"]["kernel"]), 1, 0, net.kernel_grad)
    return block


def _edge_op(net, k: int, features: int, dtype, edge_vars, mode: ForwardMode, deltas: bool = False):
    """``(x, params) -> y`` of op ``k`` of an edge for ONE architecture (the select supernet's
    op); ``params``: None (the edge's own) or a copy of the op's parameters (:func:`op_params`);
    ``deltas``: the copy's conv kernel is a zero delta to the shared one (:func:`_relu_conv_bn_deltas`)."""
    name = nb201.OPS[k]
    if deltas and name in ("nor_conv_1x1", "nor_conv_3x3"):
        return _relu_conv_bn_deltas(net, 1 if name == "nor_conv_1x1" else 3, 1, dtype, _vars(edge_vars, name), mode)
    if name in ("nor_conv_1x1", "nor_conv_3x3"):
        module = ReLUConvBN(features, 1 if name == "nor_conv_1x1" else 3, 1, net.bn_momentum, dtype=dtype,
                            kernel_grad=net.kernel_grad)
        v = _vars(edge_vars, name)
        return lambda x, p: module.apply(_with_params(v, p), x, mode)
    bn = None
    if net.bn_mode == "fair":
        bn_module, v = BatchNorm(net.bn_momentum), _vars(edge_vars, f"{name}_bn")
        bn = lambda y, p: bn_module.apply(_with_params(v, p), y, mode)  # noqa: E731
    pool = name == "avg_pool_3x3"

    def op(x, p):
        y = avg_pool_3x3(x) if pool else x
        return y if bn is None else bn(y, p)
    return op


def op_params(edge_params, k: int, bn_mode: str):
    """The parameters of op ``k`` inside an edge's ``params`` (None: the op has none)."""
    name = nb201.OPS[k]
    if name.startswith("nor_conv"):
        return edge_params[name]
    return edge_params[f"{name}_bn"] if bn_mode == "fair" and name != "none" else None


def edge_routes(encodings, cap: int):
    """Routing of every edge, computed once for all the cells (an architecture's cells share
    its encoding): ``(idx (6, n_ops, cap), pos (6, K))`` int32.

    ``idx[e, i]``: the architectures choosing op ``ROUTED_OPS[i]`` on edge ``e`` (empty slots:
    ``K``, read as zeros); ``pos[e, a]``: the row of the stacked op outputs
    (``n_ops * cap`` rows, then a zero row) that architecture ``a`` reads back: its op's block,
    its rank among the architectures choosing that op (``none`` / padding: the zero row)."""
    enc = jnp.asarray(encodings, jnp.int32)
    kk = enc.shape[0]
    ops = jnp.asarray(ROUTED_OPS, jnp.int32)
    hit = enc.T[:, :, None] == ops[None, None, :]  # (6, K, n_ops)
    idx = jax.vmap(lambda h: jax.vmap(lambda c: jnp.nonzero(c, size=cap, fill_value=kk)[0], 1)(h))(hit)
    rank = jnp.cumsum(hit, axis=1) - 1  # rank of each architecture among those choosing the op
    block = jnp.argmax(hit, axis=2)  # (6, K)
    own_rank = jnp.take_along_axis(rank, block[..., None], 2)[..., 0]
    pos = jnp.where(jnp.any(hit, axis=2), block * cap + own_rank, len(ROUTED_OPS) * cap)
    return idx.astype(jnp.int32), pos.astype(jnp.int32)


def routed_edge(op_fns, x, idx, pos, combine: str = "gather", copies=None):
    """Sum over the ops of :data:`ROUTED_OPS` of ``op_fns[i]`` applied to the architectures
    that chose that op (``none`` and padding rows: zero).

    ``x``: ``(K, B, ...)``; ``op_fns``: one ``(x, params) -> y`` per routed op (one
    architecture; all the slots at once if marked by :func:`_over_slots`); ``idx``
    ``(n_ops, cap)``, ``pos`` ``(K,)``: this edge's routing (:func:`edge_routes`).
    ``copies``: None (every op its shared parameters), or per op the ``cap`` slots' own copies
    of its parameters (leading axis ``cap``; None for an op without any), so that each slot's
    gradient is its architecture's own.

    ``combine``: how the op outputs return to their architectures. ``"gather"``: the
    ``n_ops * cap`` outputs and a zero row are stacked and each architecture reads its row
    ``pos``; ``"scatter"``: scatter-add into zeros at ``idx`` (XLA:CPU runs scatters slowly)."""
    ys = []
    for i, fn in enumerate(op_fns):
        xs = jnp.take(x, idx[i], axis=0, mode="fill", fill_value=0)  # empty slots: zeros
        p = None if copies is None else copies[i]
        if p is None:
            y = jax.vmap(lambda x: fn(x, None))(xs)
        else:
            y = fn(xs, p) if getattr(fn, "over_slots", False) else jax.vmap(fn)(xs, p)
        ys.append(y.astype(x.dtype))
    if combine == "scatter":
        out = jnp.zeros_like(x)
        for i, y in enumerate(ys):
            out = out.at[idx[i]].add(y, mode="drop")
        return out
    stacked = jnp.concatenate(ys + [jnp.zeros_like(ys[0][:1])], axis=0)
    return stacked.at[pos].get(mode="promise_in_bounds")  # pos < len(stacked) by construction


def _cell(net, width: int, dtype, cell_vars, x, routes, is_conv, mode, record: bool, combine: str,
          cell_copies=None, deltas: bool = False):
    """``(y, kernel)`` of one cell for the K architectures (kernel: the cell's NASWOT codes,
    ``(K, B, B)``, or 0 when not recording); ``cell_copies``: per-slot parameter copies of
    its ops (the cell's ``params`` with a leading ``cap`` axis) or None; ``deltas``: their conv
    kernels are zero deltas to the shared ones (:func:`_relu_conv_bn_deltas`)."""
    idx, pos = routes
    nodes, e = [x], 0
    weights = [0.0] * (nb201.NUM_NODES - 1)
    for node in range(1, nb201.NUM_NODES):
        total = 0.0
        for j in range(node):
            ev = _vars(cell_vars, f"edge_{e}")
            fns = [_edge_op(net, k, width, dtype, ev, mode, deltas) for k in ROUTED_OPS]
            cps = None if cell_copies is None else [op_params(cell_copies[f"edge_{e}"], k, net.bn_mode)
                                                    for k in ROUTED_OPS]
            total = total + routed_edge(fns, nodes[j], idx[e], pos[e], combine, cps)
            weights[j] = weights[j] + is_conv[:, e]
            e += 1
        nodes.append(total)
    kernel = jnp.zeros((), jnp.float32)
    if record:  # the Cell's per-node NASWOT codes of its convolutions' ReLUs
        for j, w in enumerate(weights):
            kernel = kernel + jax.vmap(relu_code_kernel)(nodes[j]) * w[:, None, None]
    return nodes[-1], kernel


def _stack(trees):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _stage(net, width: int, dtype, variables, copies, cells, x, kernel, routes, is_conv, mode, combine, deltas):
    """The cells ``cells`` of one stage (same shapes) as ONE ``lax.scan`` over their variables,
    stacked at trace time: the program holds one cell, not ``cells_per_stage``."""
    record = kernel is not None
    stacked = _stack([_vars(variables, f"cell_{i}") for i in cells])
    stacked_copies = None if copies is None else _stack([copies[f"cell_{i}"] for i in cells])

    def body(carry, cell):
        x, kernel = carry
        y, k = _cell(net, width, dtype, cell[0], x, routes, is_conv, mode, record, combine, cell[1], deltas)
        return (y, kernel + k if record else None), None

    (x, kernel), _ = jax.lax.scan(body, (x, kernel), (stacked, stacked_copies))
    return x, kernel


def routed_apply(net, variables, images, encodings, *, cap: int, mode: ForwardMode = ForwardMode(),
                 combine: str = "gather", copies=None, slot_deltas: bool = False):
    """``(logits (K, B, classes) float32, kernel (K, B, B) or None)`` of the K architectures
    ``encodings`` ``(K, 6)`` (``-1`` rows: padding) on the shared ``images`` ``(B, H, W, C)``.

    ``net``: the :class:`~fbnas_jax.models.nb201.NB201Net` supernet whose ``variables`` these
    are (its sizes, BN mode and compute dtype are read). ``mode.relu_kernel``: also return the
    NASWOT kernel of each architecture (its ReLU codes, as ``relu_kernel_total`` of the supernet).
    ``combine``: how op outputs return to their architectures (:func:`routed_edge`).
    ``copies`` (routed gradients, :mod:`fbnas_jax.indicators.routed_grads`): the supernet's
    ``params`` tree with a leading axis on every leaf, ``cap`` (one copy per slot) on the
    cells' op parameters and K (one per architecture) on the others; used instead of
    ``variables['params']``, so the gradient w.r.t. a copy is its architecture's own.
    ``slot_deltas`` (with ``copies``): the copies of the convolution kernels are per-slot /
    per-architecture zero DELTAS to the shared kernels of ``variables`` instead
    (:func:`fbnas_jax.models.slot_conv.slot_conv`): the same values and gradients, with dense
    forwards and input gradients (copies make them grouped convolutions). NASWOT recording
    is not supported there.
    Running statistics are never updated (forward only)."""
    if net.arch is not None:
        raise ValueError("routed execution runs the supernet (arch=None), not a stand-alone network")
    if encodings.ndim != 2 or encodings.shape[1] != nb201.NUM_EDGES:
        raise ValueError(f"routed_apply: encodings must be (K, {nb201.NUM_EDGES}), got {encodings.shape}")
    record = bool(mode.relu_kernel)
    deltas = bool(slot_deltas) and copies is not None
    if deltas and record:
        raise ValueError("routed_apply: slot_deltas computes gradients; NASWOT recording is not supported there")
    edge_mode = dataclasses.replace(mode, relu_kernel=False)
    dtype = None if net.compute_dtype == "float32" else jnp.dtype(net.compute_dtype)
    kk = encodings.shape[0]
    enc = encodings.astype(jnp.int32)
    c = net.channels
    cp = (lambda name: None) if copies is None else copies.get  # noqa: E731
    stem_conv = conv2d(c, 3, name="stem_conv", dtype=dtype, kernel_grad=net.kernel_grad)
    stem_bn = BatchNorm(net.bn_momentum)
    stem_vars, bn_vars = _vars(variables, "stem_conv"), _vars(variables, "stem_bn")
    if copies is None:  # identical for every architecture: computed once
        x = stem_bn.apply(bn_vars, stem_conv.apply(stem_vars, images), mode)
        x = jnp.broadcast_to(x[None], (kk,) + x.shape)
    elif deltas:  # the shared images per architecture: one dense convolution, kernel gradients per architecture
        w, xs = stem_vars["params"]["kernel"], jnp.broadcast_to(images[None], (kk,) + images.shape)
        x = slot_conv(*_cast(dtype, xs, w, cp("stem_conv")["kernel"]), 1, 1, net.kernel_grad)
        x = jax.vmap(lambda y, pb: stem_bn.apply(_with_params(bn_vars, pb), y, mode))(x, cp("stem_bn"))
    else:  # one copy per architecture (a K * C-channel convolution of the shared images)
        x = jax.vmap(lambda pc, pb: stem_bn.apply(_with_params(bn_vars, pb), stem_conv.apply(
            _with_params(stem_vars, pc), images), mode))(cp("stem_conv"), cp("stem_bn"))
    kernel = jnp.zeros((kk, images.shape[0], images.shape[0]), jnp.float32) if record else None
    is_conv = sum((enc == k).astype(jnp.float32) for k in _CONV_OPS)  # (K, 6): edge chose a convolution
    routes = edge_routes(enc, cap)  # once: every cell of an architecture has its encoding
    n = net.cells_per_stage
    for stage, width in enumerate((c, 2 * c, 4 * c)):
        if stage > 0:
            block = ResNetBasicBlock(width, net.bn_momentum, dtype=dtype, kernel_grad=net.kernel_grad)
            name = f"reduction_{stage - 1}"
            if deltas:
                x = _basic_block_deltas(net, dtype, _vars(variables, name), mode)(x, cp(name))
                k = None
            else:
                x, k = _per_arch(block, _vars(variables, name), x, mode, record, cp(name))
            kernel = kernel + k if record else None
        x, kernel = _stage(net, width, dtype, variables, copies, range(stage * n, (stage + 1) * n), x, kernel,
                           routes, is_conv, edge_mode, combine, deltas)
    x, _ = _per_arch(BatchNorm(net.bn_momentum), _vars(variables, "lastact_bn"), x, mode, False, cp("lastact_bn"))
    if record:
        kernel = kernel + _per_arch(ReLU(), {}, x, mode, True)[1]
    x = jnp.mean(nn.relu(x), axis=(2, 3))  # (K, B, channels)
    head = nn.Dense(net.num_classes, kernel_init=nn.initializers.lecun_normal(), dtype=dtype)
    head_vars = _vars(variables, "classifier")
    if copies is None:
        logits = head.apply(head_vars, x)
    else:
        logits = jax.vmap(lambda p, x: head.apply(_with_params(head_vars, p), x))(cp("classifier"), x)
    return logits.astype(jnp.float32), kernel
