"""The training-free proxies and MC-BatchNorm uncertainty as their public reference code computes them.

One architecture per call, on a :class:`~torch_ref.network.TinyNetwork` in train mode (BN
with batch statistics), ``x`` NCHW float32, ``y`` int64 labels. Sources (read, not copied):

* zero-cost NAS (Abdelfattah et al. 2021, SamsungLabs/zero-cost-nas ``foresight/pruners/
  measures``): ``snip``, ``grasp``, ``fisher``, ``grad_norm``, ``synflow``, ``jacob_cov``;
  loss ``F.cross_entropy``; "layers" are ``nn.Conv2d`` and ``nn.Linear``;
* NASWOT (Mellor et al. 2021, BayesWatch/nas-without-training ``score_networks.py``):
  ``naswot`` -- Hamming kernel of the binary codes at every ``nn.ReLU``, ``slogdet``;
* TE-NAS (Chen et al. 2021, VITA-Group/TENAS ``lib/procedures``): ``ntk_cond`` (one backward
  per sample, gradients of every parameter named ``weight``, Gram, eigenvalues) and
  ``linear_regions`` (signs of every ``nn.ReLU`` output, pairwise-identity count);
* MC-BatchNorm (Teye et al. 2018) as FBN-NAS uses it: ``uncertainty``.

Where the reference does bookkeeping that is not part of the measure, it is left out, so
the PyTorch side is *at least* as fast as the reference code: no ``copy.deepcopy`` of the
network per measure (except ``synflow``, which mutates it), ``snip`` takes ``|w * dL/dw|``
directly instead of through a ``weight_mask`` layer (the same number), ``naswot`` times only
the hooked forward (the reference first runs a forward + backward just to mark modules as
visited), ``fisher`` uses tensor hooks instead of an identity module's backward hook.

Conventions of the values (what ``benchmarks/vs_pytorch.py`` compares, and why):

* ``fisher`` returns ``(per_channel_sum, reference_total)``. The reference broadcasts each
  output channel's Fisher value over that channel's ``fan_in`` weights before summing, so
  its total weights layer l by ``C_in * k * k``; ours (and the first value) sums per channel.
* ``synflow``: float64 as the reference (``net.double()``); returned as the natural log
  (ours is a log, computed by exact rescaling in float32).
* ``ntk_cond``: the Gram matrix as TE-NAS; eigenvalues in float64 (TE-NAS: float32
  ``symeig``), NaN -> 1e5 as TE-NAS. Returned negated, as ours (higher = better).
* ``jacob_cov``: ``np.linalg.eig`` of the correlation matrix as the reference (real part).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_ref.network import MCBatchNorm2d


def _layers(net):
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@torch.no_grad()
def naswot(net, x, y=None) -> float:
    """log|det K|, K summed over every ``nn.ReLU`` of the Hamming kernel of binary codes."""
    acc = []

    def hook(module, inp, out):
        c = (inp[0].reshape(inp[0].shape[0], -1) > 0).float()
        acc.append(c @ c.t() + (1.0 - c) @ (1.0 - c).t())

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    k = np.zeros((x.shape[0], x.shape[0]), np.float64)
    for a in acc:
        k += a.cpu().numpy()
    return float(np.linalg.slogdet(k)[1])


def jacob_cov(net, x, y=None, k: float = 1e-5) -> float:
    net.zero_grad()
    x = x.clone().requires_grad_(True)
    out = net(x)
    out.backward(torch.ones_like(out))
    jac = x.grad.detach().reshape(x.shape[0], -1).cpu().numpy()
    with np.errstate(all="ignore"):
        corrs = np.corrcoef(jac)
    if not np.all(np.isfinite(corrs)):  # a constant Jacobian row: correlation undefined (ours: NaN too;
        return float("nan")            # np.linalg.eig would raise on the NaN matrix)
    v = np.linalg.eig(corrs)[0].real
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def snip(net, x, y) -> float:
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    with torch.no_grad():
        return float(sum((l.weight * l.weight.grad).abs().sum() for l in _layers(net) if l.weight.grad is not None))


def grad_norm(net, x, y) -> float:
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    return float(sum(l.weight.grad.norm() for l in _layers(net) if l.weight.grad is not None))


def grasp(net, x, y) -> float:
    weights = [l.weight for l in _layers(net)]
    net.zero_grad()
    grad_w = torch.autograd.grad(F.cross_entropy(net(x), y), weights, allow_unused=True)
    grad_f = torch.autograd.grad(F.cross_entropy(net(x), y), weights, create_graph=True, allow_unused=True)
    z = sum((gw.detach() * gf).sum() for gw, gf in zip(grad_w, grad_f) if gw is not None)
    z.backward()
    with torch.no_grad():
        return float(sum((-l.weight.detach() * l.weight.grad).sum() for l in _layers(net) if l.weight.grad is not None))


def fisher(net, x, y) -> tuple[float, float]:
    """(sum over layers and channels of the Fisher value, the reference's fan-in-broadcast total)."""
    per_layer = {}

    def fwd_hook(module, inp, out):
        act = out.detach()

        def grad_hook(g):
            g_nk = (act * g).sum(dim=tuple(range(2, act.ndim))) if act.ndim > 2 else act * g
            del_k = g_nk.pow(2).mean(0).mul(0.5)
            per_layer[module] = per_layer.get(module, 0) + del_k

        out.register_hook(grad_hook)

    handles = [l.register_forward_hook(fwd_hook) for l in _layers(net)]
    try:
        net.zero_grad()
        F.cross_entropy(net(x), y).backward()
    finally:
        for h in handles:
            h.remove()
    channel_sum = sum(float(v.abs().sum()) for v in per_layer.values())
    reference = sum(float(v.abs().sum()) * int(np.prod(m.weight.shape[1:])) for m, v in per_layer.items())
    return channel_sum, reference


def synflow(net_without_bn, x, y=None) -> float:
    """ln of sum |theta * dR/dtheta| over conv/linear weights; |params|, float64, ones input."""
    net = copy.deepcopy(net_without_bn)  # the reference's prunable copy (abs() is in place)
    with torch.no_grad():
        for p in net.state_dict().values():
            p.abs_()
    net.double()
    net.zero_grad()
    out = net(torch.ones((1,) + tuple(x.shape[1:]), dtype=torch.float64, device=x.device))
    out.sum().backward()
    with torch.no_grad():
        total = sum(float((l.weight * l.weight.grad).abs().sum()) for l in _layers(net) if l.weight.grad is not None)
    return float(np.log(total)) if total > 0 else float("-inf")


def ntk_cond(net, x, y=None) -> float:
    """Minus TE-NAS's NTK condition number (one repeat)."""
    net.zero_grad()
    out = net(x)
    weights = [w for name, w in net.named_parameters() if "weight" in name]
    rows = []
    for i in range(x.shape[0]):
        out[i:i + 1].backward(torch.ones_like(out[i:i + 1]), retain_graph=True)
        rows.append(torch.cat([w.grad.reshape(-1).detach().clone() for w in weights if w.grad is not None]))
        net.zero_grad()
    g = torch.stack(rows)
    ntk = torch.einsum("nc,mc->nm", g, g)
    ev = torch.linalg.eigvalsh(ntk.double())
    cond = np.nan_to_num((ev[-1] / ev[0]).item(), nan=1e5)
    return float(-cond) if cond > 0 else float("-inf")


@torch.no_grad()
def linear_regions(net, x, y=None) -> float:
    feats = []
    handles = [m.register_forward_hook(lambda m, i, o: feats.append(o.detach().reshape(o.shape[0], -1)))
               for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    a = torch.sign(torch.cat(feats, 1))
    res = a @ (1 - a).T
    res = res + res.T
    res = 1 - torch.sign(res)
    return float((1.0 / res.sum(1)).sum())


@torch.no_grad()
def uncertainty(net, x, train_batches) -> float:
    """-mean Var_t[softmax] of ``x`` normalised by each of the T training mini-batches' statistics."""
    bns = [m for m in net.modules() if isinstance(m, MCBatchNorm2d)]
    n = train_batches.shape[1]
    probs = []
    try:
        for m in bns:
            m.stat_rows = n
        for t in range(train_batches.shape[0]):
            probs.append(F.softmax(net(torch.cat([train_batches[t], x]))[n:], dim=-1))
    finally:
        for m in bns:
            m.stat_rows = None
    return float(-torch.stack(probs).var(dim=0, unbiased=False).mean())


#: name -> (function, runs with BatchNorm). ``expressivity`` is NASWOT's kernel on the
#: supernet's (inherited) weights: the same computation.
MEASURES = {
    "naswot": (naswot, True), "expressivity": (naswot, True), "jacob_cov": (jacob_cov, True),
    "synflow": (synflow, False), "snip": (snip, True), "grasp": (grasp, True), "fisher": (fisher, True),
    "grad_norm": (grad_norm, True), "ntk_cond": (ntk_cond, True), "linear_regions": (linear_regions, True),
    "uncertainty": (uncertainty, True),
}
