"""DARTS and BaLeNAS on a mixed-op supernet: settings, state and the two jit-compiled steps.

Differentiable NAS relaxes each edge's choice into ``softmax(alpha[e])`` over its ops (the
supernet's mixed-op input, :func:`fbnas_jax.models.execution.mix_ops`) and alternates

* a **weight step**: every network parameter (``train.params = all``) takes one SGD step on
  a batch of the weight-train half, at the current ``softmax(alpha)`` (held fixed);
* an **architecture step** on a batch of the arch-train half, weights held fixed:
  DARTS: Adam on ``alpha`` with the gradient of the arch-train loss, first order
  (``d L_val(w, alpha) / d alpha``) or second order (Liu et al.'s one-step unrolled
  ``w' = w - xi grad_w L_train``, the Hessian-vector product by finite differences);
  BaLeNAS: VAdam (:mod:`fbnas_jax.training.vadam`) on the mean ``mu`` of
  ``q(alpha) = N(mu, sigma^2)``, with that same gradient averaged over ``M`` samples
  ``alpha_i = mu + sigma * eps_i``.

Both steps are pure functions of a :class:`SearchState`, compiled once. Randomness (the
architecture samples) is a function of ``(seed, step)``, so a resumed search equals an
uninterrupted one. The settings of the two algorithms are :class:`ArchConfig` (the
``search`` section of a search config); the network, data and weight optimiser are the
ordinary :class:`fbnas_jax.config.Config` sections.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from fbnas_jax.config import ConfigError, _coerce
from fbnas_jax.models.layers import ForwardMode
from fbnas_jax.training import partition
from fbnas_jax.training.steps import cross_entropy
from fbnas_jax.training.vadam import VAdam

ALGOS = ("darts", "balenas")


@dataclasses.dataclass(frozen=True)
class ArchConfig:
    """Architecture-side settings (section ``search`` of a search config).

    Defaults: the NB201 paper's DARTS (architecture Adam, lr 3e-4, betas (0.5, 0.999), weight
    decay 1e-3, first order) and, for BaLeNAS, the same optimiser made variational: VAdam with
    that rate and betas, ``M = 1`` sample per step, and a prior precision
    ``delta = arch_weight_decay * N`` (N = arch-train images) so that VAdam's prior term
    ``delta / N`` equals DARTS's weight decay; ``sigma_0 = 1/sqrt(delta)``. BaLeNAS gives
    none of these numbers, so they are our documented defaults.
    """

    algo: str = "balenas"  # darts | balenas
    arch_learning_rate: float = 3e-4
    arch_b1: float = 0.5
    arch_b2: float = 0.999
    arch_weight_decay: float = 1e-3  # DARTS: Adam's coupled L2 on alpha
    arch_init_scale: float = 1e-3  # alpha / mu start at this * N(0, 1), as DARTS
    second_order: bool = False  # DARTS's unrolled (2nd-order) architecture gradient
    grad_clip: float = 5.0  # global-norm clip of the weight gradients (DARTS); 0 = none
    mc_samples: int = 1  # BaLeNAS: M samples of alpha per architecture step
    prior_precision: float | None = None  # BaLeNAS: delta; None = arch_weight_decay * N
    init_precision: float | None = None  # BaLeNAS: 1 / sigma_0^2; None = delta
    select_indicator: str = "synflow"  # BaLeNAS-TF: any registered per-architecture indicator
    select_samples: str = "10,50,100"  # BaLeNAS-TF sample sizes (nested draws from q)
    control_samples: int = 100  # zero-cost NAS control: random architectures, same indicator

    def sample_sizes(self) -> list[int]:
        return parse_sizes(self.select_samples)


_BOUNDS = {"arch_learning_rate": 0.0, "arch_weight_decay": -1e-300, "arch_init_scale": -1e-300, "grad_clip": -1e-300}


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"search.select_samples must be comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"search.select_samples must be positive integers, got {text!r}")
    return sorted(set(sizes))


def arch_config_from_dict(raw: dict[str, Any] | None) -> ArchConfig:
    """An :class:`ArchConfig` from a raw mapping; unknown keys and bad values are :class:`ConfigError`."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config section 'search' must be a mapping of keys, got {raw!r}")
    hints = typing_hints()
    kwargs = {}
    for key, value in raw.items():
        if key not in hints:
            import difflib

            close = difflib.get_close_matches(key, list(hints), n=1)
            raise ConfigError(f"unknown key in section 'search': {key!r}"
                              + (f"; did you mean {close[0]!r}?" if close else "") + f" (valid: {', '.join(hints)})")
        kwargs[key] = _coerce("search", key, value, hints[key])
    cfg = ArchConfig(**kwargs)
    if cfg.algo not in ALGOS:
        raise ConfigError(f"search.algo must be one of {ALGOS}, got {cfg.algo!r}")
    for key, low in _BOUNDS.items():
        if not getattr(cfg, key) > low:
            raise ConfigError(f"search.{key} must be {'> 0' if low == 0 else '>= 0'}, got {getattr(cfg, key)}")
    if not (0 <= cfg.arch_b1 < 1 and 0 <= cfg.arch_b2 < 1):
        raise ConfigError(f"search.arch_b1/arch_b2 must be in [0, 1), got {cfg.arch_b1}, {cfg.arch_b2}")
    if cfg.mc_samples < 1 or cfg.control_samples < 0:
        raise ConfigError("search.mc_samples must be >= 1 and search.control_samples >= 0")
    for key in ("prior_precision", "init_precision"):
        if getattr(cfg, key) is not None and not getattr(cfg, key) > 0:
            raise ConfigError(f"search.{key} must be > 0 (or null), got {getattr(cfg, key)}")
    cfg.sample_sizes()
    return cfg


def typing_hints() -> dict[str, Any]:
    from typing import get_type_hints

    return get_type_hints(ArchConfig)


# --------------------------------------------------------------------------- state


@flax.struct.dataclass
class SearchState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any  # the weights' (masked SGD) optimiser
    arch: jax.Array  # DARTS: alpha; BaLeNAS: mu. Shape = the space's op-weight shape, e.g. (6, 5)
    arch_opt_state: Any  # Adam (DARTS) or VAdam (BaLeNAS)

    @property
    def variables(self) -> dict[str, Any]:
        return {"params": self.params, "batch_stats": self.batch_stats}


def arch_optimizer(acfg: ArchConfig, dataset_size: int) -> VAdam | optax.GradientTransformation:
    """DARTS: Adam with coupled L2 (``arch_weight_decay``); BaLeNAS: :class:`VAdam`."""
    if acfg.algo == "darts":
        return optax.chain(optax.add_decayed_weights(acfg.arch_weight_decay),
                           optax.adam(acfg.arch_learning_rate, b1=acfg.arch_b1, b2=acfg.arch_b2, eps=1e-8))
    delta = acfg.prior_precision if acfg.prior_precision is not None else acfg.arch_weight_decay * dataset_size
    if not delta > 0:
        raise ConfigError("BaLeNAS needs a prior precision > 0: set search.prior_precision or "
                          "search.arch_weight_decay > 0")
    return VAdam(acfg.arch_learning_rate, int(dataset_size), prior_precision=float(delta),
                 init_precision=acfg.init_precision, b1=acfg.arch_b1, b2=acfg.arch_b2, num_samples=acfg.mc_samples)


def init_arch(key, shape, scale: float) -> jax.Array:
    return scale * jax.random.normal(key, shape, jnp.float32)


# --------------------------------------------------------------------------- steps


def _loss(net, params, batch_stats, batch, op_weights):
    logits, updated = net.apply({"params": params, "batch_stats": batch_stats}, batch["image"], op_weights,
                                mode=ForwardMode(train=True), mutable=["batch_stats"])
    loss = cross_entropy(logits, batch["label"])
    return loss, (updated["batch_stats"], jnp.mean(jnp.argmax(logits, -1) == batch["label"]))


def make_weight_step(net, tx: optax.GradientTransformation, labels) -> Callable:
    """``weight_step(state, batch) -> (state, metrics)``: one masked-SGD step on the network
    weights at ``softmax(state.arch)`` (no gradient to the architecture); it ends the search
    step, so it counts ``state.step``. A non-finite loss leaves the weights unchanged."""
    opt = partition.masked_optimizer(tx, labels)

    @jax.jit
    def weight_step(state: SearchState, batch):
        op_weights = jax.nn.softmax(jax.lax.stop_gradient(state.arch), axis=-1)

        def f(params):
            return _loss(net, partition.stop_frozen_gradients(params, labels), state.batch_stats, batch, op_weights)

        (loss, (batch_stats, acc)), grads = jax.value_and_grad(f, has_aux=True)(state.params)
        updates, opt_state = opt.update(grads, state.opt_state, state.params)
        new = state.replace(step=state.step + 1, params=partition.apply_updates(state.params, updates, labels),
                            batch_stats=batch_stats, opt_state=opt_state)
        finite = jnp.isfinite(loss)
        kept = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
        return kept, {"loss": loss, "accuracy": acc, "finite": finite}

    return weight_step


def make_arch_grad(net, *, second_order: bool = False, xi: Callable | None = None,
                   weight_decay: float = 0.0) -> Callable:
    """``arch_grad(params, batch_stats, alpha, train_batch, val_batch, step) -> (loss, grad)``.

    First order: ``d L_val(w, softmax(alpha)) / d alpha``. Second order (DARTS eq. 7-8):
    ``w' = w - xi (grad_w L_train(w, alpha) + wd w)``, the gradient at ``w'`` minus
    ``xi`` times the finite-difference Hessian-vector product
    ``(grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)) / (2 eps)``,
    ``w+- = w +- eps dw'``, ``eps = 0.01 / ||dw'||``. ``xi(step)`` is the weight learning rate.
    """

    def loss_at(params, batch_stats, alpha, batch):
        return _loss(net, params, batch_stats, batch, jax.nn.softmax(alpha, axis=-1))[0]

    d_alpha = jax.value_and_grad(loss_at, argnums=2)
    d_w = jax.grad(loss_at, argnums=0)

    def first(params, batch_stats, alpha, train_batch, val_batch, step):
        return d_alpha(params, batch_stats, alpha, val_batch)

    if not second_order:
        return first

    def second(params, batch_stats, alpha, train_batch, val_batch, step):
        lr = xi(step) if callable(xi) else xi
        gw = d_w(params, batch_stats, alpha, train_batch)
        unrolled = jax.tree.map(lambda p, g: p - lr * (g + weight_decay * p), params, gw)
        loss, (dw, g_alpha) = jax.value_and_grad(loss_at, argnums=(0, 2))(unrolled, batch_stats, alpha, val_batch)
        norm = jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(dw)))
        eps = 0.01 / jnp.maximum(norm, 1e-12)
        plus = jax.tree.map(lambda p, d: p + eps * d, params, dw)
        minus = jax.tree.map(lambda p, d: p - eps * d, params, dw)
        hvp = (jax.grad(loss_at, argnums=2)(plus, batch_stats, alpha, train_batch)
               - jax.grad(loss_at, argnums=2)(minus, batch_stats, alpha, train_batch)) / (2 * eps)
        return loss, g_alpha - lr * hvp

    return second


def make_arch_step(net, arch_opt, *, algo: str, seed: int, second_order: bool = False, xi=None,
                   weight_decay: float = 0.0) -> Callable:
    """``arch_step(state, train_batch, val_batch) -> (state, metrics)`` (jit-compiled).

    DARTS: ``arch_opt`` (Adam) on ``alpha``. BaLeNAS: ``arch_opt`` is a :class:`VAdam`; the
    gradient is the mean over its ``num_samples`` draws of ``alpha = mu + sigma * eps``, the
    draws keyed by ``(seed, step)``. ``train_batch`` is used by the second-order gradient only.
    """
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
    arch_grad = make_arch_grad(net, second_order=second_order, xi=xi, weight_decay=weight_decay)
    # the key is an argument, not a constant: one compiled program (and disk-cache entry) for every seed
    base_key = jax.random.key(seed)

    def arch_step(state: SearchState, train_batch, val_batch):
        return compiled(state, train_batch, val_batch, base_key)

    @jax.jit
    def compiled(state: SearchState, train_batch, val_batch, base_key):
        if algo == "darts":
            loss, grad = arch_grad(state.params, state.batch_stats, state.arch, train_batch, val_batch, state.step)
            updates, arch_opt_state = arch_opt.update(grad, state.arch_opt_state, state.arch)
            extra = {}
        else:
            key = jax.random.fold_in(base_key, state.step)
            samples = arch_opt.sample(key, state.arch, state.arch_opt_state)  # (M, ...)
            losses, grads = [], []
            for i in range(arch_opt.num_samples):  # M is small (1 in BaLeNAS): unrolled
                lo, g = arch_grad(state.params, state.batch_stats, samples[i], train_batch, val_batch, state.step)
                losses.append(lo)
                grads.append(g)
            loss, grad = jnp.mean(jnp.stack(losses)), jnp.mean(jnp.stack(grads), axis=0)
            updates, arch_opt_state = arch_opt.update(grad, state.arch_opt_state, state.arch)
            extra = {"sigma": jnp.mean(arch_opt.std(arch_opt_state))}
        finite = jnp.isfinite(loss) & jnp.all(jnp.isfinite(grad))
        arch = jnp.where(finite, state.arch + updates, state.arch)
        arch_opt_state = jax.tree.map(lambda a, b: jnp.where(finite, a, b), arch_opt_state, state.arch_opt_state)
        new = state.replace(arch=arch, arch_opt_state=arch_opt_state)
        return new, {"arch_loss": loss, "arch_grad_norm": jnp.sqrt(jnp.sum(grad * grad)), "finite": finite, **extra}

    return arch_step
