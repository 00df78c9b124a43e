"""The indicator registry: every way of scoring an architecture, behind one interface.

An indicator is a *builder*: given a :class:`ScoringContext` (network, variables, data,
key) it returns a pure, jit-able function ``scores = fn(encodings)`` mapping a chunk of
encodings, int32 shape ``(n, *encoding_shape)`` of the network's search space (NB201:
``(n, 6)``), to float32 scores shape ``(n,)``. The scoring engine
(:mod:`fbnas_jax.scoring`) jit-compiles it once, chunks the architecture list to fit memory
and shards chunks over devices; indicators never loop over architectures in Python.

Per-architecture indicators (everything that runs the network) are written for ONE
architecture instead: ``build_arch(ctx)`` returns ``score = fn(encoding)`` (a scalar), and
the engine decides how to run it over many (:func:`vectorize`): ``jax.vmap`` (the supernet
computes every op; one launch for the chunk -- GPUs), ``lax.map`` or a Python loop over a
jitted call (the supernet runs only the chosen op, ``strategy="switch"`` -- CPUs). For
such indicators ``build`` is derived (the ``vmap`` form), so ``build(ctx)(encodings)``
keeps working everywhere.

Indicators that need the same forward/backward declare a ``group``
(:data:`GROUPS`): when several members are requested with matching options, the engine
builds one function computing all of them from one pass (e.g. snip, grad_norm, fisher and
grasp from one cross-entropy gradient).

Host step (``finish``). Some scores end in float64 linear algebra that XLA should not do
(NASWOT's log-determinant, jacob_cov's and TE-NAS's eigenvalues, TEG-NAS's kernel
regression). Such an indicator's compiled function returns the small device intermediate
instead of the score (a ``(B, B)`` kernel, a Gram matrix, a pytree of them) and
``finish(ctx)`` gives a pure NumPy function mapping a *chunk* of those (leading axis = the
architectures, on the host) to float32 scores ``(n,)``. The engine applies it per chunk after
``jax.device_get`` (:func:`fbnas_jax.engine.compile_job`), so no compiled program calls back
into Python: several devices (one per CPU core) run them side by side. Code that runs
``build`` / ``build_arch`` itself applies :meth:`Indicator.finish_fn` to what comes out.

Every indicator is oriented so that **higher predicts better**; ``sign_note`` documents the
orientation (e.g. TE-NAS's NTK condition number is negated).

``rank_based`` indicators (e.g. ``cpi``) are not functions of one architecture; they are
computed by the engine from other indicators' scores over the scored set (``components``).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax


ScoreFn = Callable[[Any], Any]  # encodings (n, *encoding_shape) int32 -> scores (n,) float32
ArchFn = Callable[[Any], Any]  # one encoding (*encoding_shape,) int32 -> score () float32 (or a dict of them)
HostFn = Callable[[Any], Any]  # a chunk of device outputs (NumPy, leading axis n) -> scores (n,) float32


def as_scores(out) -> Any:
    """The host step of indicators whose compiled function already returns scores."""
    return out


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
    #: per-architecture builder (see the module doc); when set, ``build`` is its vmap form
    build_arch: Callable[[ScoringContext], ArchFn] | None = None
    #: name of a :class:`Group` sharing one forward/backward with other members
    group: str | None = None
    #: search spaces the indicator is implemented for (empty: any); ``"all"`` skips the others
    spaces: tuple[str, ...] = ()
    #: host step (see the module doc): ``finish(ctx) -> f(chunk of device outputs) -> (n,) scores``
    finish: Callable[[ScoringContext], HostFn] | None = None

    def __post_init__(self):
        if self.build is None and self.build_arch is not None:
            build_arch = self.build_arch
            object.__setattr__(self, "build", lambda ctx: vectorize(build_arch(ctx), "vmap"))

    @property
    def per_arch(self) -> bool:
        return self.build_arch is not None

    def finish_fn(self, ctx: ScoringContext) -> HostFn:
        """The host step for ``ctx``: what ``build``'s outputs (a chunk, fetched to the host)
        go through to become scores; :func:`as_scores` for indicators without one."""
        return as_scores if self.finish is None else self.finish(ctx)


@dataclasses.dataclass(frozen=True)
class Group:
    """Indicators computed together from one pass.

    ``key(ctx, name)``: a hashable summary of what member ``name`` needs (batch, repeats);
    members with equal keys share. ``build(ctx, names)``: a per-architecture function
    returning ``{name: score}`` for those members (same state-as-arguments convention).
    """

    name: str
    members: tuple[str, ...]
    key: Callable[[ScoringContext, str], Any]
    build: Callable[[ScoringContext, tuple[str, ...]], ArchFn]


REGISTRY: dict[str, Indicator] = {}
GROUPS: dict[str, Group] = {}

STRATEGIES = ("vmap", "map", "loop")


def split_state(fn) -> tuple[Callable, tuple]:
    """``(f, state)`` of a :func:`bind_state` partial (positional arrays); ``(fn, ())`` otherwise."""
    if isinstance(fn, functools.partial) and not fn.keywords:
        return fn.func, tuple(fn.args)
    return fn, ()


def vectorize(fn: ArchFn, strategy: str = "vmap") -> ScoreFn:
    """A chunk function ``encodings (n, ...) -> scores (n,)`` from a per-architecture one.

    ``"vmap"``: ``jax.vmap`` (every architecture at once; the supernet must compute every
    op, and does: a vmapped ``lax.switch`` is a select). ``"map"``: ``lax.map`` (one
    architecture after another inside one program; with ``strategy="switch"`` networks only
    the chosen ops run). The state of a :func:`bind_state` partial stays an argument.
    """
    if strategy not in ("vmap", "map"):
        raise ValueError(f"vectorize: strategy must be 'vmap' or 'map', got {strategy!r}")
    f, state = split_state(fn)

    def chunk(*args):
        *st, encodings = args
        one = lambda e: f(*st, e)  # noqa: E731
        return (jax.vmap(one) if strategy == "vmap" else functools.partial(jax.lax.map, one))(encodings)

    chunk.__name__ = f"{strategy}_{getattr(f, '__name__', 'indicator')}"
    return functools.partial(chunk, *state)


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


def register_group(group: Group) -> Group:
    if group.name in GROUPS:
        raise ValueError(f"group {group.name!r} registered twice")
    GROUPS[group.name] = group
    return group


def get(name: str) -> Indicator:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownIndicatorError(
            f"unknown indicator {name!r}; available: {', '.join(sorted(REGISTRY))}") from None
