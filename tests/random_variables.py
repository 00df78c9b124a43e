"""Random supernet variables for tests: every BN scale, shift and statistic drawn, so every op
(and every BN) changes the output and op mix-ups cannot cancel out.

Drawn in NumPy on the shapes of ``jax.eval_shape(init)``: compiling a supernet's init costs
tens of seconds on a busy CPU.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def random_variables(net, seed: int = 0, *, scale: str = "uniform", var_range=(0.5, 2.0),
                     head_gain: float = float(np.sqrt(2.0)), image_size: int = 16):
    """``{'params', 'batch_stats'}`` of the NB201 supernet ``net``, drawn from ``seed``.

    scale: "uniform" (|gamma| in [0.5, 1.5]) or "normal" (signed, some near 0); var_range: running
    variances; kernels He-normal, the classifier's with ``head_gain`` instead of sqrt(2).
    """
    shapes = jax.eval_shape(lambda k: net.init(k, jnp.zeros((1, image_size, image_size, 3)), jnp.zeros(6, jnp.int32)),
                            jax.random.key(seed))
    rng = np.random.default_rng(seed)

    def draw(path, x):
        name = path[-1].key
        if name == "scale":
            v = rng.uniform(0.5, 1.5, size=x.shape) if scale == "uniform" else rng.normal(size=x.shape)
            return v.astype(np.float32)
        if name == "var":
            return rng.uniform(*var_range, size=x.shape).astype(np.float32)
        if name in ("bias", "mean"):
            return (0.1 * rng.normal(size=x.shape)).astype(np.float32)
        fan_in = int(np.prod(x.shape[:-1]))
        gain = head_gain if "classifier" in str(path) else np.sqrt(2.0)
        return (gain / np.sqrt(fan_in) * rng.normal(size=x.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)
