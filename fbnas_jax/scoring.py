"""The scoring engine: many architectures x many indicators, jit-compiled once per indicator.

``score_architectures(ctx, ["gamma", "cpi"], encodings)`` builds each indicator's score
function (see :mod:`fbnas_jax.indicators.base`), jit-compiles it **once** for a fixed chunk
shape, and runs it over the encodings in chunks (the last chunk padded to full size, so there
is one compilation). Composite (rank-based) indicators are computed afterwards from their
components, which are scored even when not requested (and returned too).

State as arguments: when a builder returns ``functools.partial(f, *arrays)`` (positional
arguments only), the engine jit-compiles ``f`` and passes the arrays as real arguments, so
large parameter trees / image batches are not baked into the compiled program as constants
(slow to compile, duplicated in memory). Any other callable is jit-compiled as a closure.

Execution, precision, shared passes: :mod:`fbnas_jax.engine` (``execution="auto"`` picks
per backend: per-architecture ``lax.map`` with only the chosen ops on CPU, one vmapped launch
of the chunk on GPUs; indicators that need the same forward/backward share one).

Devices: ``devices="all"`` with several local devices shards every chunk's architecture axis
over a 1-D mesh ``('arch',)`` (state replicated); the chunk size is rounded up to a multiple
of the device count. Under ``map`` execution each device loops over its own slice
(``shard_map``), so on a CPU exposed as one device per core
(:func:`fbnas_jax.runtime.cpu_devices_per_core`, ``fbnas score --devices cores``) the cores
score different architectures at once. Scores are identical to the single-device run (a test
checks this with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``).

NaN: an architecture whose score is NaN is reported (a :class:`ScoringWarning` giving the count
and the first architectures) and its composite scores are NaN -- never silently ranked.
``-inf`` (e.g. a singular NASWOT kernel) is a legitimate worst score and is not reported.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from fbnas_jax import engine
from fbnas_jax import indicators as _indicators  # noqa: F401  (registers every indicator)
from fbnas_jax.indicators import base
from fbnas_jax.indicators.supernet import DEFAULT_OPTIONS, cpi_from_scores
from fbnas_jax.models import routing
from fbnas_jax.spaces import of_network


class ScoringWarning(UserWarning):
    pass


class CheckpointMismatchError(ValueError):
    """The checkpoint is not what the command expected (space, BN mode, a supernet)."""


class DataMismatchError(ValueError):
    """The dataset does not fit the network of the checkpoint (image shape, classes)."""


# --------------------------------------------------------------------------- context

def check_run(run, *, expect_bn_mode: str | None = None, expect_space: str | None = None) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``run`` is a supernet of the expected kind."""
    m = run.config.model
    if expect_space is not None and m.space != expect_space:
        raise CheckpointMismatchError(
            f"checkpoint is a {m.space!r} supernet but {expect_space!r} was requested")
    if expect_bn_mode is not None and m.bn_mode != expect_bn_mode:
        raise CheckpointMismatchError(
            f"checkpoint was trained with bn_mode={m.bn_mode!r} but bn_mode={expect_bn_mode!r} was requested "
            f"(--expect-bn-mode); score the matching checkpoint or drop the expectation")
    if getattr(run.net, "arch", None) is not None:
        raise CheckpointMismatchError(
            f"checkpoint holds a stand-alone network ({m.arch}), not a supernet; supernet indicators "
            "need a checkpoint of `fbnas train-supernet`")


def check_dataset(run, dataset) -> None:
    if tuple(dataset.image_shape) != tuple(run.input_shape):
        raise DataMismatchError(
            f"dataset {dataset.name!r} has images of shape {tuple(dataset.image_shape)} but the checkpoint's "
            f"network was trained on {tuple(run.input_shape)}; pass matching data (--data)")
    if dataset.num_classes != run.num_classes:
        raise DataMismatchError(
            f"dataset {dataset.name!r} has {dataset.num_classes} classes but the checkpoint's head has "
            f"{run.num_classes}")


def make_context(run, dataset, *, eval_batch_size: int = DEFAULT_OPTIONS["eval_batch_size"],
                 mc_samples: int = DEFAULT_OPTIONS["mc_samples"],
                 mc_batch_size: int = DEFAULT_OPTIONS["mc_batch_size"], seed: int = 0,
                 eval_split: str = "train", fresh_init: bool = False) -> base.ScoringContext:
    """A :class:`ScoringContext` for a loaded supernet run (``training.loop.load_run``).

    The evaluation batch is ``eval_batch_size`` images of ``eval_split`` ("train" by default:
    no test image influences a search) drawn with ``seed``; the ``mc_samples`` Monte-Carlo
    mini-batches of ``mc_batch_size`` training images are drawn from the other training
    images (with replacement only if too few). Images are normalised like in training, never
    augmented. ``fresh_init`` also adds a freshly initialised supernet (training-free
    baselines). ``dataset=None`` gives a context without images, enough for the indicators
    that read only the BN parameters (``gamma``, ``trainability``) or the encoding.
    """
    from fbnas_jax.data import normalize

    if dataset is None:
        init_variables = None
        if fresh_init:
            init_variables = of_network(run.net).network().init_variables(
                run.net, jax.random.key(seed, impl="rbg"), run.input_shape)
        return base.ScoringContext(net=run.net, variables=run.variables, init_variables=init_variables,
                                   key=jax.random.key(seed), options={"seed": int(seed), "dataset": None})
    check_dataset(run, dataset)
    if eval_split not in ("train", "test"):
        raise ValueError(f"eval_split must be 'train' or 'test', got {eval_split!r}")
    for name, v in (("eval_batch_size", eval_batch_size), ("mc_samples", mc_samples),
                    ("mc_batch_size", mc_batch_size)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    rng = np.random.default_rng([int(seed), 0x5C0E])
    src_x = dataset.train_images if eval_split == "train" else dataset.test_images
    src_y = dataset.train_labels if eval_split == "train" else dataset.test_labels
    if eval_batch_size > src_x.shape[0]:
        raise ValueError(f"eval_batch_size={eval_batch_size} exceeds the {src_x.shape[0]} {eval_split} images")
    perm = rng.permutation(src_x.shape[0])
    ev = np.sort(perm[:eval_batch_size])
    pool = perm[eval_batch_size:] if eval_split == "train" else rng.permutation(dataset.num_train)
    need = mc_samples * mc_batch_size
    mc_idx = (pool[:need] if pool.size >= need else rng.choice(dataset.num_train, need, replace=True))
    mc_idx = mc_idx.reshape(mc_samples, mc_batch_size)
    images = normalize(src_x[ev], dataset.mean, dataset.std)
    train_images = normalize(dataset.train_images[mc_idx.reshape(-1)], dataset.mean, dataset.std)
    train_images = train_images.reshape((mc_samples, mc_batch_size) + train_images.shape[1:])
    init_variables = None
    if fresh_init:
        init_variables = of_network(run.net).network().init_variables(
            run.net, jax.random.key(seed, impl="rbg"), run.input_shape)
    options = {"eval_batch_size": int(eval_batch_size), "mc_samples": int(mc_samples),
               "mc_batch_size": int(mc_batch_size), "seed": int(seed), "eval_split": eval_split,
               "dataset": dataset.name}
    return base.ScoringContext(net=run.net, variables=run.variables, init_variables=init_variables,
                               images=images, labels=np.asarray(src_y[ev], np.int32),
                               train_images=train_images, key=jax.random.key(seed), options=options)


# --------------------------------------------------------------------------- engine

@dataclasses.dataclass
class ScoreResult:
    """``scores[name]``: float array (n,); ``timings[name]``: seconds (build, compile, run, archs/s)."""

    scores: dict[str, np.ndarray]
    timings: dict[str, dict[str, float]]
    nan_archs: dict[str, list[int]]
    devices: list[str]
    chunk_size: int

    def __getitem__(self, name: str) -> np.ndarray:
        return self.scores[name]

    def __contains__(self, name: str) -> bool:
        return name in self.scores

    def keys(self):
        return self.scores.keys()


def available(ctx: base.ScoringContext) -> list[str]:
    """Registered indicators whose needs ``ctx`` satisfies (composites: whose components are)."""
    space = of_network(ctx.net).name if ctx.net is not None else None
    ok = [n for n, ind in base.REGISTRY.items()
          if ind.family != "composite" and all(getattr(ctx, f, None) is not None for f in ind.needs)
          and (not ind.spaces or space in ind.spaces)]
    ok += [n for n, ind in base.REGISTRY.items()
           if ind.family == "composite" and all(c in ok for c in ind.components)]
    return ok


def resolve_indicators(ctx: base.ScoringContext, names: Sequence[str] | str) -> list[str]:
    """Validated names in order; ``"all"`` = :func:`available`. Composites' components are appended."""
    if isinstance(names, str):
        names = available(ctx) if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    names = list(dict.fromkeys(names))
    if not names:
        raise ValueError("no indicators requested")
    for n in names:
        ind = base.get(n)  # UnknownIndicatorError lists what exists
        leaves = ind.components if ind.family == "composite" else (n,)
        for leaf in leaves:
            missing = [f for f in base.get(leaf).needs if getattr(ctx, f, None) is None]
            if missing:
                raise ValueError(f"indicator {leaf!r} needs {missing} in the scoring context, which are not set")
    out = list(names)
    for n in names:
        for c in base.get(n).components:
            if c not in out:
                out.append(c)
    return out


def _mesh_devices(devices) -> list:
    if devices is None:
        return [jax.local_devices()[0]]
    if devices == "all":
        return list(jax.local_devices())
    return list(devices)


def _run_chunks(run, enc: np.ndarray, chunk: int, *, desc: str = "", progress: bool = False,
                on_first_chunk=None, pack=None) -> dict[str, np.ndarray]:
    """``run`` over ``enc`` in chunks of exactly ``chunk`` rows (the last one padded with
    copies of the first architecture: a valid encoding of any space); ``{name: (n,)}``.

    ``pack`` (routed jobs, :attr:`fbnas_jax.engine.Compiled.pack`): ``enc -> (chunks, order)``
    arranges the architectures into chunks itself (padding slots: ``order == -1``).
    ``on_first_chunk(seconds)`` is called once the first chunk is done (time estimates)."""
    n = enc.shape[0]
    if pack is not None:
        chunks, order = pack(enc)
    else:
        n_chunks = -(-n // chunk)
        padded = np.concatenate([enc, np.repeat(enc[:1], n_chunks * chunk - n, axis=0)]) if n else enc
        chunks = padded.reshape((n_chunks, chunk) + enc.shape[1:])
        order = np.concatenate([np.arange(n), np.full(n_chunks * chunk - n, -1)])
    outs = []
    for i in tqdm(range(len(chunks)), desc=desc, unit="chunk", disable=not progress, leave=False):
        t0 = time.perf_counter()
        outs.append(run(chunks[i]))  # host scores (Compiled.run fetches and finishes)
        if i == 0 and on_first_chunk is not None:
            on_first_chunk(time.perf_counter() - t0)
    if not outs:
        return {}
    keep = order >= 0
    out = {}
    for k in outs[0]:
        vals = np.concatenate([np.asarray(o[k], np.float64).reshape(-1) for o in outs])
        res = np.empty(n, np.float64)
        res[order[keep]] = vals[keep]
        out[k] = res
    return out


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _estimate(log, name: str, n: int, chunk: int, platform: str):
    """``on_first_chunk`` hook: log the expected time of ``n`` architectures from the first chunk."""
    def report(seconds: float) -> None:
        rate = chunk / max(seconds, 1e-9)
        total = n / rate
        advice = "; use --archs N (a random subset) or a GPU" if total > 600 else ""
        log(f"{name}: {n:,} archs at ~{rate:.3g} archs/s on {platform}: about {_duration(total)}{advice}")
    return report


class Scorer:
    """Per-indicator scorers compiled once and reused across calls (search loops).

    ``scorer("gamma", encodings)`` -> float64 scores. :func:`score_architectures` compiles
    per call (its chunk fits the request); a search scores ~50 new architectures per
    generation and must not recompile each time. Composite indicators are not per-arch:
    search them with :class:`fbnas_jax.search.ReferenceRankObjective` over components.
    ``execution`` / ``precision``: see :mod:`fbnas_jax.engine`.
    """

    def __init__(self, ctx: base.ScoringContext, *, chunk_size: int = 64, devices=None, log=None,
                 progress: bool = False, execution: str = "auto", precision: str = "float32"):
        self.ctx, self.devs = ctx, _mesh_devices(devices)
        self.chunk = _round_up(chunk_size, len(self.devs))
        self.execution, self.precision = engine.resolve_execution(execution), engine.check_precision(precision)
        self._runs: dict[str, engine.Compiled] = {}
        self.log, self.progress = log, progress  # hooks: compile / estimate lines, chunk bars
        self._estimated: set[str] = set()

    def __call__(self, name: str, encodings) -> np.ndarray:
        ind = base.get(name)
        if ind.family == "composite":
            raise ValueError(f"{name!r} is rank-based: score its components {ind.components} instead")
        space = of_network(self.ctx.net)
        if name not in self._runs:
            resolve_indicators(self.ctx, [name])  # clear error if the context lacks what it needs
            if self.log is not None:
                self.log(f"{name}: compiling (XLA, chunks of {self.chunk} architectures) ...")
            job = engine.plan(self.ctx, [name], execution=self.execution, precision=self.precision)[0]
            self._runs[name] = engine.compile_fitting(self.ctx, job, self.chunk, self.devs, space.encoding_shape,
                                                      log=self.log)
        enc = space.validate_batch(encodings)
        chunk = self._runs[name].chunk  # smaller than self.chunk where the device memory asked for it
        many = len(enc) > chunk  # a long call (a reference set): a bar, and an estimate once
        hook = None
        if many and self.log is not None and ind.per_arch_cost != "table" and name not in self._estimated:
            self._estimated.add(name)
            hook = _estimate(self.log, name, len(enc), chunk, self.devs[0].platform)
        return _run_chunks(self._runs[name].run, enc, chunk, desc=name, progress=self.progress and many,
                           on_first_chunk=hook, pack=self._runs[name].pack)[name]


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def score_architectures(ctx: base.ScoringContext, indicators: Sequence[str] | str, encodings,
                        *, chunk_size: int = 256, devices=None, progress: bool = True,
                        execution: str = "auto", precision: str = "float32", share: bool = True,
                        log=None) -> ScoreResult:
    """Score ``encodings`` ``(n, *encoding_shape)`` of the supernet's space with every
    indicator; see the module docstring.

    ``chunk_size``: architectures per compiled call for forward-based indicators
    ("table" indicators take all n in one call). ``devices``: None (first local device),
    ``"all"`` or a list of devices. ``execution`` ("auto" | "vmap" | "map" | "loop" | "route"),
    ``precision`` ("float32" | "bfloat16") and ``share`` (one pass for indicators that can
    share it): see :mod:`fbnas_jax.engine`; the scores do not depend on them (bf16: ranks).
    ``log(message)``, when given, hears what is coming: a line before each compilation and,
    after the first chunk, the expected time.
    """
    space = of_network(ctx.net)
    enc = space.validate_batch(encodings)
    n = enc.shape[0]
    names = resolve_indicators(ctx, indicators)
    devs = _mesh_devices(devices)
    nd = len(devs)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    scores: dict[str, np.ndarray] = {}
    timings: dict[str, dict[str, float]] = {}
    per_arch = [nm for nm in names if base.get(nm).family != "composite"]
    composites = [nm for nm in names if base.get(nm).family == "composite"]
    used_chunk = chunk_size
    for job in engine.plan(ctx, per_arch, execution=execution, precision=precision, share=share):
        table = all(base.get(nm).per_arch_cost == "table" for nm in job.names)
        chunk = _round_up(max(n, 1) if table else min(chunk_size, max(n, 1)), nd)
        if not table:
            used_chunk = chunk
        if job.execution == "route" and job.route_cap is None and not table:
            # whole cosets (e.g. the whole space in chunks of 125): every op fills exactly chunk/5 slots
            job = dataclasses.replace(job, route_cap=routing.balanced_capacity(enc, chunk // nd))
        if log is not None:
            log(f"{job.label}: compiling (XLA, chunks of {chunk} architectures, {job.execution}) ...")
        compiled = engine.compile_fitting(ctx, job, chunk, devs, space.encoding_shape, log=log)
        if compiled.chunk != chunk:  # the device memory asked for a smaller chunk
            chunk = compiled.chunk
            if not table:
                used_chunk = chunk
        hook = _estimate(log, job.label, n, chunk, devs[0].platform) if log is not None and not table else None
        t0 = time.perf_counter()
        vals = _run_chunks(compiled.run, enc, chunk, desc=job.label, progress=progress, on_first_chunk=hook,
                           pack=compiled.pack)
        run_s = time.perf_counter() - t0
        for nm in job.names:
            scores[nm] = vals[nm] if n else np.zeros(0)
            timings[nm] = {"compile_s": compiled.compile_s, "run_s": run_s,
                           "archs_per_s": n / run_s if run_s > 0 else float("inf"), "chunk_size": chunk,
                           "execution": job.execution if not table else "table", "precision": job.precision,
                           "job": job.label, "memory_mb": compiled.memory_mb, "route_cap": compiled.cap}
    for nm in composites:
        t0 = time.perf_counter()
        scores[nm] = cpi_from_scores(scores, base.get(nm).components)
        timings[nm] = {"run_s": time.perf_counter() - t0}
    nan_archs = {}
    for nm, v in scores.items():
        bad = np.flatnonzero(np.isnan(v))
        if bad.size:
            nan_archs[nm] = bad.tolist()
            first = ", ".join(space.to_string(enc[i]) for i in bad[:3])
            warnings.warn(f"{nm}: {bad.size} of {n} architectures scored NaN (not ranked), first: {first}",
                          ScoringWarning, stacklevel=2)
    ordered = {nm: scores[nm] for nm in names}
    return ScoreResult(ordered, timings, nan_archs, [str(d) for d in devs], used_chunk)
