"""Theory checks for FBN-NAS Theorem 1 (BN-only NTK) -- kept apart from ``fbnas_jax``.

Importing ``theory`` is cheap; neural-tangents is only imported (through
``theory.nt_compat``) by the submodules that need it: ``theory.gaussian``
(lazily), ``theory.empirical``, ``theory.dynamics`` and ``theory.cli``
commands.  Computations are in float64: entry points wrap themselves in
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
