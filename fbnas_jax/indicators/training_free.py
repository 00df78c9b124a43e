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
  batch 128; correlation + eigvalsh in float64 (host).
* ``synflow`` (training_free): **natural log** of SynFlow (Tanaka et al. 2020 / Abdelfattah et al.
  2021): params -> |params|, one all-ones input, R = sum of output,
  ``sum |theta * dR/dtheta|`` over conv/linear weights. BN removed
  (zero-cost NAS registers ``synflow`` with ``bn=False``): here BN is an
  exact identity (eval mode, mean 0, var 1 - eps). The raw score
  overflows float32 (~1e60 for C=16), so it is computed with exact
  input/output rescaling and returned as a log (same ranking).
* ``snip`` (training_free): sum |theta * dL/dtheta|, L = cross-entropy, conv/linear weights
  (Lee et al. 2019; zero-cost NAS), batch 64, train-mode BN.
* ``grasp`` (training_free): ``-sum theta * (H g)`` over conv/linear weights, H g by ``jvp`` of the
  gradient (Wang et al. 2020; zero-cost NAS sign), batch 64.
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
  scales), train-mode BN, batch 64, mean over 3 repeats (fresh inits);
  eigvalsh in float64 (host). As TE-NAS, a NaN condition (0/0, e.g.
  all-``none``: zero NTK) becomes 1e5; a non-positive lambda_min gives
  ``-inf``.
* ``linear_regions`` (training_free): TE-NAS number of linear regions: distinct binary ReLU activation
  patterns among the batch, counted exactly from the Hamming kernel
  (``K[i, j] == K[i, i]`` iff identical codes), mean over 3 repeats.
  Deviation: TE-NAS counts on a thin net (C=1) with 1000 3x3 inputs x 3
  batches; we count on ``ctx.net`` with full images, batch up to 1000.
* ``params`` (cost): parameters (millions, the space's cost model) -- naive "bigger is better"
* ``flops`` (cost): FLOPs (millions, the space's cost model) -- naive "bigger is better"

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
small chunks for it; naswot / jacob_cov / ntk_cond move a (B, B) or (B, H*W*3) array per
architecture to the host for the float64 step (``jax.pure_callback``, vmap-safe; under
multi-device sharding the callback gathers to the host). ``grasp`` is second order
(one extra jvp through the backward pass).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fbnas_jax.indicators import _proxies as P
from fbnas_jax.indicators._proxies import condition_number, count_patterns, naswot_logdet  # noqa: F401
from fbnas_jax.indicators.base import Indicator, ScoringContext, bind_state, register
from fbnas_jax.spaces import of_network

__all__ = ["DEFAULT_OPTIONS", "resolve_options", "naswot_logdet", "condition_number", "count_patterns"]

DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "naswot": {"batch_size": 128, "repeats": 1},  # Mellor et al. 2021 (v2)
    "jacob_cov": {"batch_size": 128, "repeats": 1, "k": 1e-5},  # Mellor et al. (v1)
    "synflow": {"batch_size": 1, "repeats": 1},  # one all-ones input (Tanaka et al.)
    "snip": {"batch_size": 64, "repeats": 1},  # Abdelfattah et al. 2021 defaults
    "grasp": {"batch_size": 64, "repeats": 1},
    "fisher": {"batch_size": 64, "repeats": 1},
    "grad_norm": {"batch_size": 64, "repeats": 1},
    "ntk_cond": {"batch_size": 64, "repeats": 3},  # TE-NAS (Chen et al. 2021)
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


def _vmapped(per_arch, encodings):
    return jax.vmap(per_arch)(jnp.asarray(encodings, jnp.int32)).astype(jnp.float32)


# ----------------------------------------------------------------------------- builders
# Each builder returns ``bind_state(f, *arrays, **static)``: the engine passes the fresh
# supernet and the image batch to the compiled ``f`` as arguments, never as constants.


def _naswot_fn(v, x, encodings, *, net):
    kernels = jax.vmap(lambda e: P.relu_kernel(net, v, x, e))(jnp.asarray(encodings, jnp.int32))
    return naswot_logdet(kernels)


def build_naswot(ctx: ScoringContext):
    _check(ctx, "naswot")
    return bind_state(_naswot_fn, *_single(ctx, resolve_options("naswot", ctx)), net=ctx.net)


def _jacob_cov_fn(v, x, encodings, *, net, k):
    jac = jax.vmap(lambda e: P.jacobian_of_sum(net, v, x, e))(jnp.asarray(encodings, jnp.int32))
    return P.jacob_cov_score(jac, k)


def build_jacob_cov(ctx: ScoringContext):
    _check(ctx, "jacob_cov")
    opts = resolve_options("jacob_cov", ctx)
    return bind_state(_jacob_cov_fn, *_single(ctx, opts), net=ctx.net, k=float(opts["k"]))


def _synflow_fn(v, encodings, *, net, shape):
    return _vmapped(lambda e: P.synflow(net, v, shape, e), encodings)


def build_synflow(ctx: ScoringContext):
    _check(ctx, "synflow")
    return bind_state(_synflow_fn, _variables(ctx), net=ctx.net, shape=tuple(np.asarray(ctx.images).shape[1:]))


def _loss_fn(v, x, y, encodings, *, net, proxy):
    return _vmapped(lambda e: proxy(net, v, x, y, e), encodings)


def _loss_builder(name, proxy):
    def build(ctx: ScoringContext):
        _check(ctx, name, labels=True)
        return bind_state(_loss_fn, *_single(ctx, resolve_options(name, ctx), labels=True), net=ctx.net,
                          proxy=proxy)
    build.__name__ = f"build_{name}"
    return build


build_snip = _loss_builder("snip", P.snip)
build_grasp = _loss_builder("grasp", P.grasp)
build_fisher = _loss_builder("fisher", P.fisher)
build_grad_norm = _loss_builder("grad_norm", P.grad_norm)


def _ntk_cond_fn(vs, xs, encodings, *, net):
    def per_arch(e):
        return jax.lax.map(lambda vx: P.ntk_gram(net, vx[0], vx[1], e), (vs, xs))  # (R, B, B)
    grams = jax.lax.map(per_arch, jnp.asarray(encodings, jnp.int32))  # see _proxies.ntk_gram
    cond = condition_number(grams)
    cond = jnp.where(cond > 0, cond, jnp.inf)  # lambda_min <= 0: ill-conditioned
    return -jnp.mean(cond, axis=-1)


def build_ntk_cond(ctx: ScoringContext):
    _check(ctx, "ntk_cond")
    return bind_state(_ntk_cond_fn, *_repeats(ctx, resolve_options("ntk_cond", ctx)), net=ctx.net)


def _linear_regions_fn(vs, xs, encodings, *, net):
    def per_arch(e):
        counts = jax.lax.map(lambda vx: count_patterns(P.relu_kernel(net, vx[0], vx[1], e)), (vs, xs))
        return jnp.mean(counts)
    return _vmapped(per_arch, encodings)


def build_linear_regions(ctx: ScoringContext):
    _check(ctx, "linear_regions")
    return bind_state(_linear_regions_fn, *_repeats(ctx, resolve_options("linear_regions", ctx)), net=ctx.net)


def _host_costs(encodings, *, space, settings, which):
    costs = space.costs(np.asarray(encodings), **settings)[which]
    return np.asarray(costs, np.float32)


def _cost_builder(which: int):
    """Params (0) or FLOPs (1) in millions from the space's exact cost model, on the host.

    The cost model is NumPy (an NB101 cell's channel split is not a table lookup), so the
    compiled function calls it through :func:`jax.pure_callback`; the chunk of encodings is
    the only thing that crosses to the host.
    """
    def build(ctx: ScoringContext):
        if ctx.net is None:
            raise ValueError("cost indicators need ScoringContext.net")
        space = of_network(ctx.net)
        size = 32 if ctx.images is None else int(np.asarray(ctx.images).shape[1])
        settings = space.network().cost_settings(ctx.net, size)
        host = functools.partial(_host_costs, space=space, settings=settings, which=which)

        def fn(encodings):
            enc = jnp.asarray(encodings, jnp.int32)
            return jax.pure_callback(host, jax.ShapeDtypeStruct(enc.shape[:1], jnp.float32), enc,
                                     vmap_method="sequential")
        return fn
    return build


build_params = _cost_builder(0)
build_flops = _cost_builder(1)

# ----------------------------------------------------------------------------- registry

_NEEDS = ("net", "init_variables", "images")
_NEEDS_L = _NEEDS + ("labels",)

register(Indicator("naswot", build_naswot, "training_free", _NEEDS,
                   "log|det| of the ReLU-code Hamming kernel; higher = more distinct codes = better",
                   "NASWOT (Mellor et al. 2021)", per_arch_cost="forward"))
register(Indicator("jacob_cov", build_jacob_cov, "training_free", _NEEDS,
                   "-sum(log(v+k)+1/(v+k)) of Jacobian-correlation eigenvalues; higher = less correlated = better",
                   "Jacobian covariance (Mellor et al., NASWOT v1)", per_arch_cost="gradient"))
register(Indicator("synflow", build_synflow, "training_free", _NEEDS,
                   "natural log of SynFlow (monotone transform); higher = better",
                   "SynFlow (Tanaka et al. 2020; Abdelfattah et al. 2021)", per_arch_cost="gradient"))
register(Indicator("snip", build_snip, "training_free", _NEEDS_L,
                   "sum |theta * dL/dtheta|; higher = better (zero-cost NAS orientation)",
                   "SNIP saliency (Lee et al. 2019)", per_arch_cost="gradient"))
register(Indicator("grasp", build_grasp, "training_free", _NEEDS_L,
                   "-sum theta * (H g); higher = better (zero-cost NAS orientation)",
                   "GraSP (Wang et al. 2020)", per_arch_cost="gradient"))
register(Indicator("fisher", build_fisher, "training_free", _NEEDS_L,
                   "sum of per-channel Fisher information of conv/linear outputs; higher = better",
                   "Fisher (Turner et al. 2020; zero-cost NAS)", per_arch_cost="gradient"))
register(Indicator("grad_norm", build_grad_norm, "training_free", _NEEDS_L,
                   "sum over layers of ||dL/dW||_2; higher = better",
                   "Gradient norm (Abdelfattah et al. 2021)", per_arch_cost="gradient"))
register(Indicator("ntk_cond", build_ntk_cond, "training_free", _NEEDS,
                   "NEGATED NTK condition number (TE-NAS: higher condition = worse), so higher = better",
                   "TE-NAS NTK condition number (Chen et al. 2021)", per_arch_cost="gradient"))
register(Indicator("linear_regions", build_linear_regions, "training_free", _NEEDS,
                   "number of distinct ReLU activation patterns; higher = more expressive = better",
                   "TE-NAS number of linear regions (Chen et al. 2021)", per_arch_cost="forward"))
register(Indicator("params", build_params, "cost", ("net",),
                   "parameters in millions; naive baseline: higher = better",
                   "parameter count (the space's benchmark counting)", per_arch_cost="table"))
register(Indicator("flops", build_flops, "cost", ("net",),
                   "FLOPs in millions; naive baseline: higher = better",
                   "FLOPs (the space's benchmark counting)", per_arch_cost="table"))
