"""The one-matmul NASWOT kernel, the per-node recording of NB201's codes and the
reshape-based 2x2 pool: same values as the forms they replace (tiny sizes)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fbnas_jax.indicators._proxies import relu_kernel
from fbnas_jax.models import nb201 as m201
from fbnas_jax.models.layers import avg_pool_2x2, relu_code_kernel, relu_code_kernel_reference
from fbnas_jax.spaces import nb201


@pytest.mark.parametrize("masked", [False, True])
def test_one_matmul_kernel_equals_two_matmul_form_exactly(masked):
    x = jax.random.normal(jax.random.key(0), (12, 5, 5, 6))
    x = x.at[3].set(x[4])  # two samples with the same code
    mask = jnp.asarray([1, 0, 1, 1, 0, 1], bool) if masked else None
    k, ref = np.asarray(relu_code_kernel(x, mask)), np.asarray(relu_code_kernel_reference(x, mask))
    np.testing.assert_array_equal(k, ref)
    units = 5 * 5 * (4 if masked else 6)
    np.testing.assert_array_equal(np.diag(k), units)  # a code agrees with itself everywhere
    assert k[3, 4] == units and k.dtype == np.float32


def _per_edge_record(self, nodes, encoding):
    """NB201's recording before: one two-matmul kernel per edge, from its source node,
    times 1 if the edge's op is a convolution (else 0)."""
    has_relu = jnp.asarray([op.startswith("nor_conv") for op in nb201.OPS], jnp.float32)
    e = 0
    for node in range(1, nb201.NUM_NODES):
        for j in range(node):
            self.sow("relu_kernel", f"E{e}", relu_code_kernel_reference(nodes[j]) * has_relu[encoding[e]],
                     init_fn=lambda: 0.0, reduce_fn=lambda a, b: a + b)
            e += 1


@pytest.mark.parametrize("strategy", ["select", "switch"])
def test_nb201_per_node_codes_equal_per_edge_sum(strategy, monkeypatch):
    net = m201.build_network(channels=4, cells_per_stage=1, strategy=strategy)
    variables = m201.init_variables(net, 0, (8, 8, 3))
    images = jax.random.normal(jax.random.key(1), (6, 8, 8, 3))
    encs = jnp.asarray([[3, 2, 3, 0, 1, 2], [0, 0, 4, 0, 1, 4], [2, 1, 4, 3, 3, 2]], jnp.int32)
    new = np.asarray(jax.jit(lambda e: jax.lax.map(lambda a: relu_kernel(net, variables, images, a), e))(encs))
    monkeypatch.setattr(m201.Cell, "_record_codes", _per_edge_record)
    old = np.asarray(jax.jit(lambda e: jax.lax.map(lambda a: relu_kernel(net, variables, images, a), e))(encs))
    for a, b in zip(new, old):
        np.testing.assert_array_equal(a, b)


def test_avg_pool_2x2_equals_flax():
    x = jax.random.normal(jax.random.key(2), (2, 6, 8, 3))
    for y in (x, x[1:]):
        np.testing.assert_allclose(avg_pool_2x2(y), nn.avg_pool(y, (2, 2), strides=(2, 2)), rtol=1e-6, atol=1e-6)
