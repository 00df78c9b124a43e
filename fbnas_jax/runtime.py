"""Process-level JAX settings that entry points (CLI, tests, benchmarks) opt into.

Nothing here runs at import time of :mod:`fbnas_jax`; call :func:`setup` from an entry point.
"""
from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Persist XLA executables on disk, keyed by the compiled program.

    XLA:CPU takes 5-20 s to compile one supernet train step; with the cache a second run (a
    resumed job, the next test, the demo after the tests) loads it in well under a second.
    Set ``FBNAS_COMPILATION_CACHE=0`` to disable.
    """
    if os.environ.get("FBNAS_COMPILATION_CACHE", "1") == "0":
        return None
    import jax

    from fbnas_jax.data.image_folder import default_cache_dir

    target = Path(path) if path is not None else default_cache_dir() / "xla"
    target.mkdir(parents=True, exist_ok=True)
    _backfill_access_times(target)
    jax.config.update("jax_compilation_cache_dir", str(target))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # Several processes share the cache (the parallel test workers, concurrent `fbnas` jobs).
    # Without a size limit JAX writes an entry in place, unlocked, so a second process can read
    # it half-written (a warning, then a recompile); with one, every read and write holds a
    # file lock. The limit is far above what the project's programs fill (tens of MB), so
    # nothing is evicted in practice. `filelock` is a dependency of the package; a run from
    # the repository without an install (the GPU device script) may lack it and then keeps
    # JAX's unlocked cache: one process at a time.
    if importlib.util.find_spec("filelock") is not None:
        jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_MAX_BYTES)
    return target


COMPILATION_CACHE_MAX_BYTES = 8 << 30


def _backfill_access_times(cache_dir: Path) -> None:
    """Give every entry written without a size limit the access-time file JAX's eviction reads.

    With a limit, JAX reads ``<key>-atime`` of every ``<key>-cache`` before each write and fails
    the write if one is missing (entries of an unlimited cache have none).
    """
    stamp = time.time_ns().to_bytes(8, "little")
    for entry in cache_dir.glob("*-cache"):
        atime = entry.with_name(entry.name.removesuffix("-cache") + "-atime")
        if not atime.exists():
            atime.write_bytes(stamp)


def cpu_devices_per_core(n: int | None = None) -> int:
    """Expose the CPU as ``n`` JAX devices, by default one per core this process may run on.

    The scoring engine's ``map`` execution runs one architecture at a time per device; its
    small per-architecture programs keep one core busy, not two, with XLA's intra-op threads
    alone. With one device per core, a chunk's architectures are split over the cores
    (``fbnas score --devices cores``). Must precede JAX's backend start (the first
    ``jax.devices()``); raises ``RuntimeError`` if the CPU backend already runs with another
    device count. Returns ``n``.
    """
    import jax
    from jax._src import xla_bridge

    if not n:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = int(n)
    if n < 1:
        raise ValueError(f"cpu device count must be >= 1, got {n}")
    if xla_bridge.backends_are_initialized():
        if len(jax.devices("cpu")) == n:
            return n
        raise RuntimeError(f"JAX already started with {len(jax.devices('cpu'))} CPU device(s); one per core "
                           f"({n}) must be set before the first use of JAX in this process")
    jax.config.update("jax_num_cpu_devices", n)
    return n


def device_summary() -> dict[str, str]:
    """Backend, device kind and JAX version, for result sidecars."""
    import jax

    dev = jax.devices()[0]
    return {"backend": jax.default_backend(), "device": getattr(dev, "device_kind", str(dev)),
            "device_count": str(jax.device_count()), "jax": jax.__version__}


def no_space_error(err: BaseException | None) -> OSError | None:
    """The "no space left on device" error in ``err``'s chain of causes, if any.

    Libraries (orbax, tensorstore) wrap the ``OSError`` in their own exceptions, sometimes
    keeping only its message; both are recognised.
    """
    import errno

    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return err
        if "No space left on device" in str(err):
            return OSError(errno.ENOSPC, "No space left on device")
        err = err.__cause__ or err.__context__
    return None
