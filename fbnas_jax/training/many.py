"""Train the BatchNorm of many stand-alone NB201 networks at once (one ``vmap``-ed step).

FBN-NAS Figs. 2-3 train 1,000 random stand-alone networks BN-only for one epoch and plot
their gamma indicator against test accuracy. A subnet of a freshly initialised supernet is
distributed exactly like a freshly initialised stand-alone network (every (cell, edge, op)
owns an independent init), so K stand-alone networks are K encodings of one fresh supernet
with K private copies of the BatchNorm parameters, statistics and optimiser state:

* the frozen convolution / linear weights are **shared** by the K networks (``vmap`` with
  ``in_axes=None``): each network still starts from a random init, the K inits are merely
  not independent of one another -- which does not bias any one network's training;
* every step trains all K networks on the *same* mini-batch (the data order is the same for
  every network, as when one script trains them one after another with one seed);
* unchosen ops get zero gradient and their running statistics stay untouched (the supernet's
  masked BatchNorm), so each copy evolves exactly like the stand-alone network it encodes.

``train_many`` returns per network the final BN parameters and running statistics; the
caller evaluates them (:func:`evaluate_many`, running statistics, as a trained stand-alone
network is evaluated) and reads the gamma indicator (:func:`gamma_many`).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from fbnas_jax import data as fdata
from fbnas_jax.models.layers import ForwardMode
from fbnas_jax.models.nb201 import NB201Net, init_variables
from fbnas_jax.training import partition
from fbnas_jax.training.steps import cross_entropy


@dataclasses.dataclass
class ManyResult:
    """K stand-alone networks: shared frozen weights, stacked (leading axis K) BN state."""

    net: NB201Net
    encodings: np.ndarray  # (K, 6)
    frozen: dict  # flat {path: array}, shared
    bn_params: dict  # flat {path: array (K, ...)}
    batch_stats: Any  # tree, leaves (K, ...)
    final_loss: np.ndarray  # (K,) mean training loss over the last 10 % of steps
    final_accuracy: np.ndarray  # (K,)
    steps: int
    seconds: float

    def variables(self, k: int) -> dict:
        """``{'params', 'batch_stats'}`` of network ``k`` (e.g. for the supernet indicators)."""
        params = traverse_util.unflatten_dict({**self.frozen, **{p: v[k] for p, v in self.bn_params.items()}})
        return {"params": params, "batch_stats": jax.tree.map(lambda a: a[k], self.batch_stats)}


def _split(params):
    flat = traverse_util.flatten_dict(params)
    bn = {p: v for p, v in flat.items() if partition.is_batchnorm_leaf(p)}
    return {p: v for p, v in flat.items() if p not in bn}, bn


def _stack(tree, k: int):
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (k,) + a.shape), tree)


def make_many_step(net: NB201Net, tx: optax.GradientTransformation, *, label_smoothing: float = 0.0) -> Callable:
    """``step(frozen, bn, stats, opt_state, encodings, batch) -> (bn, stats, opt_state, loss, acc)``.

    ``bn``/``stats``/``opt_state``/``encodings`` carry a leading axis K; ``frozen`` and the
    batch are shared. One jit-compiled call trains all K networks by one step.
    """
    mode = ForwardMode(train=True)

    def one(frozen, bn, stats, opt_state, enc, images, labels):
        def loss_fn(bn_):
            params = traverse_util.unflatten_dict({**jax.lax.stop_gradient(frozen), **bn_})
            logits, upd = net.apply({"params": params, "batch_stats": stats}, images, enc, mode=mode,
                                    mutable=["batch_stats"])
            loss = cross_entropy(logits, labels, label_smoothing)
            return loss, (upd["batch_stats"], jnp.mean(jnp.argmax(logits, -1) == labels))

        (loss, (stats, acc)), g = jax.value_and_grad(loss_fn, has_aux=True)(bn)
        updates, opt_state = tx.update(g, opt_state, bn)
        return optax.apply_updates(bn, updates), stats, opt_state, loss, acc

    @jax.jit
    def step(frozen, bn, stats, opt_state, encodings, batch):
        return jax.vmap(one, in_axes=(None, 0, 0, 0, 0, None, None))(
            frozen, bn, stats, opt_state, encodings, batch["image"], batch["label"])

    return step


def train_many(net: NB201Net, encodings, dataset: fdata.Dataset, *, tx_fn: Callable[[int], optax.GradientTransformation],
               batch_size: int, epochs: int = 1, seed: int = 0, augment: bool = True,
               label_smoothing: float = 0.0, progress: Callable[[int, int], None] | None = None) -> ManyResult:
    """Train the BN of ``len(encodings)`` stand-alone networks ``epochs`` epochs, BN-only.

    ``tx_fn(total_steps)`` builds the optimiser (e.g. ``lambda n: make_optimizer(..., total_steps=n)``).
    The fresh supernet is initialised from ``seed``; ``progress(step, total)`` is called per step.
    """
    if net.arch is not None:
        raise ValueError("train_many needs the supernet (arch=None): the architectures are inputs")
    enc = np.asarray(encodings, np.int32).reshape(-1, 6)
    k = enc.shape[0]
    per_epoch = fdata.num_batches(dataset, batch_size)
    if per_epoch == 0:
        raise ValueError(f"batch_size={batch_size} exceeds the training set ({dataset.num_train})")
    total = per_epoch * epochs
    tx = tx_fn(total)
    v = init_variables(net, seed, dataset.train_images.shape[1:])
    frozen, bn = _split(v["params"])
    bn, stats = _stack(bn, k), _stack(v["batch_stats"], k)
    opt_state = jax.vmap(tx.init)(bn)
    step_fn = make_many_step(net, tx, label_smoothing=label_smoothing)
    enc_j = jnp.asarray(enc)
    tail = max(1, total // 10)
    losses, accs = [], []
    t0 = time.perf_counter()
    step = 0
    for epoch in range(epochs):
        for batch in fdata.train_batches(dataset, batch_size, seed=seed, epoch=epoch, augment=augment):
            bn, stats, opt_state, loss, acc = step_fn(frozen, bn, stats, opt_state, enc_j, batch)
            step += 1
            if step > total - tail:
                losses.append(loss)
                accs.append(acc)
            if progress is not None:
                progress(step, total)
    final_loss = np.mean(np.stack(jax.device_get(losses)), axis=0)
    final_acc = np.mean(np.stack(jax.device_get(accs)), axis=0)
    if not np.all(np.isfinite(final_loss)):
        bad = np.flatnonzero(~np.isfinite(final_loss))
        raise FloatingPointError(f"BN-only training diverged for {bad.size} of {k} networks (first index {bad[0]})")
    return ManyResult(net, enc, frozen, bn, stats, final_loss, final_acc, total, time.perf_counter() - t0)


def evaluate_many(result: ManyResult, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 500) -> np.ndarray:
    """Top-1 accuracy (K,) of each network on ``images`` (normalised float32) with its running
    BN statistics, as a trained stand-alone network is evaluated. The last batch is padded
    (padding not counted), so one compilation serves every batch."""
    net = result.net

    @jax.jit
    def correct(frozen, bn, stats, encodings, x, y, valid):
        def one(bn_k, stats_k, enc):
            params = traverse_util.unflatten_dict({**frozen, **bn_k})
            logits = net.apply({"params": params, "batch_stats": stats_k}, x, enc, mode=ForwardMode(train=False))
            return jnp.sum((jnp.argmax(logits, -1) == y) & valid)
        return jax.vmap(one)(bn, stats, encodings)

    n = len(labels)
    if n == 0:
        raise ValueError("no evaluation images")
    b = min(batch_size, n)
    hits = np.zeros(len(result.encodings), np.int64)
    enc = jnp.asarray(result.encodings)
    for lo in range(0, n, b):
        x, y = images[lo:lo + b], labels[lo:lo + b]
        valid = np.ones(b, bool)
        if len(y) < b:
            pad = b - len(y)
            valid[len(y):] = False
            x = np.concatenate([x, np.repeat(x[:1], pad, axis=0)])
            y = np.concatenate([y, np.repeat(y[:1], pad, axis=0)])
        hits += np.asarray(correct(result.frozen, result.bn_params, result.batch_stats, enc, x, y, valid))
    return hits / n


def gamma_many(result: ManyResult, kind: str = "gamma") -> np.ndarray:
    """The BN-NAS gamma indicator (or FBN trainability) of each network from its own BN copy."""
    from fbnas_jax.models.nb201 import bn_table, table_scores

    net = result.net

    @jax.jit
    def scores(frozen, bn, stats, encodings):
        def one(bn_k, stats_k, enc):
            params = traverse_util.unflatten_dict({**frozen, **bn_k})
            t = bn_table(params, stats_k, num_cells=net.num_cells, bn_mode=net.bn_mode, kind=kind)
            return table_scores(t, enc[None])[0]
        return jax.vmap(one)(bn, stats, encodings)

    return np.asarray(scores(result.frozen, result.bn_params, result.batch_stats, jnp.asarray(result.encodings)),
                      np.float64)
