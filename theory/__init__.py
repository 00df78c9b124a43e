"""Theory checks for FBN-NAS Theorem 1 (BN-only NTK) -- kept apart from ``fbnas_jax``.

Layers, bottom up: ``duals`` (closed-form Gaussian expectations), ``kernel_limit``
(the derived limit for every case: batch / frozen / population BN statistics,
random gamma/beta, CNN mixing), ``limits`` (Eq. 4 and the population closed form),
``variants`` (the fair readings of Eq. 4, error measures); ``network`` / ``cnn``
(finite nets), ``empirical`` (neural-tangents empirical NTKs); ``check``,
``sweep``, ``studies``, ``dynamics`` (experiments), ``report`` (tables, figure),
``cli`` (``python -m theory.cli``; the parser lives in ``fbnas_jax.commands.theory``).

Importing ``theory`` is cheap; neural-tangents is only imported (through
``theory.nt_compat``, the only module that patches JAX names) by the submodules
that need it.  Computations are in float64: entry points wrap themselves in
``theory.x64()``.
"""
from __future__ import annotations

import contextlib

__all__ = ["x64"]


@contextlib.contextmanager
def x64():
    """Enable float64 for the duration of a theory computation and restore the old setting."""
    import jax

    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)
