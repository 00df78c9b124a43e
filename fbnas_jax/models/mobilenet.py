"""The MobileNet-like network in Flax: supernet (encoding as input) and stand-alone nets.

The skeleton (:class:`fbnas_jax.spaces.mobilenet.Skeleton`) is data: stem ``Conv-BN-ReLU6``,
a fixed MBConv k3 e1, the searchable layers, ``Conv1x1-BN-ReLU6`` mix layer, global average
pool, linear classifier -- the ProxylessNAS network, module by module, so the cost model's
counts are this network's parameters (a test checks).

Each searchable layer holds its candidate ops as sub-modules named after the op
(``k3e3`` ... ``k7e6``, ``skip``, ``k3e3_se`` ...). An MBConv is ``expand_conv``-
``expand_bn``-ReLU6, ``dw_conv``-``dw_bn``-ReLU6, optional SE (``se_reduce``/``se_expand``,
hard sigmoid gate), ``project_conv``-``project_bn``; the identity shortcut is added where the
layer keeps stride 1 and width (ProxylessNAS' ``MobileInvertedResidualBlock``).

* ``arch=None``: the **supernet**. Every legal candidate of every layer is computed and the
  one chosen by ``encoding[layer]`` selected, so one compiled forward serves every
  architecture and ``jax.vmap`` runs many at once; unchosen ops get zero gradient and their
  BN running statistics stay untouched (``active`` masks).
* ``arch=(...)``: a **stand-alone** net with only the chosen ops, under the *same* parameter
  names: a subnet's parameters are a sub-tree of the supernet's (a test checks equal outputs).

``bn_mode``: ``"bnnas"`` -- BN only inside convolutions (``skip`` is the bare identity, as
BN-NAS, whose space has no skip); ``"fair"`` -- ``skip`` is followed by its own BN
(``skip_bn``), so BN-only training can rescale it too (FBN-NAS).

The BN-NAS indicator reads each op's *last* BN (``project_bn``; ``skip_bn`` in fair mode),
as the BN-NAS code reads BN ``7`` of each choice block.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fbnas_jax.models.init import cut_subnet, init_from_shapes, paste_subnet
from fbnas_jax.models.layers import BatchNorm, ForwardMode, choose_op, kaiming_normal, relu_code_kernel
from fbnas_jax.spaces.mobilenet import (
    DEFAULT_SKELETON, NUM_OPS, OPS, SKIP, MobileNetSpace, Skeleton, get_skeleton, make_divisible,
    op_kernel_expansion,
)

BN_MODES = ("bnnas", "fair")
BN_EPS = 1e-5


def check_bn_mode(bn_mode: str) -> str:
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
    return bn_mode


class ReLU6(nn.Module):
    """ReLU6 that optionally records NASWOT codes (``x > 0``), masked by ``active``."""

    @nn.compact
    def __call__(self, x, mode: ForwardMode, active=None):
        if mode.relu_kernel:
            k = relu_code_kernel(x)
            if active is not None:
                k = k * active.astype(k.dtype)
            self.sow("relu_kernel", "K", k, init_fn=lambda: 0.0, reduce_fn=lambda a, b: a + b)
        return jnp.clip(x, 0.0, 6.0)


def conv(features: int, kernel: int, stride: int = 1, groups: int = 1, name: str | None = None) -> nn.Conv:
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   feature_group_count=groups, use_bias=False, kernel_init=kaiming_normal(), name=name)


class MBConv(nn.Module):
    """Inverted bottleneck (no shortcut here; the layer adds it)."""

    c_out: int
    kernel: int
    expansion: int
    stride: int
    se_ratio: float | None = None
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x, mode: ForwardMode, active=None):
        c_in = x.shape[-1]
        mid = int(round(c_in * self.expansion))
        if self.expansion != 1:
            x = conv(mid, 1, name="expand_conv")(x)
            x = BatchNorm(self.bn_momentum, name="expand_bn")(x, mode, active)
            x = ReLU6(name="expand_act")(x, mode, active)
        x = conv(mid, self.kernel, self.stride, groups=mid, name="dw_conv")(x)
        x = BatchNorm(self.bn_momentum, name="dw_bn")(x, mode, active)
        x = ReLU6(name="dw_act")(x, mode, active)
        if self.se_ratio:
            r = make_divisible(mid * self.se_ratio, 8)
            s = jnp.mean(x, axis=(-3, -2), keepdims=True)
            s = nn.Conv(r, (1, 1), kernel_init=kaiming_normal(), name="se_reduce")(s)
            s = nn.relu(s)
            s = nn.Conv(mid, (1, 1), kernel_init=kaiming_normal(), name="se_expand")(s)
            x = x * (jnp.clip(s + 3.0, 0.0, 6.0) / 6.0)  # hard sigmoid gate
        x = conv(self.c_out, 1, name="project_conv")(x)
        return BatchNorm(self.bn_momentum, name="project_bn")(x, mode, active)


def _candidate(layer: "ChoiceLayer", k: int, x, mode: ForwardMode, active):
    """Candidate op ``k`` of ``layer`` on ``x``. A free function, so the modules it creates
    belong to whichever module is current: the layer, or its lifted copy inside ``nn.switch``."""
    if k == SKIP:
        if layer.bn_mode == "fair":
            return BatchNorm(layer.bn_momentum, name="skip_bn")(x, mode, active)
        return x
    kernel, expansion, se = op_kernel_expansion(k)
    y = MBConv(layer.c_out, kernel, expansion, layer.stride, layer.se_ratio if (se or layer.se_all) else None,
               layer.bn_momentum, name=OPS[k])(x, mode, active)
    return y + x if layer.skip_ok else y


class ChoiceLayer(nn.Module):
    """One searchable layer: every legal candidate (supernet) or only ``fixed``.

    Supernet execution: with ``single_path`` (the default) the chosen op runs alone under
    ``nn.switch`` (``lax.switch``): a training step computes and stores activations of one op
    per layer, not of all of them; under ``jax.vmap`` over encodings XLA turns the switch into a
    select of every branch, as the scoring engine needs. NASWOT's ReLU-code kernels
    (``mode.relu_kernel``) and initialisation take the select path: every op computed, the
    chosen one kept (``active`` masks its BN statistics and codes).
    """

    c_out: int
    stride: int
    skip_ok: bool
    choices: tuple[int, ...]
    bn_mode: str
    se_all: bool = False
    se_ratio: float = 0.25
    fixed: int | None = None
    bn_momentum: float = 0.9
    single_path: bool = True

    @nn.compact
    def __call__(self, x, choice, mode: ForwardMode):
        if self.fixed is not None:
            return _candidate(self, self.fixed, x, mode, None)
        return _choice(self, x, choice, mode)


class ChoiceStep(ChoiceLayer):
    """:class:`ChoiceLayer` as a step of ``nn.scan``: ``(x, choice) -> (y, None)``."""

    mode: ForwardMode = ForwardMode()

    @nn.compact
    def __call__(self, x, choice):
        return _choice(self, x, choice, self.mode), None


def _choice(layer, x, choice, mode):
    branches = [(lambda mdl, x, active, k=k: _candidate(layer, k, x, mode, active)) for k in layer.choices]
    strategy = "switch" if layer.single_path and not mode.relu_kernel else "select"
    branch = jnp.argmax(jnp.asarray(layer.choices) == choice)  # op index -> position in `choices`
    return choose_op(layer, branch, branches, x, strategy=strategy)


_ScanLayers = nn.scan(ChoiceStep, variable_axes={"params": 0, "batch_stats": 0, "relu_kernel": 0},
                      split_rngs={"params": True}, in_axes=0)


def layer_runs(space: MobileNetSpace) -> list[tuple[int, int]]:
    """``[(first, last), ...]``: maximal runs of consecutive searchable layers with identical
    shapes and candidates (a stage's layers after its first). The supernet stacks a run of two or
    more layers into one ``nn.scan`` (``layers_{first}_{last}``) so XLA compiles its ops once."""
    runs = []
    for spec, choices in zip(space.layers, space.layer_choices):
        key = (spec.c_in, spec.c_out, spec.stride, spec.size_in, spec.skip_ok, tuple(int(c) for c in choices))
        if runs and runs[-1][2] == key:
            runs[-1][1] = spec.index
        else:
            runs.append([spec.index, spec.index, key])
    return [(a, b) for a, b, _ in runs]


def layer_position(space: MobileNetSpace, index: int) -> tuple[str, int | None]:
    """``(module name, stack index)`` of searchable layer ``index`` in the supernet: ``layer_{i}``
    (not stacked, index None) or ``layers_{first}_{last}`` and the position in that run."""
    for a, b in layer_runs(space):
        if a <= index <= b:
            return (f"layer_{index}", None) if a == b else (f"layers_{a}_{b}", index - a)
    raise ValueError(f"no searchable layer {index} (the skeleton has {len(space.layers)})")


@functools.lru_cache(maxsize=32)
def _space_of(skeleton: Skeleton) -> MobileNetSpace:
    return MobileNetSpace(skeleton)


@functools.lru_cache(maxsize=32)
def _scaled(skeleton: Skeleton, width_mult: float) -> Skeleton:
    return skeleton if float(width_mult) == 1.0 else skeleton.scaled(float(width_mult))


class MobileNet(nn.Module):
    """``skeleton`` is the full-width reference; the layers are ``skeleton.scaled(width_mult)``.
    ``single_path``: see :class:`ChoiceLayer` (False computes every op in every forward)."""

    skeleton: Skeleton
    num_classes: int = 10
    bn_mode: str = "fair"
    arch: tuple[int, ...] | None = None
    bn_momentum: float = 0.9
    width_mult: float = 1.0
    single_path: bool = True

    @property
    def space(self) -> MobileNetSpace:
        """The search space (:func:`fbnas_jax.spaces.of_network`): the full-width skeleton's, so
        FLOPs limits of a search refer to the reference network whatever the width trained."""
        return _space_of(self.skeleton)

    @property
    def net_skeleton(self) -> Skeleton:
        """The skeleton actually built (widths scaled)."""
        return _scaled(self.skeleton, self.width_mult)

    @nn.compact
    def __call__(self, x, encoding=None, *, mode: ForwardMode = ForwardMode()):
        check_bn_mode(self.bn_mode)
        sk = self.net_skeleton
        if self.arch is None and encoding is None:
            raise ValueError(f"the supernet (arch=None) needs an `encoding` of shape ({sk.num_layers},)")
        x = conv(sk.stem_channels, sk.stem_kernel, sk.stem_stride, name="stem_conv")(x)
        x = BatchNorm(self.bn_momentum, name="stem_bn")(x, mode)
        x = ReLU6(name="stem_act")(x, mode)
        if sk.first_channels:
            x = MBConv(sk.first_channels, 3, 1, 1, None, self.bn_momentum, name="first")(x, mode)
        space = _space_of(sk)
        if self.arch is not None:  # stand-alone: every layer its own module
            for spec, choices in zip(space.layers, space.layer_choices):
                x = ChoiceLayer(spec.c_out, spec.stride, spec.skip_ok, tuple(int(c) for c in choices), self.bn_mode,
                                sk.se == "all", sk.se_ratio, int(self.arch[spec.index]), self.bn_momentum,
                                self.single_path, name=f"layer_{spec.index}")(x, None, mode)
        else:  # supernet: runs of identical layers scanned over stacked parameters (layer_runs)
            for a, b in layer_runs(space):
                spec, choices = space.layers[a], tuple(int(c) for c in space.layer_choices[a])
                args = (spec.c_out, spec.stride, spec.skip_ok, choices, self.bn_mode, sk.se == "all", sk.se_ratio,
                        None, self.bn_momentum, self.single_path)
                if a == b:
                    x = ChoiceLayer(*args, name=f"layer_{a}")(x, encoding[a], mode)
                else:
                    x = _ScanLayers(*args, mode=mode, name=f"layers_{a}_{b}")(x, encoding[a:b + 1])[0]
        x = conv(sk.mix_channels, 1, name="mix_conv")(x)
        x = BatchNorm(self.bn_momentum, name="mix_bn")(x, mode)
        x = ReLU6(name="mix_act")(x, mode)
        x = jnp.mean(x, axis=(-3, -2))
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.lecun_normal(), name="classifier")(x)


# ---------------------------------------------------------------------- construction

def make_network(skeleton: str | Skeleton = "proxylessnas-gpu", *, num_classes: int | None = None,
                 bn_mode: str = "fair", arch: Sequence[int] | str | None = None, width_mult: float = 1.0,
                 bn_momentum: float = 0.9) -> MobileNet:
    """Validated constructor; ``arch`` None (supernet), an encoding or a layer-choice string;
    ``width_mult`` scales every width of the skeleton (:meth:`Skeleton.scaled`)."""
    check_bn_mode(bn_mode)
    sk = get_skeleton(skeleton)
    if float(width_mult) <= 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult}")
    if num_classes is not None:
        sk = sk.replace(num_classes=int(num_classes))
    if arch is not None:
        arch = tuple(int(a) for a in MobileNetSpace(sk).parse(arch))
    return MobileNet(sk, sk.num_classes, bn_mode, arch, bn_momentum, float(width_mult))


def build_network(model_config: Any, num_classes: int) -> MobileNet:
    """The network contract: ``model.skeleton`` (default ``proxylessnas-gpu``), ``model.width_mult``,
    ``model.bn_mode``, ``model.arch`` (None: the supernet)."""
    m = model_config
    return make_network(m.skeleton or DEFAULT_SKELETON, num_classes=num_classes, bn_mode=m.bn_mode, arch=m.arch,
                        width_mult=m.width_mult, bn_momentum=m.bn_momentum)


def cost_settings(net: MobileNet, input_size: int) -> dict:
    """Keyword arguments of :meth:`MobileNetSpace.cost` describing ``net`` on ``input_size`` images."""
    return {"skeleton": net.net_skeleton, "input_size": int(input_size), "num_classes": net.num_classes}


def init_variables(net: MobileNet, key, input_shape) -> dict:
    """``{'params', 'batch_stats'}`` for inputs ``input_shape`` (no batch), drawn without
    compiling the forward (:func:`fbnas_jax.models.init.init_from_shapes`); an int ``key``
    seeds the ``rbg`` PRNG."""
    x = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
    enc = None if net.arch is not None else jnp.zeros((net.skeleton.num_layers,), jnp.int32)  # all k3e3
    return init_from_shapes(net, key, x, enc)


# ---------------------------------------------------------------------- BN indicators

def last_bn_path(op: int, bn_mode: str) -> tuple[str, ...] | None:
    """Path inside a layer's tree of op ``op``'s last BN (None: the op has no BN)."""
    if op == SKIP:
        return ("skip_bn",) if bn_mode == "fair" else None
    return (OPS[op], "project_bn")


def bn_table(params, batch_stats, *, net: MobileNet, kind: str = "gamma"):
    """``T[layer, op]`` (``(layers, 13)`` float32): mean |gamma| (``kind="gamma"``) or mean
    |gamma| / sqrt(running var + eps) (``"trainability"``) of each op's last BN; 0 where the
    op has no BN or is not a candidate. Pure and jit-able."""
    if kind not in ("gamma", "trainability"):
        raise ValueError(f"kind must be 'gamma' or 'trainability', got {kind!r}")
    space = net.space
    rows = []
    for spec, choices in zip(space.layers, space.layer_choices):
        vals = [jnp.zeros((), jnp.float32)] * NUM_OPS
        name, pos = layer_position(_space_of(net.net_skeleton), spec.index)
        for k in choices:
            path = last_bn_path(int(k), net.bn_mode)
            if path is None:
                continue
            node_p, node_s = params[name], batch_stats[name]
            for key in path:
                node_p, node_s = node_p[key], node_s[key]
            scale, var = node_p["scale"], node_s["var"]
            if pos is not None:
                scale, var = scale[pos], var[pos]
            g = jnp.abs(scale.astype(jnp.float32))
            if kind == "trainability":
                g = g * jax.lax.rsqrt(var.astype(jnp.float32) + BN_EPS)
            vals[int(k)] = jnp.mean(g)
        rows.append(jnp.stack(vals))
    return jnp.stack(rows)


def bn_scores(params, batch_stats, encodings, *, net: MobileNet, kind: str = "gamma"):
    """``(n,)`` BN-NAS ``gamma`` / FBN-NAS ``trainability`` of ``(n, layers)`` encodings:
    the sum over layers of the chosen op's table entry (a gather-sum, milliseconds for 10^5)."""
    table = bn_table(params, batch_stats, net=net, kind=kind)
    enc = jnp.asarray(encodings, jnp.int32)
    return jnp.sum(table[jnp.arange(table.shape[0])[None, :], enc], axis=1)


# ---------------------------------------------------------------------- parameter layout

def _supernet_path(path: tuple, space: MobileNetSpace) -> tuple[tuple, int | None]:
    for at in (0, 1):  # a variables tree starts with the collection, a params tree with the layer
        if len(path) > at and path[at].startswith("layer_"):
            name, pos = layer_position(space, int(path[at].split("_")[1]))
            return tuple(path[:at]) + (name,) + tuple(path[at + 1:]), pos
    return tuple(path), None


def subnet_variables(supernet_variables: dict, standalone_variables: dict, *, net: MobileNet) -> dict:
    """The stand-alone net's variables cut out of supernet ``net``'s (structure of
    ``standalone_variables``). Layout: a stand-alone net has one module per searchable layer,
    ``layer_{i}/<op>/...``; the supernet stacks each run of identical layers (:func:`layer_runs`)
    as ``layers_{first}_{last}/<op>/...`` with a leading axis over the run
    (:func:`layer_position`); every other path is the same in both."""
    space = _space_of(net.net_skeleton)
    return cut_subnet(supernet_variables, standalone_variables, lambda path: _supernet_path(path, space))


def merge_subnet_variables(supernet_variables: dict, standalone_variables: dict, *, net: MobileNet) -> dict:
    """The supernet's variables with the stand-alone net's written over its sub-tree (inverse of
    :func:`subnet_variables`)."""
    space = _space_of(net.net_skeleton)
    return paste_subnet(supernet_variables, standalone_variables, lambda path: _supernet_path(path, space))


def count_params(variables: dict[str, Any]) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(variables["params"])))
