"""``fbnas_jax.runtime.cpu_devices_per_core`` (``fbnas score --devices cores``) once JAX runs."""
import os

import jax
import pytest

from fbnas_jax.runtime import cpu_devices_per_core


def test_cpu_devices_per_core_after_start():
    n = len(jax.devices("cpu"))  # starts the backend
    assert cpu_devices_per_core(n) == n  # already so: nothing to do
    with pytest.raises(RuntimeError, match="already started with"):
        cpu_devices_per_core(n + 1)
    with pytest.raises(ValueError, match=">= 1"):
        cpu_devices_per_core(-1)


def test_score_devices_flag_once_jax_runs():
    """``fbnas score --devices``: 'auto' never fails once JAX runs (it keeps the devices there);
    'cores' with a different core count is a one-line usage error, not a crash."""
    from fbnas_jax.commands._common import UsageError
    from fbnas_jax.commands.score import resolve_devices

    n = len(jax.devices("cpu"))
    assert resolve_devices("one") is None
    assert resolve_devices("all") == "all"
    assert resolve_devices("auto") == ("all" if n > 1 else None)
    if n != len(os.sched_getaffinity(0)):
        with pytest.raises(UsageError, match="already started with"):
            resolve_devices("cores")
    else:
        assert resolve_devices("cores") == "all"


def test_host_callback_jobs_are_detected():
    """Jobs calling back into Python run on one CPU device (engine._has_host_callback: JAX's
    callback copies operands to cpu:0, which deadlocks when several CPU devices call back)."""
    import jax.numpy as jnp
    import numpy as np

    from fbnas_jax import engine

    enc = jax.ShapeDtypeStruct((4, 6), jnp.int32)

    def host(x):
        return jax.pure_callback(lambda a: np.asarray(a, np.float32) * 2, jax.ShapeDtypeStruct((), jnp.float32), x)

    with_cb = lambda w, e: jax.lax.map(lambda r: host(jnp.sum(r * w)), e)  # noqa: E731
    without = lambda w, e: jax.lax.map(lambda r: jnp.sum(r * w), e)  # noqa: E731
    w = jnp.ones((6,), jnp.int32)
    assert engine._has_host_callback(with_cb, (w,), enc)
    assert not engine._has_host_callback(without, (w,), enc)
