"""Indicators read off a trained weight-sharing supernet (BN-NAS, FBN-NAS).

Every indicator here is registered in :mod:`fbnas_jax.indicators.base` (family
``"supernet"``, or ``"composite"`` for ``cpi``) and is oriented so that **higher predicts
better**. Builders return a :class:`functools.partial` of a pure function whose leading
positional arguments are the (array) state and whose last argument is the chunk of
encodings ``(n, *encoding_shape)``; the scoring engine jit-compiles the *function* and passes the state as
real arguments (no large constants baked into the compiled program).

Indicators and the choices made
-------------------------------
``gamma`` (BN-NAS)
    Per chosen op, mean over channels of ``|scale|`` of the op's *last* BatchNorm; ops with
    no BN count 0 (NB201: ``none`` always; ``skip_connect``/``avg_pool_3x3`` in
    ``bn_mode=bnnas``); the score sums over all cells and ops. The network computes it
    (``bn_scores`` of the network contract, :mod:`fbnas_jax.spaces.base`), e.g. NB201 from a
    table ``T[cell, edge, op]`` built once from the parameters and a gather-sum per
    architecture, so the whole space takes milliseconds. Higher = larger BN scaling of the
    chosen ops = more important ops (BN-NAS's premise).
``trainability`` (FBN-NAS)
    Same table with, per channel, ``|scale| / sqrt(running_var + eps)`` (``eps`` = the
    BatchNorm's 1e-5): the effective gain of the BN layer, i.e. the scale on the
    per-channel gradient flowing through it. Higher = better.
``expressivity`` (FBN-NAS, after NASWOT)
    ``log|det K|`` of the Hamming-similarity kernel of binary ReLU codes of a fixed batch
    forwarded through the subnet with *inherited supernet weights*. Forward uses
    ``ForwardMode(train=True, relu_kernel=True)``: **batch statistics**. In a supernet an op's
    running statistics average over the inputs seen under many sampled architectures, so for
    one particular subnet they are mis-calibrated (SPOS recalibrates BN for this reason);
    batch statistics give every subnet correctly normalised activations, and NASWOT itself
    scores untrained nets in train mode. Running statistics are not updated (the
    ``batch_stats`` collection is not mutable). ``K`` is accumulated in float32 inside the
    compiled function -- its entries are integer counts, exact up to 2**24 units -- which
    returns it; the log-determinant is taken on the host in **NumPy float64**
    (``np.linalg.slogdet``, as NASWOT does), per chunk (the indicator's ``finish``). A singular kernel (e.g. ``all-none``: every sample has the same
    code) gives ``-inf``: the worst possible score, not an error. Higher = more distinct
    activation patterns = more expressive.
``supernet_accuracy`` / ``supernet_neg_loss``
    The "validation accuracy" reading of the paper's expressivity: top-1 accuracy (and minus
    the mean cross-entropy) of the subnet with inherited weights on the held batch, also with
    batch statistics (same reason as above; equivalent to recalibrating BN on that batch).
    Higher = better.
``uncertainty`` (FBN-NAS, Monte-Carlo BatchNorm after Teye et al. 2018)
    ``T`` forward passes of the fixed evaluation batch, each normalised with the batch
    statistics of a different training mini-batch: one forward per MC sample of
    ``concat([train_batch_t, eval_batch])`` whose BatchNorms take their statistics from the
    training part only (``ForwardMode.stat_count``: a static slice; 1.4x faster on CPU than
    the earlier 0/1 ``stat_weights`` over the whole batch, same values to 3e-7,
    ``benchmarks/results/cpi_cpu/``). Score = ``-mean_{samples, classes} Var_t[softmax_t]`` (population
    variance over the ``T`` passes), so it is ``<= 0``, exactly 0 for ``T = 1``, and higher =
    more certain (predictions stable under BN-statistics noise).
``cpi`` (FBN-NAS composite)
    Mean of the ranks (1..n, higher score -> higher rank, ties averaged) of expressivity,
    trainability and uncertainty over the *scored set* (:func:`cpi_from_scores`). It is not
    a per-architecture function, so the engine computes it after its components. For search,
    where no fixed set exists, :func:`fbnas_jax.ranking.reference_cpi` places a candidate in a reference set
    instead (empirical-CDF position, in [0, 1]).
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from fbnas_jax.indicators._proxies import naswot_logdet, relu_kernel
from fbnas_jax.indicators.base import Group, Indicator, ScoringContext, bind_state, register, register_group
from fbnas_jax.models.layers import ForwardMode, relu_kernel_total
from fbnas_jax.ranking import rank_average
from fbnas_jax.spaces import of_network

BN_EPS = 1e-5  # fbnas_jax.models.layers.BatchNorm.epsilon
CPI_COMPONENTS = ("expressivity", "trainability", "uncertainty")
DEFAULT_OPTIONS = {"mc_samples": 10, "mc_batch_size": 64, "eval_batch_size": 64}


# --------------------------------------------------------------------------- BN scores

def _bn_scores_fn(params, batch_stats, encodings, *, net, kind):
    return of_network(net).network().bn_scores(params, batch_stats, encodings, net=net, kind=kind)


def _build_table(ctx: ScoringContext, kind: str):
    return bind_state(_bn_scores_fn, ctx.variables["params"], ctx.variables["batch_stats"], net=ctx.net, kind=kind)


# --------------------------------------------------------------------------- forwards

SUPERNET_FORWARD = ("expressivity", "supernet_accuracy", "supernet_neg_loss")


def supernet_forward(net, variables, images, labels, encoding, want=SUPERNET_FORWARD) -> dict:
    """``want`` (subset of :data:`SUPERNET_FORWARD`) from ONE forward of the held batch with
    inherited weights and batch statistics (NASWOT codes recorded only if expressivity is wanted;
    ``"expressivity"`` is the (B, B) kernel: its log-det is the indicator's host step)."""
    mode = ForwardMode(train=True, relu_kernel="expressivity" in want)
    logits, state = net.apply(variables, images, encoding, mode=mode, mutable=["relu_kernel"])
    kernel = relu_kernel_total(state["relu_kernel"]) if "expressivity" in want else None
    return forward_outputs(logits, kernel, labels, want)


def forward_outputs(logits, kernel, labels, want) -> dict:
    """The members of ``want`` from a forward's ``logits`` ``(..., B, classes)`` and NASWOT
    ``kernel`` ``(..., B, B)`` (leading axes: architectures, as under routed execution)."""
    out = {}
    if "expressivity" in want:  # the (B, B) kernel; the log-det is the host step (finish)
        out["expressivity"] = kernel
    if "supernet_accuracy" in want:
        out["supernet_accuracy"] = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32), axis=-1)
    if "supernet_neg_loss" in want:
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        lab = jnp.broadcast_to(labels[:, None], logp.shape[:-1] + (1,))
        out["supernet_neg_loss"] = jnp.mean(jnp.take_along_axis(logp, lab, axis=-1)[..., 0], axis=-1)  # = -CE
    return out


def _forward_arch(variables, images, labels, e, *, net, names):
    out = supernet_forward(net, variables, images, labels, e, names)
    return out[names[0]] if len(names) == 1 else out


def _expressivity_arch(variables, images, e, *, net):
    return relu_kernel(net, variables, images, e)  # (B, B); finish: naswot_logdet


def mc_bn_probs(net, variables, train_images, images, encoding, *, stacked: bool = False):
    """Softmax outputs ``(T, B, classes)`` of the eval batch under T MC-BN statistics.

    One forward of ``concat([train_t, eval])`` per MC sample t, statistics from the training
    part only (:func:`mc_bn_probs_of`)."""
    return mc_bn_probs_of(lambda x, mode: net.apply(variables, x, encoding, mode=mode), train_images, images,
                          stacked=stacked)


def mc_bn_probs_of(apply, train_images, images, *, stacked: bool = False):
    """:func:`mc_bn_probs` of any forward ``apply(x, mode) -> logits (..., len(x), classes)``
    (leading axes: e.g. the architectures of a routed chunk): ``(T, ..., B, classes)``.

    ``stacked``: the T forwards as one (``vmap`` over t: a T-times larger batch, what a GPU
    wants); otherwise a ``lax.scan`` (sequential: faster on CPU, measured).
    """
    n_train = train_images.shape[1]
    # statistics of the leading training part only (a static slice: no weighted passes over
    # the evaluation part; same values as stat_weights = ones then zeros, measured faster)
    mode = ForwardMode(train=True, stat_count=n_train)

    def one(batch):
        logits = apply(jnp.concatenate([batch, images], axis=0), mode)[..., n_train:, :]
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    if stacked:
        return jax.vmap(one)(train_images)
    return jax.lax.scan(lambda c, b: (c, one(b)), None, train_images)[1]


def mc_uncertainty(probs):
    """``-mean Var_t[softmax]`` of :func:`mc_bn_probs_of`'s output, per leading index."""
    return -jnp.mean(jnp.var(probs, axis=0), axis=(-2, -1))


def _uncertainty_arch(variables, train_images, images, e, *, net, stacked):
    return mc_uncertainty(mc_bn_probs(net, variables, train_images, images, e, stacked=stacked))


def mc_stacked(ctx: ScoringContext, auto: bool | None = None) -> bool:
    """``ctx.options['uncertainty']['mc_batching']``: "stacked" | "sequential" | "auto"
    (``auto`` when given, else stacked on accelerators, sequential on CPU, where it measured faster)."""
    how = ((ctx.options or {}).get("uncertainty", {}) or {}).get("mc_batching", "auto")
    if how not in ("auto", "stacked", "sequential"):
        raise ValueError(f"uncertainty mc_batching must be 'auto', 'stacked' or 'sequential', got {how!r}")
    if how == "auto":
        return jax.default_backend() != "cpu" if auto is None else auto
    return how == "stacked"


def _build_expressivity(ctx):
    return bind_state(_expressivity_arch, ctx.variables, jnp.asarray(ctx.images), net=ctx.net)


def _forward_state(ctx):
    return ctx.variables, jnp.asarray(ctx.images), jnp.asarray(ctx.labels, jnp.int32)


def _build_accuracy(ctx):
    return bind_state(_forward_arch, *_forward_state(ctx), net=ctx.net, names=("supernet_accuracy",))


def _build_neg_loss(ctx):
    return bind_state(_forward_arch, *_forward_state(ctx), net=ctx.net, names=("supernet_neg_loss",))


def _build_forward_group(ctx, names):
    """expressivity / supernet_accuracy / supernet_neg_loss from one forward (needs labels)."""
    return bind_state(_forward_arch, *_forward_state(ctx), net=ctx.net, names=tuple(names))


def _build_uncertainty(ctx):
    train_images = jnp.asarray(ctx.train_images)
    if train_images.ndim != 5:
        raise ValueError(f"train_images must be (T, B', H, W, 3) MC mini-batches, got {train_images.shape}")
    return bind_state(_uncertainty_arch, ctx.variables, train_images, jnp.asarray(ctx.images), net=ctx.net,
                      stacked=mc_stacked(ctx))


# --------------------------------------------------------------------------- composite

def _finite_for_ranking(x: np.ndarray) -> np.ndarray:
    """-inf (a degenerate, e.g. singular-kernel, architecture) ranks lowest; NaN stays NaN."""
    x = np.asarray(x, np.float64).copy()
    neg = np.isneginf(x)
    if neg.any():
        finite = x[np.isfinite(x)]
        floor = (finite.min() if finite.size else 0.0) - 1.0
        x[neg] = floor
    x[np.isposinf(x)] = np.nan
    return x


def cpi_from_scores(scores: Mapping[str, np.ndarray], components=CPI_COMPONENTS) -> np.ndarray:
    """Mean over ``components`` of their ranks within the scored set (ties averaged).

    Ranks run 1..n with the highest score ranked n, so higher CPI = better. ``-inf`` (e.g.
    a singular NASWOT kernel) ranks below every finite score; a NaN component makes that
    architecture's CPI NaN (reported by the engine, never ranked).
    """
    missing = [c for c in components if c not in scores]
    if missing:
        raise KeyError(f"cpi needs scores of {missing}")
    ranks = np.stack([rank_average(_finite_for_ranking(scores[c])) for c in components])
    return ranks.mean(axis=0)


# --------------------------------------------------------------------------- registry

_SUPERNET = ("net", "variables")
register(Indicator(
    "gamma", lambda ctx: _build_table(ctx, "gamma"), "supernet", needs=_SUPERNET, per_arch_cost="table",
    sign_note="higher = larger mean |BN scale| of the chosen ops (BN-NAS)",
    description="sum over cells/ops of mean |gamma| of each chosen op's last BN (0 for ops without BN)"))
register(Indicator(
    "trainability", lambda ctx: _build_table(ctx, "trainability"), "supernet", needs=_SUPERNET,
    per_arch_cost="table", sign_note="higher = larger BN gain |gamma|/sqrt(var+eps) (FBN-NAS)",
    description="sum over cells/ops of mean |gamma|/sqrt(running_var+eps) of each chosen op's last BN"))
register(Indicator(
    "expressivity", None, "supernet", needs=_SUPERNET + ("images",), build_arch=_build_expressivity,
    group="supernet_forward", finish=lambda ctx: naswot_logdet,
    sign_note="higher = larger NASWOT log|det K| (more distinct ReLU codes)",
    description="NASWOT Hamming-kernel log-det of the subnet with inherited weights, batch statistics, "
                "float64 slogdet on host; -inf if singular"))
register(Indicator(
    "supernet_accuracy", None, "supernet", needs=_SUPERNET + ("images", "labels"), build_arch=_build_accuracy,
    group="supernet_forward",
    sign_note="higher = more accurate", description="top-1 accuracy of the subnet (inherited weights, batch stats) "
                                                    "on the held batch"))
register(Indicator(
    "supernet_neg_loss", None, "supernet", needs=_SUPERNET + ("images", "labels"), build_arch=_build_neg_loss,
    group="supernet_forward",
    sign_note="minus cross-entropy: higher = better",
    description="minus mean cross-entropy of the subnet (inherited weights, batch stats) on the held batch"))
register(Indicator(
    "uncertainty", None, "supernet", needs=_SUPERNET + ("images", "train_images"), build_arch=_build_uncertainty,
    sign_note="minus MC-BN predictive variance: <= 0, higher = more certain",
    description="Monte-Carlo BatchNorm: -mean over eval samples and classes of the variance of softmax "
                "outputs across T train-batch normalisations"))
register_group(Group("supernet_forward", SUPERNET_FORWARD,
                     lambda ctx, name: "labels" if ctx.labels is not None else name, _build_forward_group))
register(Indicator(
    "cpi", None, "composite", components=CPI_COMPONENTS, per_arch_cost="free",
    sign_note="mean rank (1..n, higher = better) of expressivity, trainability, uncertainty",
    description="FBN-NAS composite: mean of ranks over the scored set"))


def __getattr__(name: str):
    """``bn_table`` / ``table_scores``: NB201's BN tables, now in :mod:`fbnas_jax.models.nb201`
    (the network computes its own ``bn_scores``); still importable from here."""
    if name in ("bn_table", "table_scores"):
        from fbnas_jax.models import nb201

        return getattr(nb201, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
