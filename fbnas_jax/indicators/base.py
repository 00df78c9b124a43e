"""The indicator registry: every way of scoring an architecture, behind one interface.

An indicator is a *builder*: given a :class:`ScoringContext` (network, variables, data,
key) it returns a pure, jit-able function ``scores = fn(encodings)`` mapping a chunk of
encodings, int32 shape ``(n, *encoding_shape)`` of the network's search space (NB201:
``(n, 6)``), to float32 scores shape ``(n,)``. The scoring engine
(:mod:`fbnas_jax.scoring`) jit-compiles it once, chunks the architecture list to fit memory
and shards chunks over devices; indicators never loop over architectures in Python.

Every indicator is oriented so that **higher predicts better**; ``sign_note`` documents the
orientation (e.g. TE-NAS's NTK condition number is negated).

``rank_based`` indicators (e.g. ``cpi``) are not functions of one architecture; they are
computed by the engine from other indicators' scores over the scored set (``components``).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable


ScoreFn = Callable[[Any], Any]  # encodings (n, *encoding_shape) int32 -> scores (n,) float32


@dataclasses.dataclass(frozen=True)
class ScoringContext:
    """Everything an indicator may read. Fields an indicator does not need may be None.

    net: the weight-sharing supernet module (``arch=None``) of any search space; its class
        variable ``space`` names the space (:func:`fbnas_jax.spaces.of_network`).
    variables: trained supernet ``{'params', 'batch_stats'}`` (supernet indicators), or None.
    init_variables: a freshly initialised supernet (training-free baselines): a subnet of a
        fresh supernet is distributed exactly like a freshly initialised stand-alone net.
    images, labels: a fixed evaluation batch, float32 normalised (B, H, W, 3) and int32 (B,).
    train_images: (T, B', H, W, 3) training mini-batches (Monte-Carlo BatchNorm).
    key: PRNG key for stochastic indicators.
    options: per-indicator settings (batch sizes, repeats) recorded into outputs.
    """

    net: Any
    variables: Any = None
    init_variables: Any = None
    images: Any = None
    labels: Any = None
    train_images: Any = None
    key: Any = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Indicator:
    name: str
    build: Callable[[ScoringContext], ScoreFn] | None
    family: str  # "supernet" | "training_free" | "cost" | "composite"
    needs: tuple[str, ...] = ()  # ScoringContext fields that must be set
    sign_note: str = ""
    description: str = ""
    components: tuple[str, ...] = ()  # for composite (rank-based) indicators
    per_arch_cost: str = "forward"  # "table" | "forward" | "gradient" | "free" -- for planning/progress


REGISTRY: dict[str, Indicator] = {}


def bind_state(fn: Callable, *state: Any, **static: Any) -> ScoreFn:
    """``encodings -> fn(*state, encodings, **static)`` as a ``functools.partial`` of arrays.

    The scoring engine recognises the partial and passes ``state`` (parameter trees, image
    batches) to the compiled function as *arguments*: closed over, they would become
    program constants that XLA constant-folds (minutes of compile time at full size) and
    duplicates in memory. ``static`` (the network module, option values) stays bound.
    """
    bound = functools.partial(fn, **static)

    def positional(*args):
        return bound(*args)

    functools.update_wrapper(positional, fn)
    return functools.partial(positional, *state)


class UnknownIndicatorError(KeyError, ValueError):
    pass


def register(indicator: Indicator) -> Indicator:
    if indicator.name in REGISTRY:
        raise ValueError(f"indicator {indicator.name!r} registered twice")
    REGISTRY[indicator.name] = indicator
    return indicator


def get(name: str) -> Indicator:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownIndicatorError(
            f"unknown indicator {name!r}; available: {', '.join(sorted(REGISTRY))}") from None
