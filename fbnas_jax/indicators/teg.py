"""TEG-NAS's training-free indicators (Chen et al., TPAMI; ``../shared/papers/004_*``).

TEG-NAS scores an architecture by three properties of its freshly initialised network:
**T**rainability (TE-NAS's NTK condition number: our ``ntk_cond``), **E**xpressivity (TE-NAS's
number of linear regions on a thin network: ``linear_regions_tenas`` here) and
**G**eneralization (NTK kernel-regression error: ``teg_generalization`` here), and combines
them by the sum of their ranks (``teg``, a composite like FBN-NAS's ``cpi``). All oriented
**higher = better**.

``teg_generalization`` (TEG-NAS Sec. 3.3, eqs. 8-9; reference code ``lib/procedures/ntk.py``)
    ``-MSE``, ``MSE = mean_i || K_yx K_xx^-1 Y_x - Y_y ||^2_2`` (sum over classes, mean over
    the held-out samples), where ``K_xx = J_x J_x^T`` and ``K_yx = J_y J_x^T`` are empirical
    NTKs: ``J`` the per-sample gradients of the sample's summed logits (BN in train mode,
    each batch normalised by its own statistics, as the reference forwards the two batches
    separately) with respect to the **cell parameters only** -- the reference keeps
    parameters named ``weight`` whose name contains ``cell``, i.e. conv kernels and BN scales
    of the NB201 cells *and of the two residual reduction blocks* (they sit in the same
    ``cells`` list), no stem, no head, no biases (``params="cells"``; ``"all"`` takes every
    conv kernel and BN scale, as ``ntk_cond`` does). ``Y`` are one-hot labels centred by
    their batch mean. ``x`` is a training batch and ``y`` a *disjoint* held-out batch, both
    of ``batch_size`` 64 (capped at half of ``ctx.images``). Plain inverse in the reference (no regulariser): ``ridge=0``;
    ``ridge > 0`` adds ``ridge * mean(diag K_xx) * I``. Solved in float64 on the host.
    Mean over ``repeats`` = 3 fresh inits (TEG-NAS averages three calculations; repeat ``r``
    uses batches ``2r`` and ``2r+1`` of ``ctx.images`` when there are enough, else the first
    two, and the same inits as ``ntk_cond``: repeat 0 is ``ctx.init_variables``). A singular
    ``K_xx`` (e.g. all-``none``: no gradient) or a non-finite error scores ``-inf`` (the
    reference marks it "bad" and ranks it worst). The paper's text says the NTK "of the last
    layer"; we follow its code (cell parameters), which the issue asks for too.
    Network: TEG-NAS computes it on the C=3, N=1 NB201 supernet with stem (``ctx.net``
    decides here; ``benchmarks/teg_nb201.py`` uses that size).

``linear_regions_tenas`` (TE-NAS Sec. 3.1.2 / TEG-NAS Sec. 3.2; ``linear_region_counter.py``)
    The number of distinct ReLU activation patterns over ``batches`` x ``batch_size`` = 3 x
    1,000 inputs counted *together* (3,000 samples), mean over ``repeats`` = 3 fresh inits of
    TE-NAS's **thin network** (:mod:`fbnas_jax.models.nb201_thin`: one NB201 cell with C=1,
    no stem, BN-ReLU head; BN in train mode with each 1,000-batch's statistics). Inputs:
    random 3x3 crops of one random colour channel of normalised training images (TE-NAS:
    ``RandomCrop(3)`` + ``RandChannel(1)``), drawn once from ``ctx.images`` with ``ctx.key``
    and shared by every architecture (TE-NAS fixes its three batches too). How our
    ``linear_regions`` differs: it counts on ``ctx.net`` itself (stem, every cell, full
    width) with full images, per batch of up to 1,000 (mean of per-batch counts, not one
    count over 3,000), so on 32x32 inputs nearly every image has its own pattern and the
    count saturates at the batch size; the thin network on 3x3 crops is what makes the
    count discriminate between architectures.

``ntk_cond`` (trainability; implemented in :mod:`.training_free`) against TE-NAS's code
    Same: gradients of each sample's summed logits (train-mode BN, one batched forward) w.r.t.
    every parameter PyTorch names ``weight`` (conv/linear kernels and BN scales, no biases),
    ``lambda_max / lambda_min``, mean of 3 fresh inits. Different: (1) TE-NAS and TEG-NAS
    compute it on the C=3, N=1 NB201 supernet; ours on ``ctx.net`` (``fbnas score``: the
    checkpoint's network, e.g. C=16, N=5); (2) initialisation: ours is He-normal fan_in for
    convs and LeCun-normal for the head; TE-NAS's launcher asks for ``kaiming_normal``, a name
    its ``init_model`` (``kaiming_norm_fanin/_fanout``) does not match in the revision read
    for :mod:`.training_free`, so it keeps PyTorch's default init (TEG-NAS's ``kaiming_norm``
    likewise); (3) TE-NAS's NB201 launch uses batch 72 (TEG-NAS 64; ours 72 by default),
    each repeat drawing a fresh random batch (ours: batch
    ``r`` of ``ctx.images`` when there are enough images, else the same batch); (4) TE-NAS's
    pruned supernet weights live ops ``1/k`` (see below). It accepts ``(6, 5)`` op weights
    through its per-architecture function (``build_arch``); the engine path (``fbnas
    score``, ``scoring.Scorer``) validates integer encodings only.

``teg`` (composite, TEG-NAS Sec. 5.2.2)
    ``rank^kappa + rank^R + rank^MSE`` within the scored set; we return the *mean* rank (the
    same order), higher = better, over ``ntk_cond``, ``linear_regions_tenas`` and
    ``teg_generalization``.

Architecture inputs. Every per-architecture function here takes ``arch`` as an int encoding
``(6,)`` *or* float op weights ``(6, 5)``: one-hot = the subnet; a 0/1 mask = a pruned
supernet whose edges *sum* their live ops (:func:`fbnas_jax.models.execution.mix_ops`).
TE-NAS's pruned supernet instead *averages* them (softmax of alphas with pruned ops at
-inf gives ``1/k`` per live op): pass ``mask / mask.sum(-1, keepdims=True)`` to reproduce it.
:func:`jit_arch` / :func:`map_archs` compile a builder's function once for single
architectures or stacks of them (searches, pruning).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fbnas_jax.indicators import _proxies as P
from fbnas_jax.indicators.base import Indicator, ScoringContext, bind_state, register, split_state, vectorize
from fbnas_jax.models.layers import ForwardMode
from fbnas_jax.models.nb201_thin import ThinNB201, init_thin
from fbnas_jax.spaces import of_network

__all__ = ["DEFAULT_OPTIONS", "TEG_COMPONENTS", "resolve_options", "centred_one_hot", "per_sample_grads",
           "kernel_regression_mse", "ntk_regression_kernels", "generalization_kernels", "generalization_score",
           "build_generalization", "finish_generalization",
           "count_unique_rows", "tenas_crops", "thin_linear_regions", "build_linear_regions_tenas",
           "jit_arch", "map_archs"]

DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    # TEG-NAS (reference: batch 64, 3 repeats, plain inverse, cell parameters)
    "teg_generalization": {"batch_size": 64, "repeats": 3, "ridge": 0.0, "params": "cells"},
    # TE-NAS / TEG-NAS: Linear_Region_Collector(input_size=(1000, 1, 3, 3), sample_batch=3), 3 inits
    "linear_regions_tenas": {"batch_size": 1000, "batches": 3, "repeats": 3, "crop": 3, "channels": 1},
}
TEG_COMPONENTS = ("ntk_cond", "linear_regions_tenas", "teg_generalization")
PARAM_SETS = ("cells", "all")


def resolve_options(name: str, ctx: ScoringContext) -> dict[str, Any]:
    """Defaults overridden by ``ctx.options[name]``; bad values raise ``ValueError``. The
    generalization batch is capped at half of ``ctx.images`` (as ``training_free`` caps its
    batches): ``fbnas score --eval-batch-size 128`` gives the paper's 64 + 64."""
    opts = dict(DEFAULT_OPTIONS[name])
    opts.update((ctx.options or {}).get(name, {}) or {})
    for k in ("batch_size", "repeats") + (("batches", "crop", "channels") if name == "linear_regions_tenas" else ()):
        if int(opts[k]) < 1:
            raise ValueError(f"{name}: option {k} must be >= 1, got {opts[k]}")
    if name == "teg_generalization":
        if ctx.images is not None:  # a training batch and a disjoint held-out batch: at most half each
            opts["batch_size"] = int(min(int(opts["batch_size"]), len(ctx.images) // 2))
        if opts["params"] not in PARAM_SETS:
            raise ValueError(f"{name}: option params must be one of {PARAM_SETS}, got {opts['params']!r}")
        if float(opts["ridge"]) < 0:
            raise ValueError(f"{name}: option ridge must be >= 0, got {opts['ridge']}")
    return opts


# ----------------------------------------------------------------------------- generalization


def centred_one_hot(labels, num_classes: int) -> jax.Array:
    """One-hot labels minus their batch mean, ``(B, num_classes)`` float32 (TEG-NAS targets)."""
    y = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    return y - jnp.mean(y, axis=0, keepdims=True)


def is_cell_weight(path: tuple) -> bool:
    """Conv kernels and BN scales inside the NB201 cells and reduction blocks (TEG's ``cell``)."""
    return P.is_ntk_weight(path) and str(path[0]).startswith(("cell_", "reduction_"))


def per_sample_grads(net, variables, images, arch, params: str = "cells") -> jax.Array:
    """``J`` (B, P): gradient of each sample's summed logits w.r.t. the selected weights.

    One batched train-mode forward (BN statistics of ``images``), one VJP per sample
    (mapped, as :func:`fbnas_jax.indicators._proxies.ntk_gram`). ``params``: ``"cells"``
    (:func:`is_cell_weight`) or ``"all"`` (every conv kernel and BN scale). No selected
    parameter (an architecture without one) gives a zero column.
    """
    select = is_cell_weight if params == "cells" else P.is_ntk_weight
    w, rest = P.split(variables["params"], select)
    b = images.shape[0]
    if not w:
        return jnp.zeros((b, 1), jnp.float32)
    f = lambda w: jnp.sum(P.logits(net, P.merge(w, rest), variables["batch_stats"], images, arch)  # noqa: E731
                          .astype(jnp.float32), axis=1)
    _, vjp = jax.vjp(f, w)
    rows = jax.lax.map(lambda ct: vjp(ct)[0], jnp.eye(b, dtype=jnp.float32))
    return jnp.concatenate([r.reshape(b, -1) for r in jax.tree.leaves(rows)], axis=1)


def kernel_regression_mse(k_xx, k_yx, t_x, t_y, ridge: float = 0.0) -> np.ndarray:
    """``mean_i sum_c ((K_yx (K_xx + ridge*mean(diag)*I)^-1 T_x) - T_y)^2`` in float64 (NumPy).

    Shapes ``(..., B, B)``, ``(..., B', B)``, ``(..., B, C)``, ``(..., B', C)`` -> float32
    ``(...)``. A singular ``K_xx`` gives NaN. The host step of ``teg_generalization``.
    """
    k_xx, k_yx, t_x, t_y = (np.asarray(a, np.float64) for a in (k_xx, k_yx, t_x, t_y))
    out = np.full(k_xx.shape[:-2], np.nan, np.float64)
    n = k_xx.shape[-1]
    for idx in np.ndindex(*k_xx.shape[:-2]):
        k = k_xx[idx]
        if ridge > 0:
            k = k + ridge * np.mean(np.diag(k)) * np.eye(n)
        try:
            alpha = np.linalg.solve(k, t_x[idx])  # reference: torch.inverse(K_xx), no regulariser
        except np.linalg.LinAlgError:
            continue  # singular: NaN -> the caller's "bad architecture" value
        with np.errstate(all="ignore"):
            pred = k_yx[idx] @ alpha
            out[idx] = np.mean(np.sum(np.square(pred - t_y[idx]), axis=-1))
    return out.astype(np.float32)


def ntk_regression_kernels(net, variables, x_train, y_train, x_test, y_test, arch, *,
                           params: str = "cells") -> tuple:
    """``(K_xx, K_yx, T_x, T_y)`` of TEG-NAS's MSE (eq. 9) for ONE init and one (train,
    held-out) pair of batches (on device); :func:`kernel_regression_mse` finishes it."""
    num_classes = int(getattr(net, "num_classes", 10))
    if x_train.shape == x_test.shape:  # one compiled backward for both batches (each its own BN statistics)
        j_x, j_y = jax.lax.map(lambda xb: per_sample_grads(net, variables, xb, arch, params),
                               jnp.stack([x_train, x_test]))
    else:
        j_x = per_sample_grads(net, variables, x_train, arch, params)
        j_y = per_sample_grads(net, variables, x_test, arch, params)
    return (j_x @ j_x.T, j_y @ j_x.T, centred_one_hot(y_train, num_classes), centred_one_hot(y_test, num_classes))


def generalization_kernels(net, variables, x_train, y_train, x_test, y_test, arch, *, params: str = "cells") -> tuple:
    """The device part of ``teg_generalization`` for one architecture: the
    :func:`ntk_regression_kernels` of every repeat, stacked (leading axis R).

    ``variables``, ``x_*``, ``y_*`` carry a leading repeat axis R (stacked inits and
    batches); ``arch`` is an int encoding (6,) or op weights (6, 5).
    """
    return jax.lax.map(lambda a: ntk_regression_kernels(net, a[0], a[1], a[2], a[3], a[4], arch, params=params),
                       (variables, x_train, y_train, x_test, y_test))


def generalization_score(kernels, ridge: float = 0.0) -> np.ndarray:
    """``teg_generalization`` from a chunk of :func:`generalization_kernels` outputs (each
    ``(n, R, ...)``): ``-mean_r MSE_r`` (higher = better); any non-finite repeat (singular
    kernel) gives ``-inf``."""
    mses = kernel_regression_mse(*kernels, ridge=ridge).astype(np.float64)  # (n, R)
    return np.where(np.all(np.isfinite(mses), axis=-1), -np.mean(mses, axis=-1), -np.inf).astype(np.float32)


def _fresh_variables(ctx: ScoringContext, r: int, input_shape):
    """Repeat ``r``'s init: ``ctx.init_variables`` for 0, else from ``fold_in(ctx.key, r)``
    (the same inits as ``ntk_cond``'s repeats)."""
    if r == 0:
        v = ctx.init_variables
    else:
        key = jax.random.fold_in(ctx.key if ctx.key is not None else jax.random.key(0), r)
        v = of_network(ctx.net).network().init_variables(ctx.net, key, input_shape)
    return {"params": v["params"], "batch_stats": v["batch_stats"]}


def regression_batches(ctx: ScoringContext, opts) -> tuple:
    """Stacked ``(variables, x_train, y_train, x_test, y_test)``, leading axis = repeats."""
    images, labels = np.asarray(ctx.images), np.asarray(ctx.labels)
    b, reps = int(opts["batch_size"]), int(opts["repeats"])
    if b < 2:
        raise ValueError(f"teg_generalization needs at least 4 images (a training batch and a disjoint held-out "
                         f"batch of >= 2 each; the paper uses 64 + 64); the scoring context has {len(images)}")
    vs, xtr, ytr, xte, yte = [], [], [], [], []
    for r in range(reps):
        lo = 2 * r * b if (2 * r + 2) * b <= len(images) else 0
        vs.append(_fresh_variables(ctx, r, images.shape[1:]))
        xtr.append(images[lo:lo + b]), ytr.append(labels[lo:lo + b])
        xte.append(images[lo + b:lo + 2 * b]), yte.append(labels[lo + b:lo + 2 * b])
    stack = lambda *xs: jnp.stack([jnp.asarray(x) for x in xs])  # noqa: E731
    return (jax.tree.map(stack, *vs), jnp.asarray(np.stack(xtr), jnp.float32), jnp.asarray(np.stack(ytr), jnp.int32),
            jnp.asarray(np.stack(xte), jnp.float32), jnp.asarray(np.stack(yte), jnp.int32))


def _check(ctx: ScoringContext, name: str, fields):
    missing = [f for f in fields if getattr(ctx, f) is None]
    if missing:
        raise ValueError(f"indicator {name!r} needs ScoringContext fields: {', '.join(missing)}")
    if of_network(ctx.net).name != "nb201":
        raise ValueError(f"indicator {name!r} is implemented for NB201 networks, not {of_network(ctx.net).name}")


def _generalization_arch(vs, xtr, ytr, xte, yte, arch, *, net, params):
    return generalization_kernels(net, vs, xtr, ytr, xte, yte, arch, params=params)


def build_generalization(ctx: ScoringContext):
    """Per-architecture ``arch -> teg_generalization`` (state bound as arguments, see
    :func:`fbnas_jax.indicators.base.bind_state`); ``arch`` (6,) int or (6, 5) float."""
    _check(ctx, "teg_generalization", ("net", "init_variables", "images", "labels"))
    opts = resolve_options("teg_generalization", ctx)
    return bind_state(_generalization_arch, *regression_batches(ctx, opts), net=ctx.net, params=str(opts["params"]))


def finish_generalization(ctx: ScoringContext):
    """Host step of ``teg_generalization`` (option ``ridge``): :func:`generalization_score`."""
    return functools.partial(generalization_score, ridge=float(resolve_options("teg_generalization", ctx)["ridge"]))


# ----------------------------------------------------------------------------- linear regions


def count_unique_rows(codes) -> jax.Array:
    """Number of distinct rows of a boolean ``(n, units)`` array (exact, jit-able).

    Rows are packed into int32 words of 30 bits and sorted lexicographically; the count is
    1 + the number of adjacent sorted rows that differ (TE-NAS's ``calc_LR`` gives the same
    number through an ``n x n`` comparison matrix).
    """
    codes = jnp.asarray(codes, bool)
    n, u = codes.shape
    words = max(1, -(-u // 30))
    padded = jnp.pad(codes, ((0, 0), (0, words * 30 - u))).reshape(n, words, 30).astype(jnp.int32)
    packed = jnp.sum(padded << jnp.arange(30, dtype=jnp.int32), axis=-1)  # (n, words)
    order = jnp.lexsort(tuple(packed[:, k] for k in range(words)))
    s = packed[order]
    return 1 + jnp.sum(jnp.any(s[1:] != s[:-1], axis=1)).astype(jnp.int32)


def tenas_crops(images, key, *, batches: int = 3, batch_size: int = 1000, crop: int = 3,
                channels: int = 1) -> np.ndarray:
    """``(batches, batch_size, crop, crop, channels)`` random crops of random channels of
    normalised ``images`` (N, H, W, C) (TE-NAS: ``RandomCrop(3)`` then ``RandChannel(1)``).
    Images are drawn with replacement when fewer than ``batches * batch_size``."""
    images = np.asarray(images, np.float32)
    n_img, h, w, c = images.shape
    if crop > min(h, w) or channels > c:
        raise ValueError(f"cannot take {crop}x{crop} crops of {channels} channel(s) from images of shape {images.shape}")
    total = batches * batch_size
    seed = np.asarray(jax.random.randint(key, (4,), 0, 2**31 - 1))
    rng = np.random.default_rng(seed.tolist())
    idx = rng.permutation(n_img)[:total] if total <= n_img else rng.integers(0, n_img, total)
    rows, cols = rng.integers(0, h - crop + 1, total), rng.integers(0, w - crop + 1, total)
    chans = np.stack([np.sort(rng.choice(c, channels, replace=False)) for _ in range(total)])
    win = np.arange(crop)
    out = images[idx[:, None, None, None], rows[:, None, None, None] + win[None, :, None, None],
                 cols[:, None, None, None] + win[None, None, :, None], chans[:, None, None, :]]
    return out.reshape(batches, batch_size, crop, crop, channels)


def thin_linear_regions(thin: ThinNB201, variables, crops, arch) -> jax.Array:
    """Distinct ReLU patterns of ONE init of the thin net over every crop of ``crops``
    ``(batches, batch, h, w, ch)``, each batch forwarded alone (its own BN statistics)."""
    codes = jax.vmap(lambda x: thin.apply(variables, x, arch, ForwardMode(train=True)))(jnp.asarray(crops))
    return count_unique_rows(codes.reshape(-1, codes.shape[-1])).astype(jnp.float32)


def _linear_regions_tenas_arch(vs, crops, arch, *, thin):
    return jnp.mean(jax.lax.map(lambda v: thin_linear_regions(thin, v, crops, arch), vs))


def build_linear_regions_tenas(ctx: ScoringContext):
    """Per-architecture ``arch -> linear_regions_tenas``; ``arch`` (6,) int or (6, 5) float."""
    _check(ctx, "linear_regions_tenas", ("net", "images"))
    opts = resolve_options("linear_regions_tenas", ctx)
    key = ctx.key if ctx.key is not None else jax.random.key(0)
    crops = tenas_crops(ctx.images, jax.random.fold_in(key, 0x7E), batches=int(opts["batches"]),
                        batch_size=int(opts["batch_size"]), crop=int(opts["crop"]), channels=int(opts["channels"]))
    thin = ThinNB201(channels=1)
    vs = [init_thin(thin, jax.random.fold_in(key, 0x7E00 + r), crops.shape[2:]) for r in range(int(opts["repeats"]))]
    vs = jax.tree.map(lambda *xs: jnp.stack(xs), *vs)
    return bind_state(_linear_regions_tenas_arch, vs, jnp.asarray(crops), thin=thin)


# ----------------------------------------------------------------------------- compiled helpers


def jit_arch(fn, finish=None):
    """``arch -> score`` compiled once, the state of a :func:`bind_state` function passed as
    arguments (not baked in as constants). Recompiles only per input form ((6,) vs (6, 5)).
    ``finish``: the indicator's host step (:meth:`~fbnas_jax.indicators.base.Indicator.finish_fn`),
    applied to the output on the host."""
    f, state = split_state(fn)
    compiled = jax.jit(f)
    if finish is None:
        return lambda arch: compiled(*state, arch)
    one = lambda out: jax.tree.map(lambda a: np.asarray(a)[None], out)  # noqa: E731  (a chunk of one)
    return lambda arch: finish(one(jax.device_get(compiled(*state, arch))))[0]


def map_archs(fn, strategy: str = "map", finish=None):
    """``archs (n, 6) | (n, 6, 5) -> scores (n,)`` compiled once per shape (``lax.map`` or
    ``vmap`` over the stack; :func:`fbnas_jax.indicators.base.vectorize`), then ``finish``
    (the indicator's host step, if any) on the host."""
    run = jit_arch(vectorize(fn, strategy))
    return run if finish is None else (lambda archs: finish(jax.device_get(run(archs))))


# ----------------------------------------------------------------------------- registry

register(Indicator(
    "teg_generalization", lambda ctx: vectorize(build_generalization(ctx), "map"), "training_free",
    ("net", "init_variables", "images", "labels"),
    "minus TEG-NAS's NTK kernel-regression MSE on a held-out batch; higher = better generalization",
    "TEG-NAS generalization: NTK kernel regression K_yx K_xx^-1 Y_x, cell parameters, 64+64 images, 3 inits",
    per_arch_cost="gradient", build_arch=build_generalization, spaces=("nb201",), finish=finish_generalization))
register(Indicator(
    "linear_regions_tenas", None, "training_free", ("net", "images"),
    "number of distinct ReLU patterns of TE-NAS's thin net (C=1, 3x3 crops); higher = more expressive",
    "TE-NAS/TEG-NAS linear regions: thin NB201 cell, 3 x 1,000 crops counted together, 3 inits",
    per_arch_cost="forward", build_arch=build_linear_regions_tenas, spaces=("nb201",)))
register(Indicator(
    "teg", None, "composite", components=TEG_COMPONENTS, per_arch_cost="free",
    sign_note="mean rank (1..n, higher = better) of ntk_cond, linear_regions_tenas, teg_generalization",
    spaces=("nb201",),
    description="TEG-NAS composite: sum (here mean) of per-indicator ranks over the scored set"))
