"""Empirical NTKs with neural-tangents: BN-only partition and the all-parameter reference."""
from __future__ import annotations

import functools

import jax
import numpy as np

from theory import network
from theory.nt_compat import NtkImplementation, empirical_ntk_fn, stax
from theory.variants import rel_fro


@functools.lru_cache(maxsize=None)
def make_bn_only_ntk(*, phi, stats="batch", eps=1e-8, implementation=NtkImplementation.JACOBIAN_CONTRACTION):
    """Return jitted ntk(x, bn, fixed, hyper, pop_scales) -> (m, m), the empirical NTK w.r.t. BN params only.

    neural-tangents differentiates only ``bn``; ``fixed`` (weights, biases,
    readout), ``hyper = [sigma_w, sigma_b]`` and ``pop_scales`` are keyword
    arguments, i.e. closed over and not differentiated -- and traced, so one
    compilation serves every (sigma_w, sigma_b) and seed of a width.
    ``vmap_axes=None`` because batch-statistics BN couples the samples of the batch.
    """
    def f(bn, x, *, fixed, hyper, pop_scales=None):
        return network.apply(fixed, bn, x, phi=phi, sigma_w=hyper[0], sigma_b=hyper[1], stats=stats,
                             pop_scales=pop_scales, eps=eps)

    ntk = empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=None, implementation=implementation)
    return jax.jit(lambda x, bn, fixed, hyper, pop_scales=None:
                   ntk(x, None, bn, fixed=fixed, hyper=hyper, pop_scales=pop_scales))


def bn_only_ntk(x, bn, fixed, *, phi, sigma_w, sigma_b, stats="batch", pop_scales=None, eps=1e-8,
                implementation=NtkImplementation.JACOBIAN_CONTRACTION):
    """Empirical BN-only NTK on the batch ``x`` (see :func:`make_bn_only_ntk`)."""
    fn = make_bn_only_ntk(phi=phi, stats=stats, eps=eps, implementation=implementation)
    # arrays, not tuples: neural-tangents reads a length-2 tuple kwarg as (value for x1, value for x2)
    ps = None if pop_scales is None else np.asarray(pop_scales, dtype=np.float64)
    hyper = np.array([sigma_w, sigma_b], dtype=np.float64)
    return np.asarray(fn(x, bn, fixed, hyper, ps))


def all_param_ntk_fn(*, phi, sigma_w, sigma_b, stats="batch", pop_scales=None, eps=1e-8):
    """Empirical NTK of the FCN-BN network w.r.t. all parameters (fixed + BN)."""
    def f(params, x):
        return network.apply(params["fixed"], params["bn"], x, phi=phi, sigma_w=sigma_w,
                             sigma_b=sigma_b, stats=stats, pop_scales=pop_scales, eps=eps)

    ntk = empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=None,
                           implementation=NtkImplementation.JACOBIAN_CONTRACTION)
    return jax.jit(lambda x, params: ntk(x, None, params))


def stax_reference(width: int, depth: int, act_name: str, sigma_w: float, sigma_b: float):
    """neural-tangents stax FCN without BN (standard all-parameter NTK reference)."""
    act = {"relu": stax.Relu, "erf": lambda: stax.Erf(1.0, 1.0, 0.0), "tanh": None}[act_name]
    if act is None:
        raise ValueError("stax reference only for relu/erf")
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(width, W_std=sigma_w, b_std=sigma_b), act()]
    layers += [stax.Dense(1, W_std=sigma_w, b_std=sigma_b)]
    return stax.serial(*layers)


@functools.lru_cache(maxsize=None)
def _stax_fns(width, depth, act_name, sigma_w, sigma_b):
    init_fn, apply_fn, kernel_fn = stax_reference(width, depth, act_name, sigma_w, sigma_b)
    ntk = empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0,
                           implementation=NtkImplementation.NTK_VECTOR_PRODUCTS)
    return init_fn, jax.jit(lambda x, p: ntk(x, None, p)), kernel_fn


def stax_reference_errors(key, x, width, depth, act_name, sigma_w, sigma_b) -> float:
    """Rel. Frobenius distance between empirical all-parameter NTK and stax's analytic NTK (no BN).

    This is the standard-training reference: how far a width-``width``
    all-parameter NTK is from its own infinite-width limit.
    """
    init_fn, ntk, kernel_fn = _stax_fns(width, depth, act_name, float(sigma_w), float(sigma_b))
    _, params = init_fn(key, x.shape)
    return rel_fro(ntk(x, params), kernel_fn(x, None, "ntk"))
