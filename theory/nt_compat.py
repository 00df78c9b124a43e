"""Compatibility shim that makes neural-tangents 0.6.5 importable on current JAX.

This is the ONLY module in the repository that imports ``neural_tangents``.
Everything else uses :func:`load_neural_tangents` (or the module-level names
``nt``, ``stax``, ``predict``, ``empirical_ntk_fn``, ``NtkImplementation``).

Why it is needed
----------------
neural-tangents 0.6.5 (the newest release) was written against JAX 0.4.x.  On
JAX >= 0.7 several internal names it imports at module load time were removed
or moved, so ``import neural_tangents`` raises ``ImportError``.  It also
imports TensorFlow unconditionally (``neural_tangents.experimental`` re-exports
the TF port of the empirical NTK), which costs seconds and gigabytes for
nothing we use.

What is restored (before ``neural_tangents`` is imported) and why
-----------------------------------------------------------------
==========================================  =====================================================
restored name                               source / reason
==========================================  =====================================================
``jax.core.Jaxpr``                          ``jax.extend.core.Jaxpr``; imported by ``_src/empirical.py``
                                            and ``_src/utils/rules.py`` (structured-derivative rules).
``jax.core.JaxprEqn``                       ``jax.extend.core.JaxprEqn``; same modules.
``jax.core.Literal``                        ``jax.extend.core.Literal``; same modules.
``jax.core.Var``                            ``jax.extend.core.Var``; same modules.
``jax.core.Primitive``                      ``jax.extend.core.Primitive``; ``rules.py`` type annotations.
``jax.core.DShapedArray``                   removed from JAX (dynamic shapes are gone); a private
                                            dummy class so the ``type(a) is core.DShapedArray`` test
                                            in ``empirical.py`` is simply always False.
``jax.core.get_aval``                       ``jax._src.core.get_aval`` if present, else
                                            ``jax.typeof``; used only by the STRUCTURED_DERIVATIVES
                                            backward pass.
``jax.core.lattice_join``                   removed; restored as "equal avals join to themselves",
                                            used only by the STRUCTURED_DERIVATIVES backward pass.
``jax.util`` (module: ``safe_map``,         the public ``jax.util`` module was deleted; rebuilt from
``safe_zip``)                               ``jax._src.util`` and put in ``sys.modules``.
``jax.interpreters.ad.zeros_like_p``        primitive removed from JAX; ``rules.py`` registers
                                            structure/Jacobian rules keyed by it at import time.  A
                                            placeholder ``Primitive('zeros_like')`` that JAX never
                                            emits makes those registrations harmless no-ops.
``neural_tangents.experimental`` (stub)     pre-seeded in ``sys.modules`` so that
                                            ``neural_tangents/__init__`` does not import TensorFlow;
                                            the TF-only functions raise ``NotImplementedError``.
==========================================  =====================================================

``jax.core.ShapedArray``, ``Value``, ``AbstractValue``, ``eval_context`` and
``jax.api_util.flatten_fun_nokwargs`` still exist and are left alone.

What works and what does not
----------------------------
* ``stax`` analytic kernels (closed-form dual activations), ``predict``,
  ``empirical_ntk_fn`` with ``NtkImplementation.JACOBIAN_CONTRACTION`` and
  ``NtkImplementation.NTK_VECTOR_PRODUCTS`` work (tested in
  ``tests/test_theory_compat.py``).
* ``NtkImplementation.STRUCTURED_DERIVATIVES`` (and ``AUTO``, which may pick it)
  does NOT work: it walks jaxprs with JAX-internal APIs whose semantics changed
  (new primitives without rules, changed ``backward_pass`` internals), not just
  names.  Do not use it; :data:`SAFE_IMPLEMENTATIONS` lists the ones that work.

Known warning: NTK_VECTOR_PRODUCTS calls ``jnp.size`` on ``jax.ShapeDtypeStruct``
(``_src/empirical.py`` line 2321), which JAX 0.10 deprecates with a
``DeprecationWarning``; when a future JAX makes it an error, the compat test
for that implementation will fail and a shim will be needed here.

The patches are process-wide attribute additions on ``jax.core``,
``jax.interpreters.ad`` and a new ``jax.util`` module; they only add names
that are missing, never overwrite existing ones, and are applied only when
this module is imported (``import fbnas_jax`` never imports it).
"""
from __future__ import annotations

import sys
import types

import jax

__all__ = [
    "RESTORED_NAMES",
    "SAFE_IMPLEMENTATIONS",
    "apply_patches",
    "load_neural_tangents",
]

#: Dotted names this module restores; the compat test checks each one.
RESTORED_NAMES: tuple[str, ...] = (
    "jax.core.Jaxpr",
    "jax.core.JaxprEqn",
    "jax.core.Literal",
    "jax.core.Var",
    "jax.core.Primitive",
    "jax.core.DShapedArray",
    "jax.core.get_aval",
    "jax.core.lattice_join",
    "jax.util.safe_map",
    "jax.util.safe_zip",
    "jax.interpreters.ad.zeros_like_p",
)


class _RemovedDShapedArray:  # pragma: no cover - never instantiated
    """Placeholder for the removed dynamic-shape aval; nothing is ever an instance."""


def _lattice_join(a, b):
    """Minimal stand-in for the removed ``jax.core.lattice_join`` (equal avals only)."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    raise TypeError(f"lattice_join: incompatible avals {a} and {b}")


def _set_if_missing(obj, name: str, value) -> None:
    if not hasattr(obj, name):
        setattr(obj, name, value)


def apply_patches() -> None:
    """Add the missing names listed in :data:`RESTORED_NAMES` (idempotent)."""
    import jax.core as jcore
    import jax.extend.core as jex
    import jax.interpreters.ad as jad
    from jax._src import core as src_core
    from jax._src import util as src_util

    for name in ("Jaxpr", "JaxprEqn", "Literal", "Var", "Primitive"):
        _set_if_missing(jcore, name, getattr(jex, name))
    _set_if_missing(jcore, "DShapedArray", getattr(src_core, "DShapedArray", _RemovedDShapedArray))
    _set_if_missing(jcore, "get_aval", getattr(src_core, "get_aval", jax.typeof))
    _set_if_missing(jcore, "lattice_join", getattr(src_core, "lattice_join", _lattice_join))

    if "jax.util" not in sys.modules:
        util = types.ModuleType("jax.util", "Restored by theory.nt_compat for neural-tangents 0.6.5.")
        util.safe_map = src_util.safe_map
        util.safe_zip = src_util.safe_zip
        sys.modules["jax.util"] = util
        jax.util = util  # type: ignore[attr-defined]

    _set_if_missing(jad, "zeros_like_p", jex.Primitive("zeros_like"))

    if "neural_tangents.experimental" not in sys.modules:
        exp = types.ModuleType(
            "neural_tangents.experimental",
            "Stub installed by theory.nt_compat: the TensorFlow port is not loaded.",
        )

        def _tf_unavailable(*args, **kwargs):
            raise NotImplementedError("neural_tangents.experimental (TensorFlow) is disabled by theory.nt_compat")

        exp.empirical_ntk_fn_tf = _tf_unavailable
        exp.get_apply_fn_and_params = _tf_unavailable
        sys.modules["neural_tangents.experimental"] = exp


_NT = None


def load_neural_tangents():
    """Apply the patches and return the ``neural_tangents`` module (cached)."""
    global _NT
    if _NT is None:
        apply_patches()
        import neural_tangents

        _NT = neural_tangents
    return _NT


nt = load_neural_tangents()
stax = nt.stax
predict = nt.predict
empirical_ntk_fn = nt.empirical_ntk_fn
NtkImplementation = nt.NtkImplementation

#: Implementations of ``empirical_ntk_fn`` known to work under this shim.
SAFE_IMPLEMENTATIONS = (
    NtkImplementation.JACOBIAN_CONTRACTION,
    NtkImplementation.NTK_VECTOR_PRODUCTS,
)
