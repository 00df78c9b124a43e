"""NAS-Bench-201 ``TinyNetwork`` in PyTorch, with a Flax NB201 supernet's weights ported in.

The structure follows the benchmark's own code (``TinyNetwork`` / ``InferCell`` of
NAS-Bench-201, as re-used by zero-cost NAS's ``nasbench2`` model): stem Conv3x3 + BN; three
stages of N cells at C, 2C, 4C joined by ``ResNetBasicblock`` reductions (ReLU-Conv-BN x2,
AvgPool2x2 + Conv1x1 shortcut); BN-ReLU, global average pool, linear head. Each cell node
sums one op per incoming edge; ``none`` is ``x * 0`` (NB201's ``Zero``), ``avg_pool_3x3`` is
``AvgPool2d(3, 1, 1, count_include_pad=False)``.

Differences from the benchmark's file, all deliberate and documented:

* ``bn_mode="fair"`` adds a BatchNorm after ``skip_connect`` and ``avg_pool_3x3`` (FBN-NAS
  fair BN, as our Flax network); ``"bnnas"`` is the benchmark's network exactly.
* ``use_bn=False`` replaces every BatchNorm by an identity: zero-cost NAS's
  ``get_prunable_copy(bn=False)``, used by ``synflow``.
* Every BatchNorm is :class:`MCBatchNorm2d`: an ``nn.BatchNorm2d`` that, when ``stat_rows``
  is set, normalises the whole batch with the (biased) statistics of its first
  ``stat_rows`` samples -- Monte-Carlo BatchNorm's "normalise the evaluation batch with a
  training mini-batch's statistics" in one forward of ``cat([train, eval])``.

:func:`port_flax_weights` copies conv kernels (HWIO -> OIHW), dense kernels (transposed),
BN scale/bias/running statistics of the chosen ops from a Flax supernet
``{'params', 'batch_stats'}`` (or a stand-alone net's). Inputs are NCHW here, NHWC in Flax.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


class MCBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d; with ``stat_rows = n`` normalises with the biased moments of ``x[:n]``."""

    stat_rows: int | None = None

    def forward(self, x):
        if self.stat_rows is None:
            return super().forward(x)
        head = x[: self.stat_rows]
        mean = head.mean(dim=(0, 2, 3))
        var = head.var(dim=(0, 2, 3), unbiased=False)
        return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)


def _bn(c: int, use_bn: bool, path: tuple) -> nn.Module:
    if not use_bn:
        return nn.Identity()
    m = MCBatchNorm2d(c, eps=1e-5, momentum=0.1)
    m.flax_path = path
    return m


def _conv(cin: int, cout: int, k: int, stride: int, path: tuple) -> nn.Conv2d:
    m = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
    m.flax_path = path
    return m


class ReLUConvBN(nn.Sequential):
    def __init__(self, cin, cout, k, stride, use_bn, path):
        super().__init__(nn.ReLU(inplace=False), _conv(cin, cout, k, stride, path + ("conv",)),
                         _bn(cout, use_bn, path + ("bn",)))


class Zero(nn.Module):
    def forward(self, x):
        return x.mul(0.0)


class ResNetBasicblock(nn.Module):
    def __init__(self, cin, cout, use_bn, path):
        super().__init__()
        self.conv_a = ReLUConvBN(cin, cout, 3, 2, use_bn, path + ("conv_a",))
        self.conv_b = ReLUConvBN(cout, cout, 3, 1, use_bn, path + ("conv_b",))
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), _conv(cin, cout, 1, 1, path + ("shortcut",)))

    def forward(self, x):
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def _op(name: str, c: int, bn_mode: str, use_bn: bool, path: tuple) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1, 1, use_bn, path + (name,))
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3, 1, use_bn, path + (name,))
    base = nn.Identity() if name == "skip_connect" else nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    if bn_mode == "fair":
        return nn.Sequential(base, _bn(c, use_bn, path + (f"{name}_bn",)))
    return base


class InferCell(nn.Module):
    def __init__(self, arch: Sequence[int], c: int, bn_mode: str, use_bn: bool, path: tuple):
        super().__init__()
        self.ops = nn.ModuleList()
        self.inputs = []
        e = 0
        for node in range(1, 4):
            for j in range(node):
                self.ops.append(_op(OPS[arch[e]], c, bn_mode, use_bn, path + (f"edge_{e}",)))
                self.inputs.append((node, j))
                e += 1

    def forward(self, x):
        nodes = [x]
        e = 0
        for node in range(1, 4):
            total = 0
            for j in range(node):
                total = total + self.ops[e](nodes[j])
                e += 1
            nodes.append(total)
        return nodes[-1]


class TinyNetwork(nn.Module):
    """One NB201 architecture (``arch``: 6 op indices) at width ``channels``, ``cells`` per stage."""

    def __init__(self, arch: Sequence[int], channels: int = 16, cells: int = 5, num_classes: int = 10,
                 bn_mode: str = "bnnas", use_bn: bool = True):
        super().__init__()
        c = channels
        stem_conv = nn.Conv2d(3, c, 3, padding=1, bias=False)
        stem_conv.flax_path = ("stem_conv",)
        self.stem = nn.Sequential(stem_conv, _bn(c, use_bn, ("stem_bn",)))
        layers, cell = [], 0
        for stage, width in enumerate((c, 2 * c, 4 * c)):
            if stage > 0:
                layers.append(ResNetBasicblock(width // 2, width, use_bn, (f"reduction_{stage - 1}",)))
            for _ in range(cells):
                layers.append(InferCell(arch, width, bn_mode, use_bn, (f"cell_{cell}",)))
                cell += 1
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(_bn(4 * c, use_bn, ("lastact_bn",)), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * c, num_classes)
        self.classifier.flax_path = ("classifier",)

    def forward(self, x):
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x)
        x = self.global_pooling(self.lastact(x)).flatten(1)
        return self.classifier(x)


def _get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def _t(a, transpose=None) -> torch.Tensor:
    a = np.asarray(a, np.float32)
    return torch.from_numpy(np.array(a if transpose is None else a.transpose(transpose), copy=True))


@torch.no_grad()
def port_flax_weights(net: nn.Module, variables) -> nn.Module:
    """Copy the Flax ``{'params', 'batch_stats'}`` into ``net`` (in place); returns ``net``."""
    params, stats = variables["params"], variables["batch_stats"]
    for m in net.modules():
        path = getattr(m, "flax_path", None)
        if path is None:
            continue
        p = _get(params, path)
        if isinstance(m, nn.Conv2d):
            m.weight.copy_(_t(p["kernel"], (3, 2, 0, 1)))
        elif isinstance(m, nn.Linear):
            m.weight.copy_(_t(p["kernel"], (1, 0)))
            m.bias.copy_(_t(p["bias"]))
        elif isinstance(m, nn.BatchNorm2d):
            s = _get(stats, path)
            m.weight.copy_(_t(p["scale"]))
            m.bias.copy_(_t(p["bias"]))
            m.running_mean.copy_(_t(s["mean"]))
            m.running_var.copy_(_t(s["var"]))
    return net


def build_ported(arch: Sequence[int], variables, *, channels: int, cells: int, num_classes: int = 10,
                 bn_mode: str = "bnnas", use_bn: bool = True) -> TinyNetwork:
    """A :class:`TinyNetwork` for ``arch`` holding the supernet's weights of the chosen ops (train mode)."""
    net = TinyNetwork(arch, channels, cells, num_classes, bn_mode, use_bn)
    return port_flax_weights(net, variables).train()


def nchw(images) -> torch.Tensor:
    """NHWC NumPy/JAX images -> contiguous NCHW float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(images, np.float32).transpose(0, 3, 1, 2)))
