"""Training-free (zero-cost) baselines and cost baselines, on a *freshly initialised* supernet.

A subnet of a freshly initialised supernet is distributed exactly like a freshly initialised
stand-alone network (every (cell, edge, op) has its own independent init), so each proxy is
computed by ``jax.vmap``-ing the fresh supernet (``ScoringContext.init_variables``) over
encodings: one compile, thousands of architectures. Unchosen ops are computed but multiplied
out, so their gradients, activations-times-gradients and ReLU codes (masked) contribute
exactly zero; ``tests/test_training_free.py`` checks snip/grad_norm against stand-alone nets.

Registered indicators (all oriented **higher = better**):

* ``naswot`` (training_free): log|det K|, K = Hamming kernel of binary ReLU codes (Mellor et al.
  2021, v2), batch 128; BN in train mode; log-det in float64 (host).
* ``jacob_cov`` (training_free): Mellor et al. (v1): eigenvalues v of the correlation matrix of the
  per-sample input Jacobians of the summed output (train-mode BN, one
  batched backward), score ``-sum(log(v + k) + 1/(v + k))``, k = 1e-5,
  batch 128; centred Jacobian Gram on device (float32), correlation +
  eigvalsh in float64 (host).
* ``synflow`` (training_free): **natural log** of SynFlow (Tanaka et al. 2020 / Abdelfattah et al.
  2021): params -> |params|, one all-ones input, R = sum of output,
  ``sum |theta * dR/dtheta|`` over conv/linear weights. BN removed
  (zero-cost NAS registers ``synflow`` with ``bn=False``): here BN is an
  exact identity (eval mode, mean 0, var 1 - eps). The raw score can
  overflow float32, so it is computed with exact rescaling (the network is linear)
  and returned as a log (same ranking): on NB201 one forward carrying the
  weight-directional derivative (``_proxies.synflow_forward``), elsewhere
  two-pass reverse mode (``_proxies.synflow_backward``).
* ``snip`` (training_free): sum |theta * dL/dtheta|, L = cross-entropy, conv/linear weights
  (Lee et al. 2019; zero-cost NAS), batch 64, train-mode BN.
* ``grasp`` (training_free): ``-sum theta * (H g)`` over conv/linear weights, H g by reverse mode over
  the gradient (Wang et al. 2020; zero-cost NAS sign), batch 64.
* ``fisher`` (training_free): zero-cost NAS fisher: on the output of every conv and linear layer,
  ``0.5 * mean_n (sum_spatial act * dL/dact)^2`` summed over channels
  and layers (the original hooks an identity after each conv/linear;
  we take the conv/linear output, captured by a Flax method
  interceptor, which is the same tensor), batch 64.
* ``grad_norm`` (training_free): zero-cost NAS ``grad_norm``: **sum over layers** of the L2 norm of
  dL/dW of each conv/linear weight (not the global norm), batch 64.
* ``ntk_cond`` (training_free): **-** condition number lambda_max / lambda_min of TE-NAS's empirical
  NTK (Chen et al. 2021): Gram matrix of per-sample gradients of the
  summed logits w.r.t. all "weight" params (conv/linear kernels, BN
  scales), train-mode BN, batch 72, mean over 3 repeats (fresh inits);
  eigvalsh in float64 (host). As TE-NAS, a NaN condition (0/0, e.g.
  all-``none``: zero NTK) becomes 1e5; a non-positive lambda_min gives
  ``-inf``. TE-NAS's code, checked line by line (``lib/procedures/
  ntk.py: get_ntk_n``, ``prune_tenas.py``, ``prune_launch.py``): one
  forward in train mode, then per sample ``logit[i].backward(ones)``
  and the gradients of every parameter named ``weight`` (Conv2d,
  Linear, BatchNorm2d: our kernels and BN scales; biases excluded),
  ``NTK = G G^T``, ``eig[-1] / eig[0]`` with NaN -> 1e5, mean over
  ``--repeat 3``; the NB201 launcher passes ``--batch_size 72`` (the
  argparse default is 16). Deviations: (1) init. The launcher's
  ``--init kaiming_normal`` matches neither branch of TE-NAS's
  ``init_model`` (``kaiming_norm_fanin/_fanout``), so TE-NAS runs
  with PyTorch's default init and its three repeats share one init
  (only the batch changes); we use the supernet's He-normal (fan-in)
  convolutions and LeCun-normal head, and a fresh init per repeat
  (TE-NAS's stated intent: "random reinit"). (2) TE-NAS scores
  pruned supernets (mixed edges); an encoding here scores a subnet,
  and (6, 5) op weights a mixed supernet exactly as TE-NAS does.
* ``linear_regions`` (training_free): TE-NAS number of linear regions: distinct binary ReLU activation
  patterns among the batch, counted exactly from the Hamming kernel
  (``K[i, j] == K[i, i]`` iff identical codes), mean over 3 repeats.
  Deviation: TE-NAS counts on a thin net (C=1) with 1000 3x3 inputs x 3
  batches; we count on ``ctx.net`` with full images, batch up to 1000.
* ``params`` (cost): parameters (millions, the space's cost model) -- naive "bigger is better"
* ``flops`` (cost): FLOPs (millions, the space's cost model) -- naive "bigger is better"

Which network. The published values of these proxies (NASWOT, zero-cost NAS, TE-NAS) are
computed on NB201's own network, i.e. BN only inside the ReLU-Conv-BN ops, stem, reduction
blocks and head: here a fresh supernet with ``bn_mode="bnnas"``. On the FBN placement
(``bn_mode="fair"``: an extra BN after every skip and pooling op) they are a different
measurement (grasp and fisher even change sign on our CPU runs); the NB201 benchmark names
such a column explicitly (``naswot@fair``) and computes the plain names on the standard network.

Conventions, and where the reference code differs. With the same weights and batch, our
values are compared with the PyTorch reference implementations (NB201 ``TinyNetwork``) by
``benchmarks/vs_pytorch.py``; the conventions under which they are meant to agree:

* ``naswot``: binary codes are taken at **the ReLU modules only** (every ReLU of the chosen
  ops, the reduction blocks and the head; none at BN or conv outputs), as the NASWOT
  reference hooks every ``nn.ReLU`` (it reads the ReLU *input* ``x > 0``, the same code as
  the output's). BN in train mode (batch statistics) on both sides.
* ``synflow``: **every BN off** (an exact identity, see :func:`_proxies.synflow`), as zero-cost
  NAS builds the network with ``bn=False`` for synflow; BN parameters are not summed.
* ``fisher``: our score is the **per-channel** sum ``sum_layers sum_channels F_c``. The
  zero-cost NAS reference computes the same per-channel ``F_c`` but then *broadcasts* each
  channel's value over that channel's ``C_in * k * k`` weights before summing, i.e. it
  returns ``sum_c fan_in(layer) * F_c``: a different score (it up-weights wide layers) whose
  ranking differs from ours (issue 7 reports Kendall tau 0.38 between the two over NB201).
  We keep the per-channel sum (Turner et al.'s definition) and say so in every output.
* ``snip`` / ``grasp`` / ``grad_norm``: over conv and linear *kernels* only (no BN, no
  biases), as zero-cost NAS (``mode='param'`` over Conv2d/Linear); ``grad_norm`` sums
  per-layer norms. ``jacob_cov``: NASWOT v1 with k = 1e-5.

Options. :data:`DEFAULT_OPTIONS` gives each indicator's defaults (batch sizes / repeats of
the original papers); ``ctx.options[name]`` (a dict) overrides them, e.g.
``ScoringContext(..., options={"naswot": {"batch_size": 64}})``. :func:`resolve_options`
returns the *effective* values (batch capped at ``len(ctx.images)``) -- record those.
Batches are the first ``batch_size`` samples of ``ctx.images``; repeat ``r`` uses images
``[r * B, (r + 1) * B)`` when ``ctx.images`` is long enough (else the same batch) and a fresh
supernet initialised from ``fold_in(ctx.key, r)`` (repeat 0 is ``ctx.init_variables``).

Degenerate architectures (all-``none``; output independent of the input): naswot ``-inf``
(singular kernel), jacob_cov NaN (correlation undefined), synflow ``-inf`` (log 0), snip /
grasp / fisher / grad_norm 0, ntk_cond -1e5 (TE-NAS's NaN rule), linear_regions 1.
Infinite / NaN scores are left for the engine to report; they are never clipped here.

Cost notes: ``ntk_cond`` materialises per-sample gradients, B x (all supernet "weight"
params) floats per architecture (about 0.4 GB for C=16, N=5, B=64), so the engine should use
small chunks for it; naswot / jacob_cov / ntk_cond return a (B, B) matrix per architecture
(ReLU-code kernel, centred input-Jacobian Gram, NTK per repeat) and their float64 step
(log-det, eigenvalues) runs on the host per chunk (``finish``, :mod:`.base`): no callback
inside the compiled programs, so several devices (CPU cores) run them side by side.
``grasp`` is second order (one extra jvp through the backward pass).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fbnas_jax.indicators import _proxies as P
from fbnas_jax.indicators._proxies import (  # noqa: F401
    condition_number, count_patterns, jacob_cov_score, naswot_logdet, ntk_cond_score,
)
from fbnas_jax.indicators.base import (
    Group, Indicator, ScoringContext, bind_state, register, register_group, vectorize,
)
from fbnas_jax.spaces import of_network

__all__ = ["DEFAULT_OPTIONS", "resolve_options", "naswot_logdet", "condition_number", "count_patterns",
           "jacob_cov_score", "ntk_cond_score"]

DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "naswot": {"batch_size": 128, "repeats": 1},  # Mellor et al. 2021 (v2)
    "jacob_cov": {"batch_size": 128, "repeats": 1, "k": 1e-5},  # Mellor et al. (v1)
    "synflow": {"batch_size": 1, "repeats": 1},  # one all-ones input (Tanaka et al.)
    "snip": {"batch_size": 64, "repeats": 1},  # Abdelfattah et al. 2021 defaults
    "grasp": {"batch_size": 64, "repeats": 1},
    "fisher": {"batch_size": 64, "repeats": 1},
    "grad_norm": {"batch_size": 64, "repeats": 1},
    # TE-NAS's NB201 launcher (prune_launch.py); cotangent_block: per-sample VJPs vmapped per map
    # step (1: one at a time, the CPU's fast path; see _proxies.ntk_gram)
    "ntk_cond": {"batch_size": 72, "repeats": 3, "cotangent_block": 1},
    "linear_regions": {"batch_size": 1000, "repeats": 3},  # TE-NAS (1000 inputs per batch)
}


def resolve_options(name: str, ctx: ScoringContext) -> dict[str, Any]:
    """Defaults overridden by ``ctx.options[name]``; ``batch_size`` capped by the data."""
    opts = dict(DEFAULT_OPTIONS.get(name, {}))
    opts.update((ctx.options or {}).get(name, {}) or {})
    if name != "synflow" and ctx.images is not None and "batch_size" in opts:
        opts["batch_size"] = int(min(int(opts["batch_size"]), len(ctx.images)))
    return opts


def _check(ctx: ScoringContext, name: str, labels: bool = False):
    missing = [f for f in ("net", "init_variables", "images") + (("labels",) if labels else ())
               if getattr(ctx, f) is None]
    if missing:
        raise ValueError(f"indicator {name!r} needs ScoringContext fields: {', '.join(missing)}")


def _variables(ctx):
    v = ctx.init_variables
    return {"params": v["params"], "batch_stats": v["batch_stats"]}


def _repeats(ctx: ScoringContext, opts, labels: bool = False):
    """Stacked (variables, images[, labels]) for ``opts['repeats']`` repeats (leading axis R)."""
    r_count, b = int(opts.get("repeats", 1)), int(opts["batch_size"])
    images = np.asarray(ctx.images)
    labs = None if ctx.labels is None else np.asarray(ctx.labels)
    vs, ims, ls = [], [], []
    for r in range(r_count):
        if r == 0:
            vs.append(_variables(ctx))
        else:
            key = jax.random.fold_in(ctx.key if ctx.key is not None else jax.random.key(0), r)
            v = of_network(ctx.net).network().init_variables(ctx.net, key, images.shape[1:])
            vs.append({"params": v["params"], "batch_stats": v["batch_stats"]})
        lo = r * b if (r + 1) * b <= len(images) else 0
        ims.append(images[lo:lo + b])
        if labs is not None:
            ls.append(labs[lo:lo + b])
    stack = lambda *xs: jnp.stack([jnp.asarray(x) for x in xs])
    out = (jax.tree.map(stack, *vs), jnp.asarray(np.stack(ims), jnp.float32))
    if labels:
        out += (jnp.asarray(np.stack(ls), jnp.int32),)
    return out


def _single(ctx, opts, labels=False):
    b = int(opts["batch_size"])
    images = jnp.asarray(np.asarray(ctx.images)[:b], jnp.float32)
    if not labels:
        return _variables(ctx), images
    return _variables(ctx), images, jnp.asarray(np.asarray(ctx.labels)[:b], jnp.int32)


# ----------------------------------------------------------------------------- builders
# Per-architecture builders (``build_arch``): ``bind_state(f, *arrays, **static)`` with
# ``f(*arrays, encoding) -> score``; the engine runs them over a chunk with vmap, lax.map or
# a loop (see :func:`fbnas_jax.indicators.base.vectorize`) and passes the fresh supernet and
# the image batch to the compiled ``f`` as arguments, never as constants. naswot, jacob_cov
# and ntk_cond return a (B, B) matrix instead, finished on the host (``finish`` below).


def _naswot_arch(v, x, e, *, net):
    return P.relu_kernel(net, v, x, e)  # (B, B); finish: naswot_logdet


def build_naswot(ctx: ScoringContext):
    _check(ctx, "naswot")
    return bind_state(_naswot_arch, *_single(ctx, resolve_options("naswot", ctx)), net=ctx.net)


def _jacob_cov_arch(v, x, e, *, net):
    return P.jacobian_gram(P.jacobian_of_sum(net, v, x, e))  # (B, B); finish: jacob_cov_score


def build_jacob_cov(ctx: ScoringContext):
    _check(ctx, "jacob_cov")
    return bind_state(_jacob_cov_arch, *_single(ctx, resolve_options("jacob_cov", ctx)), net=ctx.net)


def finish_jacob_cov(ctx: ScoringContext):
    """Host step of ``jacob_cov``: centred Jacobian Grams ``(n, B, B)`` -> scores (option ``k``)."""
    return functools.partial(jacob_cov_score, k=float(resolve_options("jacob_cov", ctx)["k"]))


def _synflow_arch(v, e, *, net, shape):
    return P.synflow(net, v, shape, e)


def build_synflow(ctx: ScoringContext):
    _check(ctx, "synflow")
    return bind_state(_synflow_arch, _variables(ctx), net=ctx.net, shape=tuple(np.asarray(ctx.images).shape[1:]))


def _ce_arch(v, x, y, e, *, net, names):
    out = P.ce_family(net, v, x, y, e, names)
    return out[names[0]] if len(names) == 1 else out


def _ce_builder(name):
    def build(ctx: ScoringContext):
        _check(ctx, name, labels=True)
        return bind_state(_ce_arch, *_single(ctx, resolve_options(name, ctx), labels=True), net=ctx.net,
                          names=(name,))
    build.__name__ = f"build_{name}"
    return build


build_snip = _ce_builder("snip")
build_grasp = _ce_builder("grasp")
build_fisher = _ce_builder("fisher")
build_grad_norm = _ce_builder("grad_norm")


def _ntk_cond_arch(vs, xs, e, *, net, block=1):
    # (R, B, B); finish: ntk_cond_score
    return jax.lax.map(lambda vx: P.ntk_gram(net, vx[0], vx[1], e, cotangent_block=block), (vs, xs))


def build_ntk_cond(ctx: ScoringContext):
    _check(ctx, "ntk_cond")
    opts = resolve_options("ntk_cond", ctx)
    block = P.check_cotangent_block(opts.get("cotangent_block", 1))
    return bind_state(_ntk_cond_arch, *_repeats(ctx, opts), net=ctx.net, block=block)


def _linear_regions_arch(vs, xs, e, *, net):
    return jnp.mean(jax.lax.map(lambda vx: count_patterns(P.relu_kernel(net, vx[0], vx[1], e)), (vs, xs)))


def build_linear_regions(ctx: ScoringContext):
    _check(ctx, "linear_regions")
    return bind_state(_linear_regions_arch, *_repeats(ctx, resolve_options("linear_regions", ctx)), net=ctx.net)


# ----------------------------------------------------------------------------- shared passes


def _batch_key(ctx: ScoringContext, name: str):
    return int(resolve_options(name, ctx)["batch_size"])


def _ce_group_arch(v, x, y, e, *, net, names):
    return P.ce_family(net, v, x, y, e, names)


def build_ce_group(ctx: ScoringContext, names):
    """snip / grad_norm / fisher / grasp from one cross-entropy gradient (same batch)."""
    for n in names:
        _check(ctx, n, labels=True)
    return bind_state(_ce_group_arch, *_single(ctx, resolve_options(names[0], ctx), labels=True), net=ctx.net,
                      names=tuple(names))


def _input_group_arch(v, x, e, *, net, names):
    out = P.input_family(net, v, x, e, names)
    if "jacob_cov" in out:
        out["jacob_cov"] = P.jacobian_gram(out["jacob_cov"])
    return out  # {name: (B, B)}: each member's finish makes it a score


def build_input_group(ctx: ScoringContext, names):
    """naswot's ReLU codes and jacob_cov's input Jacobian from one forward (same batch)."""
    for n in names:
        _check(ctx, n)
    return bind_state(_input_group_arch, *_single(ctx, resolve_options(names[0], ctx)), net=ctx.net,
                      names=tuple(names))


def _host_costs(encodings, *, space, settings, which):
    costs = space.costs(np.asarray(encodings), **settings)[which]
    return np.asarray(costs, np.float32)


def build_costs(ctx: ScoringContext):
    """The compiled part of ``params`` / ``flops``: the encodings themselves (the cost model
    is NumPy -- an NB101 cell's channel split is not a table lookup -- so it is the host step)."""
    if ctx.net is None:
        raise ValueError("cost indicators need ScoringContext.net")
    return lambda encodings: jnp.asarray(encodings, jnp.int32)


def _cost_finish(which: int):
    """Host step: params (0) or FLOPs (1) in millions of a chunk of encodings, from the
    space's exact cost model."""
    def finish(ctx: ScoringContext):
        space = of_network(ctx.net)
        size = 32 if ctx.images is None else int(np.asarray(ctx.images).shape[1])
        settings = space.network().cost_settings(ctx.net, size)
        return functools.partial(_host_costs, space=space, settings=settings, which=which)
    return finish


build_params = build_flops = build_costs

# ----------------------------------------------------------------------------- registry

_NEEDS = ("net", "init_variables", "images")
_NEEDS_L = _NEEDS + ("labels",)

register(Indicator("naswot", None, "training_free", _NEEDS,
                   "log|det| of the ReLU-code Hamming kernel; higher = more distinct codes = better",
                   "NASWOT (Mellor et al. 2021)", per_arch_cost="forward", build_arch=build_naswot, group="input_pass",
                   finish=lambda ctx: naswot_logdet))
register(Indicator("jacob_cov", None, "training_free", _NEEDS,
                   "-sum(log(v+k)+1/(v+k)) of Jacobian-correlation eigenvalues; higher = less correlated = better",
                   "Jacobian covariance (Mellor et al., NASWOT v1)", per_arch_cost="gradient", build_arch=build_jacob_cov,
                   group="input_pass", finish=finish_jacob_cov))
register(Indicator("synflow", None, "training_free", _NEEDS,
                   "natural log of SynFlow (monotone transform); higher = better",
                   "SynFlow (Tanaka et al. 2020; Abdelfattah et al. 2021)", per_arch_cost="gradient", build_arch=build_synflow))
register(Indicator("snip", None, "training_free", _NEEDS_L,
                   "sum |theta * dL/dtheta|; higher = better (zero-cost NAS orientation)",
                   "SNIP saliency (Lee et al. 2019)", per_arch_cost="gradient", build_arch=build_snip, group="ce_grads"))
register(Indicator("grasp", None, "training_free", _NEEDS_L,
                   "-sum theta * (H g); higher = better (zero-cost NAS orientation)",
                   "GraSP (Wang et al. 2020)", per_arch_cost="gradient", build_arch=build_grasp, group="ce_grads"))
register(Indicator("fisher", None, "training_free", _NEEDS_L,
                   "sum of per-channel Fisher information of conv/linear outputs; higher = better",
                   "Fisher (Turner et al. 2020; zero-cost NAS)", per_arch_cost="gradient", build_arch=build_fisher, group="ce_grads"))
register(Indicator("grad_norm", None, "training_free", _NEEDS_L,
                   "sum over layers of ||dL/dW||_2; higher = better",
                   "Gradient norm (Abdelfattah et al. 2021)", per_arch_cost="gradient", build_arch=build_grad_norm, group="ce_grads"))
register(Indicator("ntk_cond", lambda ctx: vectorize(build_ntk_cond(ctx), "map"), "training_free", _NEEDS,
                   "NEGATED NTK condition number (TE-NAS: higher condition = worse), so higher = better",
                   "TE-NAS NTK condition number (Chen et al. 2021)", per_arch_cost="gradient", build_arch=build_ntk_cond,
                   finish=lambda ctx: ntk_cond_score))
register(Indicator("linear_regions", None, "training_free", _NEEDS,
                   "number of distinct ReLU activation patterns; higher = more expressive = better",
                   "TE-NAS number of linear regions (Chen et al. 2021)", per_arch_cost="forward", build_arch=build_linear_regions))
register(Indicator("params", build_params, "cost", ("net",),
                   "parameters in millions; naive baseline: higher = better",
                   "parameter count (the space's benchmark counting)", per_arch_cost="table", finish=_cost_finish(0)))
register(Indicator("flops", build_flops, "cost", ("net",),
                   "FLOPs in millions; naive baseline: higher = better",
                   "FLOPs (the space's benchmark counting)", per_arch_cost="table", finish=_cost_finish(1)))

register_group(Group("ce_grads", ("snip", "grad_norm", "fisher", "grasp"), _batch_key, build_ce_group))
register_group(Group("input_pass", ("naswot", "jacob_cov"), _batch_key, build_input_group))
