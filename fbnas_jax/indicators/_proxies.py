"""Per-architecture computations of the training-free proxies (see :mod:`.training_free`).

Everything here acts on ONE architecture of the (fresh) supernet: ``variables`` is a
supernet ``{'params', 'batch_stats'}`` and ``enc`` one int32 encoding of its space; the builders
in :mod:`.training_free` ``jax.vmap`` these over a chunk of encodings. Float64 linear
algebra (log-determinants, eigenvalues) is plain NumPy, applied on the host to what the
compiled functions return (the indicators' ``finish`` steps).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from fbnas_jax.models.layers import ForwardMode, relu_kernel_total

TRAIN = ForwardMode(train=True)
EVAL = ForwardMode(train=False)

# ----------------------------------------------------------------------------- params


def flat(tree) -> dict:
    return traverse_util.flatten_dict(tree)


def unflat(d: dict):
    return traverse_util.unflatten_dict(d)


def is_weight(path: tuple) -> bool:
    """Conv and linear weights (``kernel``): the "prunable" layers of the zero-cost proxies."""
    return path[-1] == "kernel"


def is_ntk_weight(path: tuple) -> bool:
    """What TE-NAS differentiates: parameters named ``weight`` in PyTorch, i.e. conv/linear
    kernels and BatchNorm scales (gamma); biases excluded."""
    return path[-1] in ("kernel", "scale")


def split(params, pred):
    f = flat(params)
    return {k: v for k, v in f.items() if pred(k)}, {k: v for k, v in f.items() if not pred(k)}


def merge(a: dict, b: dict):
    return unflat({**a, **b})


def tree_sum(fn, tree) -> jax.Array:
    return sum((jnp.sum(fn(x)) for x in jax.tree.leaves(tree)), jnp.zeros((), jnp.float32))


# ----------------------------------------------------------------------------- forwards


def logits(net, params, batch_stats, images, enc, mode=TRAIN):
    return net.apply({"params": params, "batch_stats": batch_stats}, images, enc, mode=mode)


def cross_entropy(out, labels):
    logp = jax.nn.log_softmax(out)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def relu_kernel(net, variables, images, enc) -> jax.Array:
    """NASWOT Hamming kernel (B, B), summed over every ReLU of the chosen architecture.

    Batch statistics (train-mode BN, running statistics untouched): shared by the
    training-free ``naswot`` (fresh supernet) and the FBN ``expressivity`` (trained one).
    """
    _, state = net.apply(
        {"params": variables["params"], "batch_stats": variables["batch_stats"]}, images, enc,
        mode=ForwardMode(train=True, relu_kernel=True), mutable=["relu_kernel"])
    return relu_kernel_total(state["relu_kernel"])


# ----------------------------------------------------------------------------- host linear algebra
# Pure NumPy, float64, batched over leading axes: the host steps (``Indicator.finish``) that
# turn a chunk of device intermediates into scores after ``jax.device_get``; no compiled
# program calls back into Python (see :mod:`fbnas_jax.indicators.base`).


def naswot_logdet(kernel) -> np.ndarray:
    """``log |det K|`` in float64 of NASWOT kernel(s) ``(..., B, B)``, as float32 ``(...)``.

    The kernel entries are integer counts (exact in float32 up to 2**24 units), but the
    determinant of a ~1e5-scaled, nearly singular 128x128 matrix is not reliable in float32,
    so it is taken in float64 (NASWOT: ``np.linalg.slogdet(K)[1]``). A singular kernel (e.g.
    all samples share one code) gives ``-inf``.
    """
    k = np.asarray(kernel, np.float64)
    with np.errstate(all="ignore"):
        _, logdet = np.linalg.slogdet(k)
    return np.asarray(logdet, np.float32)


def jacobian_gram(jac) -> jax.Array:
    """``Jc Jc^T`` (B, B) of input Jacobians ``(B, D)`` with each row centred (on device, float32).

    What :func:`jacob_cov_score` needs of a ``(B, D)`` Jacobian (``np.corrcoef`` is this
    matrix normalised by its diagonal): ``B x B`` numbers cross to the host instead of
    ``B x D``. Exact zeros stay exact (an input-independent output gives a zero row: NaN).
    """
    jac = jnp.asarray(jac, jnp.float32)
    centred = jac - jnp.mean(jac, axis=-1, keepdims=True)
    return jnp.matmul(centred, jnp.swapaxes(centred, -1, -2), precision=jax.lax.Precision.HIGHEST)


def jacob_cov_score(gram, k: float) -> np.ndarray:
    """Mellor et al. (v1) score from centred Jacobian Gram matrices ``(..., B, B)``
    (:func:`jacobian_gram`), float64: correlation ``G_ij / sqrt(G_ii G_jj)`` clipped to
    [-1, 1] (as ``np.corrcoef``), eigenvalues ``v``, ``-sum(log(v + k) + 1/(v + k))``.
    A sample whose Jacobian is constant (zero centred row): correlation undefined, NaN."""
    g = np.asarray(gram, np.float64)
    out = np.full(g.shape[:-2], np.nan, np.float64)
    with np.errstate(all="ignore"):
        d = np.sqrt(np.diagonal(g, axis1=-2, axis2=-1))
        corr = np.clip(g / d[..., :, None] / d[..., None, :], -1.0, 1.0)
    ok = np.all(np.isfinite(corr), axis=(-2, -1)) & np.all(d > 0, axis=-1)
    if ok.any():
        v = np.linalg.eigvalsh(corr[ok])
        out[ok] = -np.sum(np.log(v + k) + 1.0 / (v + k), axis=-1)
    return out.astype(np.float32)


def condition_number(gram) -> np.ndarray:
    """lambda_max / lambda_min of symmetric ``(..., B, B)`` matrices, float64 eigenvalues.

    As TE-NAS: a NaN (0/0, e.g. an all-zero NTK) becomes 1e5. A lambda_min that rounds to
    zero or below gives +inf or a negative value; :func:`ntk_cond_score` maps those to +inf.
    """
    g = np.asarray(gram, np.float64)
    ev = np.linalg.eigvalsh(g)  # ascending, batched over leading axes
    with np.errstate(all="ignore"):
        cond = ev[..., -1] / ev[..., 0]
    # TE-NAS: np.nan_to_num(eig[-1] / eig[0], nan=100000.0)
    return np.nan_to_num(cond, nan=1e5, posinf=np.inf, neginf=-np.inf).astype(np.float32)


def ntk_cond_score(grams) -> np.ndarray:
    """``-mean_r cond(NTK_r)`` of NTK Gram matrices ``(..., R, B, B)`` (R repeats); a
    non-positive condition (lambda_min <= 0: ill-conditioned) counts as +inf."""
    cond = condition_number(grams)
    cond = np.where(cond > 0, cond, np.float32(np.inf))
    return (-np.mean(cond, axis=-1)).astype(np.float32)


# ----------------------------------------------------------------------------- proxies (one arch)


def jacobian_of_sum(net, variables, images, enc):
    """d sum(f(x)) / dx over the batch (BN in train mode), flattened to (B, H*W*3)."""
    return input_family(net, variables, images, enc, ("jacob_cov",))["jacob_cov"]


def synflow(net, variables, image_shape, enc, bn_eps: float = 1e-5):
    """log of SynFlow (sum |theta * dR/dtheta|, R = sum f_{|theta|}(1)) for one architecture.

    BatchNorm is made an exact identity (eval mode, running mean 0, variance 1 - eps, fresh
    scale 1 / shift 0), i.e. the network without BN that zero-cost NAS uses for ``synflow``;
    BN parameters are not summed. A network that declares ``linear_chain`` takes one forward
    (:func:`synflow_forward`); any other one the two-pass gradient (:func:`synflow_backward`).
    """
    params, stats = _synflow_variables(variables, bn_eps)
    ones = jnp.ones((1,) + tuple(image_shape), jnp.float32)
    if getattr(net, "linear_chain", False):
        return synflow_forward(net, params, stats, ones, enc)
    return synflow_backward(net, params, stats, ones, enc)


def _synflow_variables(variables, bn_eps: float):
    params = jax.tree.map(jnp.abs, variables["params"])
    stats = unflat({k: (jnp.zeros_like(v) if k[-1] == "mean" else jnp.full_like(v, 1.0 - bn_eps))
                    for k, v in flat(variables["batch_stats"]).items()})
    return params, stats


def synflow_backward(net, params, stats, ones, enc):
    """SynFlow by reverse mode, for any network that is linear and positive in its input.

    ``R(s * 1) = s * R(1)`` and ``t * R`` scales every gradient by ``t``: a first pass at
    ``s0 = 2**-120`` measures ``G = R(1)`` without overflow, the second runs with
    ``s = t = G**-1/2`` so activations and gradients stay within float32 range for
    ``G < 2**248``, and ``log S = log(S_scaled) + log G``. All-``none`` -> ``-inf`` (S = 0).
    """
    r_of = lambda p, s: jnp.sum(logits(net, p, stats, s * ones, enc, EVAL).astype(jnp.float32))
    s0 = jnp.float32(2.0 ** -120)
    r0 = r_of(params, s0)
    ok = r0 > 0
    log_g = jnp.where(ok, jnp.log(jnp.where(ok, r0, 1.0)) - jnp.log(s0), 0.0)
    s = jnp.exp(-0.5 * log_g)
    g = jax.grad(lambda p: s * r_of(p, s))(params)
    w, _ = split(params, is_weight)
    gw, _ = split(g, is_weight)
    total = sum((jnp.sum(jnp.abs(w[k] * gw[k])) for k in w), jnp.zeros((), jnp.float32))
    return jnp.where(ok & (total > 0), jnp.log(jnp.where(total > 0, total, 1.0)) + log_g, -jnp.inf)


def synflow_forward(net, params, stats, ones, enc):
    """SynFlow from ONE forward of a batch of two, for a ``linear_chain`` network.

    Why it is exact: with weights ``|theta| >= 0``, input 1 and BN an identity, every
    per-sample op of such a network other than its conv/linear layers is linear on what
    flows through it (ReLU acts on non-negative values, pooling is an average), so ``R`` is
    a sum over paths of products of weights and ``dR/dtheta >= 0``. Hence
    ``S = sum theta * dR/dtheta = d/de R((1 + e) theta)`` at ``e = 0``: one directional
    derivative, carried forward beside the activations ``y`` as a second sample ``t``
    (``t = 0`` at the input; after a conv/linear layer ``t <- W t + W y``, the product rule;
    anything else acts on ``t`` as on ``y``). No backward pass, and no first pass to size the
    input: the output of each top-level submodule (the chain's links) is rescaled, ``y`` and
    ``t`` alike, by a power of two (exact) that brings ``max y`` to [1, 2), and
    ``log S = log t_out - sum log(scales)``. All-``none`` -> ``-inf`` (S = 0).
    """
    x = jnp.concatenate([ones, jnp.zeros_like(ones)])
    log2_scales = []

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name != "__call__":
            return out
        mod = context.module
        if _is_gated(mod):
            lin = out
            if getattr(mod, "use_bias", False):
                lin = out - mod.get_variable("params", "bias").astype(out.dtype)
            out = jnp.concatenate([out[:1], lin[1:] + lin[:1]])
        if len(mod.path) == 1:  # a link of the chain: keep y and t within float32 range
            top = jnp.max(out[0]).astype(jnp.float32)
            ok = jnp.isfinite(top) & (top > 0)
            e = jnp.where(ok, jnp.floor(jnp.log2(jnp.where(ok, top, 1.0))), 0.0)
            log2_scales.append(-e)
            out = out * jnp.exp2(-e).astype(out.dtype)
        return out

    with nn.intercept_methods(interceptor):
        out = logits(net, params, stats, x, enc, EVAL)
    t_out = jnp.sum(out[1].astype(jnp.float32))
    log_scale = sum(log2_scales, jnp.zeros((), jnp.float32)) * jnp.log(jnp.float32(2.0))
    ok = t_out > 0
    return jnp.where(ok, jnp.log(jnp.where(ok, t_out, 1.0)) - log_scale, -jnp.inf)


def weight_grads(net, variables, images, labels, enc):
    """(weights, dCE/dweights) for conv/linear kernels, BN in train mode."""
    w, rest = split(variables["params"], is_weight)
    loss = lambda w: cross_entropy(logits(net, merge(w, rest), variables["batch_stats"], images, enc), labels)
    return w, jax.grad(loss)(w)


def _is_gated(mod) -> bool:
    return isinstance(mod, (nn.Conv, nn.Dense))


def _gate_shapes(net, variables, images, enc) -> dict:
    """``{module path: (batch, channels)}`` of every conv/linear output of the network."""
    shapes: dict = {}

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and _is_gated(context.module):
            shapes[context.module.path] = (out.shape[0], out.shape[-1])
        return out

    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda: logits(net, variables["params"], variables["batch_stats"], images, enc))
    return shapes


def gated_logits(net, params, batch_stats, images, enc, gates):
    """Logits with every conv/linear output ``out`` replaced by ``out * (1 + gate)``, one gate
    per (sample, channel). At ``gate = 0`` nothing changes and
    ``dL/dgate[n, c] = sum_spatial act[n, ., c] * dL/dact[n, ., c]``: zero-cost NAS's
    per-sample, per-channel Fisher term, without capturing activations (so it also works
    inside ``lax.switch`` branches, whose values cannot leave the branch)."""
    if not gates:
        return logits(net, params, batch_stats, images, enc)

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and _is_gated(context.module):
            g = gates[context.module.path]
            g = g.reshape(g.shape[:1] + (1,) * (out.ndim - 2) + g.shape[-1:])
            out = out * (1.0 + g).astype(out.dtype)
        return out

    with nn.intercept_methods(interceptor):
        return logits(net, params, batch_stats, images, enc)


CE_FAMILY = ("snip", "grad_norm", "grasp", "fisher")


def ce_family(net, variables, images, labels, enc, want=CE_FAMILY) -> dict:
    """The cross-entropy-gradient proxies ``want`` (subset of :data:`CE_FAMILY`) from ONE
    forward/backward (GraSP adds the Hessian-gradient product on top of it).

    * snip: ``sum |w * dL/dw|``; grad_norm: ``sum_layers ||dL/dw||_2`` (w: conv/linear kernels);
    * fisher: ``sum_layers sum_c 0.5 * mean_n (dL/dgate[n, c])^2`` (:func:`gated_logits`);
    * grasp: ``-sum w * (H g)``, ``H g = d/dw <stop_gradient(g), g(w)>`` (reverse over
      reverse, as the reference: forward mode is unavailable for canonical-gradient convs).
    """
    unknown = sorted(set(want) - set(CE_FAMILY))
    if unknown:
        raise ValueError(f"ce_family computes {CE_FAMILY}, not {unknown}")
    w, rest = split(variables["params"], is_weight)
    gates = {}
    if "fisher" in want:
        gates = {k: jnp.zeros(shape, jnp.float32) for k, shape in _gate_shapes(net, variables, images, enc).items()}

    def loss(w, gates):
        out = gated_logits(net, merge(w, rest), variables["batch_stats"], images, enc, gates)
        return cross_entropy(out.astype(jnp.float32), labels)

    grads = jax.grad(loss, argnums=(0, 1))
    if "grasp" in want:
        def z(w):
            gw, gg = grads(w, gates)
            return sum(jnp.vdot(jax.lax.stop_gradient(gw[k]), gw[k]) for k in gw), (gw, gg)

        hg, (gw, gg) = jax.grad(z, has_aux=True)(w)
    else:
        gw, gg = grads(w, gates)
    zero = jnp.zeros((), jnp.float32)
    out = {}
    if "snip" in want:
        out["snip"] = sum((jnp.sum(jnp.abs(w[k] * gw[k])) for k in w), zero)
    if "grad_norm" in want:
        out["grad_norm"] = sum((jnp.sqrt(jnp.sum(jnp.square(gw[k]))) for k in gw), zero)
    if "grasp" in want:
        out["grasp"] = -sum((jnp.sum(w[k] * hg[k]) for k in w), zero)
    if "fisher" in want:
        out["fisher"] = sum((jnp.sum(0.5 * jnp.mean(jnp.square(g), axis=0)) for g in gg.values()), zero)
    return out


def snip(net, variables, images, labels, enc):
    return ce_family(net, variables, images, labels, enc, ("snip",))["snip"]


def grad_norm(net, variables, images, labels, enc):
    return ce_family(net, variables, images, labels, enc, ("grad_norm",))["grad_norm"]


def grasp(net, variables, images, labels, enc):
    """-sum theta * (H g) over conv/linear kernels (Hessian of the CE loss w.r.t. them)."""
    return ce_family(net, variables, images, labels, enc, ("grasp",))["grasp"]


def fisher(net, variables, images, labels, enc):
    """Zero-cost NAS fisher on the outputs of every conv and linear layer: per layer and
    channel ``0.5 * mean_n (sum_spatial act * dL/dact)^2``, summed over channels and layers."""
    return ce_family(net, variables, images, labels, enc, ("fisher",))["fisher"]


def input_family(net, variables, images, enc, want=("jacob_cov", "naswot")) -> dict:
    """From ONE train-mode forward: the NASWOT ReLU-code kernel (``"naswot"``, (B, B)) and the
    input Jacobian of the summed output (``"jacob_cov"``, (B, H*W*C), one backward)."""
    mode = ForwardMode(train=True, relu_kernel="naswot" in want)
    params, stats = variables["params"], variables["batch_stats"]

    def f(x):
        out, state = net.apply({"params": params, "batch_stats": stats}, x, enc, mode=mode, mutable=["relu_kernel"])
        k = relu_kernel_total(state.get("relu_kernel", {})) if "naswot" in want else jnp.zeros(())
        return jnp.sum(out.astype(jnp.float32)), k

    out = {}
    if "jacob_cov" in want:
        (_, k), gx = jax.value_and_grad(f, has_aux=True)(images)
        out["jacob_cov"] = gx.reshape(images.shape[0], -1)
    else:
        _, k = f(images)
    if "naswot" in want:
        out["naswot"] = k
    return out


def ntk_gram(net, variables, images, enc, cotangent_block: int = 1):
    """TE-NAS empirical NTK: Gram matrix (B, B) of per-sample gradients of the summed logits
    w.r.t. conv/linear kernels and BN scales, BN in train mode (one batched forward).

    Row i is the VJP of the batch forward with cotangent ``e_i`` (BN couples the samples, so
    it is not the gradient of sample i's own forward). ``cotangent_block``: how many of the B
    VJPs run as one vmapped backward. 1 (default): one VJP per sample, *mapped* (sequential):
    a vmap over the cotangents batches the weight-gradient convolutions, which XLA:CPU runs far
    slower; inside the map, the networks' canonical-gradient convolutions (strategy="switch")
    keep the fast path. On a GPU, B sequential backward passes per chunk are latency-bound:
    ``n > 1`` maps over blocks of n vmapped cotangents (``n >= B``: one vmap of all B). The
    same Gram matrix up to float rounding (tests/test_ntk_block.py)."""
    w, rest = split(variables["params"], is_ntk_weight)
    f = lambda w: jnp.sum(logits(net, merge(w, rest), variables["batch_stats"], images, enc).astype(jnp.float32),
                          axis=1)
    b = images.shape[0]
    n = check_cotangent_block(cotangent_block)
    _, vjp = jax.vjp(f, w)
    row = lambda ct: vjp(ct)[0]
    eye = jnp.eye(b, dtype=jnp.float32)
    if n == 1:
        rows = jax.lax.map(row, eye)  # {leaf: (B, *shape)}
    elif n >= b:
        rows = jax.vmap(row)(eye)
    else:
        rows = jax.lax.map(row, eye, batch_size=n)
    return sum((r.reshape(b, -1) @ r.reshape(b, -1).T for r in jax.tree.leaves(rows)),
               jnp.zeros((b, b), jnp.float32))


def check_cotangent_block(n) -> int:
    """``n`` as a positive int (ntk_cond's ``cotangent_block`` option), else a ValueError."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"ntk_cond option cotangent_block must be an integer >= 1, got {n!r}")
    return int(n)


def count_patterns(kernel) -> jax.Array:
    """Number of distinct ReLU activation patterns among the batch, from the Hamming kernel.

    Samples i and j share a pattern iff they agree on every unit, i.e. ``K[i, j] == K[i, i]``
    (the diagonal is the total number of units). With E the (symmetric, transitive) equality
    matrix, the number of classes is ``sum_i 1 / |class(i)|``.
    """
    diag = jnp.diagonal(kernel, axis1=-2, axis2=-1)
    same = (kernel == diag[..., :, None]).astype(jnp.float32)
    return jnp.round(jnp.sum(1.0 / jnp.sum(same, axis=-1), axis=-1))
