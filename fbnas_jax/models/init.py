"""Initialise a large supernet without compiling its forward pass.

``module.init`` runs the whole forward to create the variables; for a MobileNet or DARTS
supernet (hundreds of candidate ops) XLA:CPU spends tens of seconds compiling that program
and the hundreds of separate random draws in it. Here the variable *shapes* come from
``jax.eval_shape`` (tracing only) and the values from one random draw sliced into leaves:
same distributions as the modules' initializers, nothing to compile.

Distributions (as the modules declare them): conv kernels He-normal (fan-in, the frozen
random convolutions of BN-NAS); the linear head LeCun truncated normal; biases 0; BN scale
1, shift 0; running mean 0, running variance 1. The stream differs from ``module.init``'s,
so the values are not bit-identical to it -- only identically distributed.

:func:`cut_subnet` / :func:`paste_subnet` move a subnet's variables between a stand-alone net
and a supernet that stacks identical layers (DARTS edges, MobileNet layer runs) under scans.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

_TRUNC_STD = 0.87962566103423978  # std of a standard normal truncated to [-2, 2]


def _std(path: tuple[str, ...], shape: tuple[int, ...], dense_modules: tuple[str, ...]) -> float:
    fan_in = math.prod(shape[:-1])
    if path[-2] in dense_modules:
        return math.sqrt(1.0 / fan_in) / _TRUNC_STD
    return math.sqrt(2.0 / fan_in)


def _seed(key) -> list[int]:
    if isinstance(key, (int, np.integer)):
        return [int(key)]
    data = np.asarray(jax.random.key_data(key)) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else np.asarray(key)
    return [int(v) for v in data.ravel().astype(np.uint32)]


def init_from_shapes(module, key, *args, dense_modules: tuple[str, ...] = ("classifier",), **kwargs) -> dict:
    """``{'params', 'batch_stats'}`` with the shapes of ``module.init(key, *args, **kwargs)``.

    ``key``: an int seed or a PRNG key; values are drawn on the host with NumPy's
    generator seeded by it (deterministic, nothing to compile), then put on the device.
    """
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
    flat = traverse_util.flatten_dict({k: v for k, v in shapes.items() if k in ("params", "batch_stats")})
    rng = np.random.default_rng(_seed(key) + [0x1A17])
    values = {}
    for path in sorted(flat):
        spec = flat[path]
        if path[-1] == "kernel":
            std = _std(path, spec.shape, dense_modules)
            if path[-2] in dense_modules:
                z = rng.standard_normal(spec.shape, np.float32)
                bad = np.abs(z) > 2.0
                while bad.any():  # truncated normal by rejection
                    z[bad] = rng.standard_normal(int(bad.sum()), np.float32)
                    bad = np.abs(z) > 2.0
            else:
                z = rng.standard_normal(spec.shape, np.float32)
            values[path] = jnp.asarray(z * np.float32(std), spec.dtype)
        elif path[0] == "params" and path[-1] == "scale" or path[0] == "batch_stats" and path[-1] == "var":
            values[path] = jnp.ones(spec.shape, spec.dtype)
        else:  # conv / dense / BN biases, running means
            values[path] = jnp.zeros(spec.shape, spec.dtype)
    return traverse_util.unflatten_dict(values)


def cut_subnet(supernet_variables: dict, standalone_variables: dict, supernet_path) -> dict:
    """Stand-alone variables (structure of ``standalone_variables``) read from a supernet whose
    layers may be stacked: ``supernet_path(path) -> (src_path, row)`` names, for each stand-alone
    variable path, the supernet variable holding it and its row in a stacked (scanned) axis
    (``None``: the whole array)."""
    flat_super = traverse_util.flatten_dict(supernet_variables)
    out = {}
    for path in traverse_util.flatten_dict(standalone_variables):
        src, row = _checked_source(path, supernet_path, flat_super)
        out[path] = flat_super[src] if row is None else flat_super[src][row]
    return traverse_util.unflatten_dict(out)


def paste_subnet(supernet_variables: dict, standalone_variables: dict, supernet_path) -> dict:
    """The inverse of :func:`cut_subnet`: the supernet's variables with the stand-alone ones
    written over their rows (e.g. BNs trained stand-alone, read back by the BN tables)."""
    flat = dict(traverse_util.flatten_dict(supernet_variables))
    for path, value in traverse_util.flatten_dict(standalone_variables).items():
        dst, row = _checked_source(path, supernet_path, flat)
        flat[dst] = value if row is None else jnp.asarray(flat[dst]).at[row].set(value)
    return traverse_util.unflatten_dict(flat)


def _checked_source(path, supernet_path, flat_super):
    src, row = supernet_path(path)
    if src not in flat_super:
        raise KeyError(f"stand-alone variable {'/'.join(path)} has no supernet counterpart {'/'.join(src)}")
    return src, row
