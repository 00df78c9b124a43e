"""``fbnas_jax.runtime.cpu_devices_per_core`` (``fbnas score --devices cores``) once JAX runs."""
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
