"""How the scoring engine executes indicators: which pass, which strategy, which precision.

:mod:`fbnas_jax.scoring` decides *what* to score; this module decides *how*:

Jobs (one compiled program each)
    Requested per-architecture indicators that belong to the same :class:`~fbnas_jax.
    indicators.base.Group` and agree on their options (batch) become one job computing all of
    them from one forward/backward (e.g. snip, grad_norm, fisher, grasp from one
    cross-entropy gradient; expressivity and supernet_accuracy from one forward). Every
    other indicator is a job of its own.

Execution (``execution=``)
    ``"vmap"``: the chunk of architectures in one vmapped launch; the supernet computes every
    op (``strategy="select"``), ~5x the work of the subnet, paid back by parallel hardware.
    ``"map"``: ``lax.map`` over the chunk inside one program, the supernet running only the
    chosen ops (``strategy="switch"``). ``"loop"``: the same per-architecture program
    compiled once, called from Python per architecture (no XLA ``while`` loop).
    ``"route"`` (NB201 supernet; expressivity, supernet_accuracy, supernet_neg_loss,
    uncertainty, plus the BN-table gamma/trainability -- i.e. CPI --, and the gradient proxies
    snip, grad_norm, grasp, ntk_cond, :mod:`fbnas_jax.indicators.routed_grads`, whose
    per-architecture weight gradients come from per-slot parameter copies): the chunk in one
    launch computing each op only for the architectures that chose it (mixture-of-experts style,
    :mod:`fbnas_jax.models.nb201_routed`): the subnets' FLOPs in vmap's large launches, the stem
    once per chunk (per architecture for the gradient proxies). The host packs the architectures
    into chunks in which no op of an edge is chosen by more than ``cap`` of them
    (:mod:`fbnas_jax.models.routing`: whole cosets of a subgroup of Z_5^6 -- e.g. the whole
    space in chunks of 125 -- are perfectly balanced, ``cap = chunk / 5``; other lists are
    packed first-fit under ``cap ~ 1.2 chunk / 5``) and checks every chunk before its launch;
    scores come back in the caller's order.
    Several devices: each runs its own routed chunk. Other indicators: a clear error.
    ``"auto"``: :data:`DEFAULT_EXECUTION` for the backend, measured by
    ``benchmarks/vs_pytorch.py`` (``--execution``; CPI by execution:
    ``benchmarks/route_cpi.py``). Every execution gives the same scores
    (``tests/test_execution.py``, ``tests/test_routing.py``).

Host steps
    Indicators whose score ends in float64 linear algebra (naswot / expressivity log-det,
    jacob_cov and ntk_cond eigenvalues, TEG's kernel regression, the cost models) compile
    only the device part, returning small intermediates (a (B, B) matrix per architecture);
    :func:`job_finish` fetches each chunk and applies the indicators' NumPy ``finish`` on the
    host. No program calls back into Python (``jax.pure_callback`` copies its operands to
    ``cpu:0``: with several CPU devices side by side that deadlocked), so every job runs on
    every device it is given.

Precision (``precision=``)
    ``"bfloat16"`` runs convolutions and the head in bfloat16 (BatchNorm, losses and the
    host linear algebra stay float32/float64) for the indicators of :data:`BF16_SAFE`: those
    whose fp32 and bf16 scores rank-agree (Kendall tau >= 0.98, :func:`precision_agreement`;
    ``benchmarks/bf16_ranks.py`` on 64 architectures, ``tests/test_precision.py`` on 16).
    uncertainty, the cost of CPI, joined on tau 0.997 (CPU) and 0.998 (H200) over 64
    architectures at C=8, N=1; C=16, N=5 is not measured yet.
    Every other indicator runs in float32 whatever is asked. snip and grad_norm kept the
    ranking too (tau 1.0, 16 architectures, C=4) but are left out until a test covers them
    within the CI budget (compiling their shared backward twice costs minutes on CPU). Left
    out on purpose: grasp
    (bf16 moves its values by up to 16x relative: a Hessian-gradient product of near-
    cancelling terms), ntk_cond (a condition number of a near-singular Gram matrix), jacob_cov, fisher,
    supernet_neg_loss (one discordant pair in 16 at test size), linear_regions (untested:
    every architecture saturated the count at test size) and supernet_accuracy (tau 1.0 at
    C=4 on CPU, but 0.969 on the H200 at C=8, N=1, 64 architectures: an accuracy over 64 images
    moves in steps of 1/64, and bf16 flips a few of them).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fbnas_jax.indicators import base
from fbnas_jax.models.execution import with_strategy

EXECUTIONS = ("vmap", "map", "loop", "route")
#: measured defaults per JAX backend (see the module doc); unknown backends vmap
DEFAULT_EXECUTION = {"cpu": "map", "gpu": "vmap", "cuda": "vmap", "rocm": "vmap", "tpu": "vmap"}
PRECISIONS = ("float32", "bfloat16")
#: indicators whose bf16 scores keep the fp32 ranking (see the module doc for how and which not)
BF16_SAFE = frozenset({"naswot", "synflow", "expressivity", "uncertainty"})


def resolve_execution(execution: str | None = "auto") -> str:
    if execution in (None, "auto"):
        return DEFAULT_EXECUTION.get(jax.default_backend(), "vmap")
    if execution not in EXECUTIONS:
        raise ValueError(f"execution must be 'auto' or one of {EXECUTIONS}, got {execution!r}")
    return execution


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


@dataclasses.dataclass(frozen=True)
class Job:
    """Indicators computed by one compiled program."""

    names: tuple[str, ...]
    group: str | None = None  # set when several indicators share one pass
    execution: str = "vmap"  # for per-architecture jobs; table jobs are always chunk functions
    precision: str = "float32"
    #: ``execution="route"``: slots per (edge, op) in a chunk (None: ``routing.default_capacity``)
    route_cap: int | None = None

    @property
    def label(self) -> str:
        return "+".join(self.names)


def plan(ctx: base.ScoringContext, names: Sequence[str], *, execution: str = "auto",
         precision: str = "float32", share: bool = True) -> list[Job]:
    """Jobs for the (non-composite) indicators ``names``, in request order."""
    execution = resolve_execution(execution)
    check_precision(precision)
    if execution == "route":
        from fbnas_jax.indicators.routed import check_routable

        check_routable(ctx, [n for n in names if base.get(n).per_arch])
    jobs, done = [], set()
    for name in names:
        if name in done:
            continue
        ind = base.get(name)
        members = (name,)
        if share and ind.per_arch and ind.group is not None:
            group = base.GROUPS[ind.group]
            key = group.key(ctx, name)
            members = tuple(n for n in names if n in group.members and n not in done
                            and base.get(n).group == ind.group and group.key(ctx, n) == key)
        prec = precision if all(n in BF16_SAFE for n in members) else "float32"
        if len(members) > 1 and precision != "float32" and prec == "float32":
            members = (name,)  # keep bf16 for the safe ones: do not share with an unsafe one
            prec = precision if name in BF16_SAFE else "float32"
        jobs.append(Job(members, ind.group if len(members) > 1 else None,
                        execution if ind.per_arch else "vmap", prec))
        done.update(members)
    return jobs


def job_context(ctx: base.ScoringContext, job: Job) -> base.ScoringContext:
    """``ctx`` with its network set to the job's execution strategy and precision."""
    net = with_strategy(ctx.net, "select" if job.execution in ("vmap", "route") else "switch")
    if job.precision != "float32" and hasattr(net, "compute_dtype"):
        net = net.clone(compute_dtype=job.precision)
    return dataclasses.replace(ctx, net=net) if net is not ctx.net else ctx


def build_job(ctx: base.ScoringContext, job: Job) -> Callable:
    """The job's function: per-architecture (``map``/``loop``/``vmap`` of per-arch
    indicators, returning ``{name: score}``) or a chunk function (table indicators)."""
    jctx = job_context(ctx, job)
    if job.group is not None:
        return base.GROUPS[job.group].build(jctx, job.names)
    ind = base.get(job.names[0])
    if not ind.per_arch:
        return ind.build(jctx)
    return ind.build_arch(jctx)


@dataclasses.dataclass
class Compiled:
    """A compiled job: ``run(encodings chunk) -> {name: (chunk,) scores}`` on the host (NumPy),
    i.e. ``finish(launch(chunk))``: ``launch`` runs the compiled program (asynchronously, its
    device outputs: scores or intermediates such as NASWOT kernels), ``finish`` fetches them
    and applies each indicator's host step (:meth:`~fbnas_jax.indicators.base.Indicator.finish_fn`)."""

    run: Callable[[np.ndarray], dict[str, Any]]
    compile_s: float
    memory_mb: float | None
    chunk: int
    launch: Callable[[np.ndarray], Any] | None = None
    finish: Callable[[Any], dict[str, np.ndarray]] | None = None
    #: routed jobs: ``encodings (n, 6) -> (chunks (m, chunk, 6), order (m * chunk,))``, the
    #: architectures packed under the capacity (:func:`fbnas_jax.models.routing.pack_chunks`);
    #: None: any consecutive chunk will do
    pack: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    cap: int | None = None  # routed jobs: slots per (edge, op)
    #: the XLA executable (``cost_analysis()``, ``memory_analysis()``): one chunk, or under
    #: ``loop`` one architecture
    xla: Any = None


def _as_dict(job: Job, out) -> dict:
    return out if isinstance(out, dict) else {job.names[0]: out}


def job_finish(ctx: base.ScoringContext, job: Job) -> Callable[[Any], dict[str, np.ndarray]]:
    """Device outputs of ``job`` for a chunk -> ``{name: scores (chunk,)}`` on the host.

    Fetches them (``jax.device_get``) and applies each member's host step (float64 log-det,
    eigenvalues, ...: ``Indicator.finish``), so no compiled program calls back into Python and
    several devices (one per CPU core) can run any job side by side."""
    steps = {name: base.get(name).finish_fn(ctx) for name in job.names}

    def finish(out) -> dict[str, np.ndarray]:
        out = jax.device_get(_as_dict(job, out))
        return {k: np.asarray(steps[k](v)) for k, v in out.items()}

    return finish


def _memory_mb(compiled) -> float | None:
    try:
        m = compiled.memory_analysis()
        total = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
        return float(total) / 2**20
    except Exception:  # noqa: BLE001  (not every backend reports it)
        return None


def compile_job(ctx: base.ScoringContext, job: Job, chunk: int, devs: list,
                encoding_shape: tuple[int, ...], encoding_dtype: Any = jnp.int32) -> Compiled:
    """Build and compile ``job`` for chunks of ``chunk`` architectures on ``devs``.

    ``encoding_shape``/``encoding_dtype``: one architecture input, e.g. NB201's ``(6,)``
    int32 encoding or its ``(6, 5)`` float32 op weights (mixed edges: every op with a
    non-zero weight runs, whatever the execution)."""
    t0 = time.perf_counter()
    finish = job_finish(ctx, job)
    ind = base.get(job.names[0])
    per_arch = ind.per_arch or job.group is not None
    if per_arch and job.execution == "route":
        return _compile_routed(ctx, job, chunk, devs, encoding_shape, encoding_dtype, finish, t0)
    fn = build_job(ctx, job)
    if per_arch and job.execution == "loop" and len(devs) == 1:
        f, state = base.split_state(fn)
        compiled, state, place = _lower(f, state, jax.ShapeDtypeStruct(tuple(encoding_shape), encoding_dtype), devs)

        def launch(enc):
            outs = [compiled(*state, place(e)) for e in enc]
            return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
    else:
        mapped = per_arch and job.execution != "vmap"
        if per_arch:
            fn = base.vectorize(fn, "map" if mapped else "vmap")
        f, state = base.split_state(fn)
        enc_struct = jax.ShapeDtypeStruct((chunk,) + tuple(encoding_shape), encoding_dtype)
        compiled, state, place = _lower(f, state, enc_struct, devs, sharded=True, per_device=mapped)

        def launch(enc):
            return compiled(*state, place(enc))
    return Compiled(lambda enc: finish(launch(enc)), time.perf_counter() - t0, _memory_mb(compiled), chunk,
                    launch, finish, xla=compiled)


def _compile_routed(ctx, job: Job, chunk: int, devs: list, encoding_shape, encoding_dtype, finish, t0) -> Compiled:
    """:func:`compile_job` of a routed job: one program for a chunk of ``chunk`` architectures
    packed under ``cap`` slots per (edge, op); the host checks every chunk before its launch.
    With several devices each runs its own routed chunk of ``chunk / len(devs)`` architectures
    (``shard_map``: the routing gathers stay on one device)."""
    from fbnas_jax.indicators import routed
    from fbnas_jax.models import routing

    if tuple(encoding_shape) != (routing.NUM_EDGES,):
        raise ValueError(f"execution='route' takes integer NB201 encodings ({routing.NUM_EDGES},), "
                         f"not inputs of shape {tuple(encoding_shape)} (mixed edges: use 'vmap')")
    nd = len(devs)
    if chunk % nd:
        raise ValueError(f"execution='route': chunk {chunk} is not a multiple of the {nd} devices")
    local = chunk // nd
    cap = int(min(local, job.route_cap or routing.default_capacity(local)))
    f, state = base.split_state(routed.build(job_context(ctx, job), job.names, cap))
    enc_struct = jax.ShapeDtypeStruct((chunk,) + tuple(encoding_shape), encoding_dtype)
    compiled, state, place = _lower(f, state, enc_struct, devs, sharded=True, per_device=True)

    def launch(enc):
        for part in np.asarray(enc).reshape(nd, local, -1):
            routing.check_chunk(part, cap)  # overflow would silently drop architectures: refuse it
        return compiled(*state, place(enc))

    def pack(enc):
        chunks, order = routing.pack_chunks(enc, local, cap)
        extra = -len(chunks) % nd  # whole launches: idle devices get chunks of padding
        chunks = np.concatenate([chunks, np.full((extra, local, routing.NUM_EDGES), routing.PAD, np.int32)])
        order = np.concatenate([order, np.full(extra * local, -1, order.dtype)])
        return chunks.reshape(-1, chunk, routing.NUM_EDGES), order

    return Compiled(lambda enc: finish(launch(enc)), time.perf_counter() - t0, _memory_mb(compiled), chunk,
                    launch, finish, pack=pack, cap=cap, xla=compiled)


def precision_agreement(ctx: base.ScoringContext, names: Sequence[str], encodings, *,
                        precision: str = "bfloat16", execution: str = "auto", chunk: int | None = None,
                        share: bool = True) -> dict[str, dict[str, Any]]:
    """Kendall tau between the float32 and ``precision`` scores of ``encodings``, per indicator.

    How :data:`BF16_SAFE` is decided: each job of ``names`` (per-architecture indicators) is
    compiled twice, in float32 and in ``precision`` (bypassing :data:`BF16_SAFE`), and run on
    the same architectures. ``-inf`` scores (degenerate architectures) rank lowest; pairs with
    a NaN on either side are left out. Returns ``{name: {"tau", "max_rel_diff", "n"}}``.
    """
    from scipy.stats import kendalltau

    check_precision(precision)
    enc = np.asarray(encodings)
    chunk = int(chunk or len(enc))
    if len(enc) % chunk:
        raise ValueError(f"precision_agreement: {len(enc)} architectures are not a multiple of chunk={chunk}")
    devs = [jax.local_devices()[0]]
    out = {}
    for job in plan(ctx, names, execution=execution, precision="float32", share=share):
        scores = []
        for prec in ("float32", precision):
            comp = compile_job(ctx, dataclasses.replace(job, precision=prec), chunk, devs, enc.shape[1:], enc.dtype)
            if comp.pack is not None:  # routed: the architectures packed under the capacity
                from fbnas_jax.models.routing import unpack

                packed, order = comp.pack(enc)
                parts = [comp.run(c) for c in packed]
                scores.append({k: unpack(np.concatenate([np.asarray(p[k], np.float64) for p in parts]), order,
                                         len(enc)) for k in parts[0]})
                continue
            parts = [comp.run(enc[i:i + chunk]) for i in range(0, len(enc), chunk)]
            scores.append({k: np.concatenate([np.asarray(p[k], np.float64) for p in parts]) for k in parts[0]})
        for name in job.names:
            a, b = scores[0][name], scores[1][name]
            ok = ~(np.isnan(a) | np.isnan(b))
            fa, fb = (np.where(np.isneginf(x[ok]), -1e300, x[ok]) for x in (a, b))
            tau = float(kendalltau(fa, fb).statistic) if ok.sum() > 1 else float("nan")
            fin = ok & np.isfinite(a) & np.isfinite(b)
            rel = np.abs(a[fin] - b[fin]) / np.maximum(np.abs(a[fin]), 1e-12)
            out[name] = {"tau": tau, "max_rel_diff": float(rel.max()) if rel.size else float("nan"),
                         "n": int(ok.sum())}
    return out


def _lower(f, state, enc_struct, devs, sharded: bool = False, per_device: bool = False):
    """(compiled, state placed on devices, placement of encodings).

    ``per_device``: ``f`` is a ``lax.map`` over the architecture axis. A jit with that axis
    sharded does not split the loop's iterations (XLA's SPMD partitioner replicates the
    ``while`` loop: every device would run every architecture); ``shard_map`` gives each
    device its own slice to loop over, so several devices (e.g. CPU cores exposed with
    ``--xla_force_host_platform_device_count``) run architectures in parallel."""
    if len(devs) > 1 and sharded:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

        mesh = Mesh(np.asarray(devs), ("arch",))
        arch_sh, rep = NamedSharding(mesh, P("arch")), NamedSharding(mesh, P())
        state = jax.device_put(state, rep)
        if per_device:
            f = jax.shard_map(f, mesh=mesh, in_specs=(P(),) * len(state) + (P("arch"),), out_specs=P("arch"),
                              check_vma=False)
        jitted = jax.jit(f, in_shardings=(rep,) * len(state) + (arch_sh,), out_shardings=arch_sh)
        enc_struct = jax.ShapeDtypeStruct(enc_struct.shape, enc_struct.dtype, sharding=arch_sh)
        place = lambda e: jax.device_put(e, arch_sh)  # noqa: E731
    else:
        state = jax.device_put(state, devs[0])
        jitted = jax.jit(f)
        place = lambda e: jax.device_put(e, devs[0])  # noqa: E731
    structs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None)),
                           state)
    return jitted.lower(*structs, enc_struct).compile(), state, place


def memory_limit_mb(device) -> float | None:
    """Memory the chunk's program may take on ``device``: 90 % of what JAX's allocator may use
    there (``bytes_limit``: on a GPU, by default 75 % of the card), or None where the backend
    does not say (a CPU: host memory, not checked)."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001  (CPU backends raise or return None)
        return None
    limit = stats.get("bytes_limit")
    return 0.9 * limit / 2**20 if limit else None


def compile_fitting(ctx: base.ScoringContext, job: Job, chunk: int, devs: list, encoding_shape: tuple[int, ...],
                    encoding_dtype: Any = jnp.int32, *, limit_mb: float | None = None, log=None) -> Compiled:
    """:func:`compile_job` with the chunk halved until the compiled program's memory (XLA's
    own analysis: arguments, outputs and temporaries) fits ``limit_mb`` (default
    :func:`memory_limit_mb` of the first device; None: no check). Why: a vmapped chunk of a
    large supernet (C=16, N=5, per-sample gradients) can need more than a GPU holds, and an
    out-of-memory error only comes at run time, after the compilation; the analysis comes
    before any run. The chunk stays a multiple of ``len(devs)``. ``Compiled.chunk`` is the
    chunk used; ``Compiled.compile_s`` counts every compilation tried."""
    limit = memory_limit_mb(devs[0]) if limit_mb is None else limit_mb
    spent = 0.0
    while True:
        compiled = compile_job(ctx, job, chunk, devs, encoding_shape, encoding_dtype)
        spent += compiled.compile_s
        mem = compiled.memory_mb
        if limit is None or mem is None or mem <= limit or chunk <= len(devs):
            return dataclasses.replace(compiled, compile_s=spent)
        # straight to the chunk that the memory per architecture says fits (the estimate counts the
        # fixed arguments as per-architecture too, so it errs small): each try is a whole compilation
        fits = int(0.95 * limit / (mem / chunk))
        smaller = max(len(devs), min(chunk // 2, fits) // len(devs) * len(devs))
        if log is not None:
            log(f"{job.label}: chunk {chunk} needs {mem:.0f} MB > {limit:.0f} MB; recompiling for {smaller}")
        chunk = smaller
