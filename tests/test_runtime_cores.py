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
