"""The neural-tangents compatibility layer: restored names, working NTK implementations, import isolation."""
import functools
import importlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from theory import x64


def _resolve(dotted):
    mod, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(mod), attr)


def test_every_restored_name_resolves_after_loading():
    from theory import nt_compat

    nt_compat.load_neural_tangents()
    assert len(nt_compat.RESTORED_NAMES) >= 10
    for name in nt_compat.RESTORED_NAMES:
        assert _resolve(name) is not None, name
    # the restored names must be the real JAX objects where JAX still has them
    import jax.core
    import jax.extend.core

    for n in ("Jaxpr", "JaxprEqn", "Literal", "Var", "Primitive"):
        assert getattr(jax.core, n) is getattr(jax.extend.core, n)
    from jax._src import util

    assert jax.util.safe_map is util.safe_map and list(jax.util.safe_zip([1], [2])) == [(1, 2)]


def test_neural_tangents_loaded_without_tensorflow():
    code = ("import sys, theory.nt_compat as c; assert c.nt.__version__ == '0.6.5'; "
            "assert 'tensorflow' not in sys.modules; "
            "import neural_tangents.experimental as e\n"
            "try:\n e.empirical_ntk_fn_tf()\nexcept NotImplementedError: print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_import_fbnas_jax_does_not_import_nt_or_tf():
    code = ("import sys, fbnas_jax; bad = [m for m in ('neural_tangents', 'tensorflow', 'theory.nt_compat') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("impl_name", ["JACOBIAN_CONTRACTION", "NTK_VECTOR_PRODUCTS"])
def test_empirical_ntk_implementations_match_explicit_jacobian(impl_name):
    from theory import network
    from theory.activations import RELU
    from theory.nt_compat import NtkImplementation, empirical_ntk_fn

    with x64():
        x = network.make_inputs(jax.random.PRNGKey(0), 5, 4)
        fixed, bn = network.init_params(jax.random.PRNGKey(1), 4, 32, 2)
        bn = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(2), a.shape, a.dtype), bn)
        f = functools.partial(lambda p, x_, fx: network.apply(fx, p, x_, phi=RELU.phi), fx=fixed)
        got = empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=None,
                               implementation=getattr(NtkImplementation, impl_name))(x, None, bn)
        jac = jax.jacobian(lambda p: f(p, x)[:, 0])(bn)
        flat = jnp.concatenate([j.reshape(5, -1) for j in jax.tree.leaves(jac)], axis=1)
        want = flat @ flat.T
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10, atol=1e-12)


def test_structured_derivatives_documented_as_unsupported():
    from theory import nt_compat

    assert nt_compat.NtkImplementation.STRUCTURED_DERIVATIVES not in nt_compat.SAFE_IMPLEMENTATIONS
    assert "STRUCTURED_DERIVATIVES" in nt_compat.__doc__
