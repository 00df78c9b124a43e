"""TE-NAS's "thin" NB201 network for counting linear regions, returning its ReLU codes.

TE-NAS (Chen et al. 2021) and TEG-NAS count linear regions on a network much smaller than
the one they train: ``TinyNetworkDarts(C=1, N=1, depth=1, use_stem=False)`` -- no stem, ONE
NB201 cell of width 1 fed directly with single-channel 3x3 crops, then the head's BN-ReLU
(the classifier after the global pool has no ReLU and does not matter). This module is that
network with our NB201 edges (:class:`fbnas_jax.models.nb201.Edge`, the same ops and BN
placement ``bnnas`` as the benchmark), and instead of logits it returns the binary code of
every ReLU that runs, as TE-NAS's forward hooks read them (``sign(relu(x))``):

* each *live* convolution op on edge ``j -> i`` starts with a ReLU of node ``j``: code
  ``node_j > 0`` (an edge whose conv ops are all dead contributes a constant 0 code, which
  changes no count; several live conv ops reading the same node repeat the same code);
* the head's ReLU after BatchNorm: code ``BN(cell output) > 0``.

The architecture input is either form the NB201 supernet accepts: an int encoding ``(6,)``
or float op weights ``(6, 5)`` (one-hot = the subnet; a 0/1 mask = a pruned supernet whose
edge sums its live ops; see :func:`fbnas_jax.models.execution.mix_ops`). A conv op is live
when its weight is non-zero (TE-NAS runs an op when its softmax weight exceeds 0.01).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from fbnas_jax.models.execution import is_mixed
from fbnas_jax.models.layers import BatchNorm, ForwardMode
from fbnas_jax.models.nb201 import Edge, check_arch_input
from fbnas_jax.spaces import nb201

_CONV_OPS = tuple(i for i, name in enumerate(nb201.OPS) if name.startswith("nor_conv"))


def conv_live(choice) -> jax.Array:
    """Whether an edge's ``choice`` (op index, or op-weight vector) runs a convolution op."""
    if is_mixed(choice):
        return jnp.any(jnp.stack([choice[k] != 0 for k in _CONV_OPS]))
    return jnp.any(jnp.stack([choice == k for k in _CONV_OPS]))


class ThinNB201(nn.Module):
    """One NB201 cell of ``channels`` (TE-NAS: 1) channels, no stem, BN-ReLU head.

    ``__call__(x, arch, mode)`` -> ReLU codes, bool ``(batch, units)``: every edge's
    conv-ReLU code (masked by liveness) then the head's, in a fixed order.
    """

    channels: int = 1
    bn_mode: str = "bnnas"
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x, arch, mode: ForwardMode = ForwardMode(train=True)):
        check_arch_input(arch)
        b = x.shape[0]
        nodes, codes, e = [x], [], 0
        for node in range(1, nb201.NUM_NODES):
            total = 0.0
            for j in range(node):
                choice = arch[e]
                codes.append(((nodes[j] > 0) & conv_live(choice)).reshape(b, -1))
                total = total + Edge(self.channels, self.bn_mode, None, self.bn_momentum, "select",
                                     name=f"edge_{e}")(nodes[j], choice, mode)
                e += 1
            nodes.append(total)
        y = BatchNorm(self.bn_momentum, name="lastact_bn")(nodes[-1], mode)
        codes.append((y > 0).reshape(b, -1))
        return jnp.concatenate(codes, axis=1)


def init_thin(net: ThinNB201, key, input_shape=(3, 3, 1)) -> dict:
    """``{'params', 'batch_stats'}`` of the thin network (every op of every edge)."""
    x = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
    return jax.jit(lambda k: net.init(k, x, jnp.zeros((nb201.NUM_EDGES,), jnp.int32)))(key)
