"""Training dynamics: full-batch GD of FCN-BN nets, BN-only vs all parameters, vs linearised NTK prediction.

Loss is L = 1/(2N) ||f(X) - y||^2 (N = number of training points), the
convention of ``neural_tangents.predict.gradient_descent_mse``, so the
linearised prediction from the initial NTK Theta_0 is directly comparable.
BN uses batch statistics over the full training set (full-batch GD).  The
learning rate is ``lr_factor * N / lambda_max(Theta_0)`` for each run (the
stable step is < 2 N / lambda_max), so BN-only and all-parameter runs are each
trained at a comparable fraction of their own maximal stable step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from theory import x64

_DATA_SALT = 2**31 - 1  # fold_in salt for the data key (never a width)


def make_problem(key, n_train: int = 16, d_in: int = 8):
    """Small regression problem: y = sin(2 <w*, x>/sqrt(d)) + 0.5 cos(<u*, x>/sqrt(d)), standardised."""
    from theory import network

    kx, kw, ku = jax.random.split(key, 3)
    x = network.make_inputs(kx, n_train, d_in)
    w = jax.random.normal(kw, (d_in,), jnp.float64)
    u = jax.random.normal(ku, (d_in,), jnp.float64)
    y = jnp.sin(2 * x @ w / np.sqrt(d_in)) + 0.5 * jnp.cos(x @ u / np.sqrt(d_in))
    return x, ((y - y.mean()) / y.std())[:, None]


def run_one(key, width: int, depth: int = 2, activation: str = "relu", mode: str = "bn",
            steps: int = 100, lr_factor: float = 0.25, sigma_w: float = 1.0, sigma_b: float = 0.1,
            n_train: int = 16, d_in: int = 8, data_key=None) -> dict:
    """Train one net (mode 'bn' = gamma/beta only, 'all' = every parameter); return curves and drift.

    ``data_key`` (default: derived from ``key``) fixes the regression problem, so
    a sweep can keep the same data across widths and modes.
    """
    from theory import network
    from theory.activations import get_activation
    from theory.nt_compat import NtkImplementation, empirical_ntk_fn, predict

    act = get_activation(activation)
    with x64():
        kd, kp = jax.random.split(key)
        kd = kd if data_key is None else data_key
        x, y = make_problem(kd, n_train, d_in)
        fixed, bn = network.init_params(kp, d_in, width, depth)

        if mode == "bn":
            params = bn
            def f(p, x_, fixed_):
                return network.apply(fixed_, p, x_, phi=act.phi, sigma_w=sigma_w, sigma_b=sigma_b)
        elif mode == "all":
            params = {"fixed": fixed, "bn": bn}
            def f(p, x_, fixed_):
                return network.apply(p["fixed"], p["bn"], x_, phi=act.phi, sigma_w=sigma_w, sigma_b=sigma_b)
        else:
            raise ValueError("mode must be 'bn' or 'all'")

        ntk_fn = empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=None,
                                  implementation=NtkImplementation.JACOBIAN_CONTRACTION)
        ntk = jax.jit(lambda p, fx: ntk_fn(x, None, p, fixed_=fx))
        theta0 = np.asarray(ntk(params, fixed))
        evals = np.linalg.eigvalsh(theta0)
        lr = lr_factor * n_train / evals[-1]

        def loss(p):
            return 0.5 * jnp.mean((f(p, x, fixed) - y) ** 2)

        @jax.jit
        def train(p):
            def step(p, _):
                l, g = jax.value_and_grad(loss)(p)
                return jax.tree.map(lambda a, b: a - lr * b, p, g), (l, f(p, x, fixed))
            p, (ls, fs) = jax.lax.scan(step, p, None, length=steps)
            return p, jnp.append(ls, loss(p)), fs

        params_t, losses, f_traj = train(params)
        theta_t = np.asarray(ntk(params_t, fixed))
        fx0 = f(params, x, fixed)
        pred = predict.gradient_descent_mse(jnp.asarray(theta0), y, learning_rate=lr)
        ts = jnp.arange(steps + 1, dtype=jnp.float64)
        f_lin = pred(ts, fx0)  # continuous-time linearised model, (T, N, 1)
        loss_lin = np.asarray(0.5 * jnp.mean((f_lin - y[None]) ** 2, axis=(1, 2)))
        # discrete-time linearised GD (same steps as the real run), for reference
        ev, evec = np.linalg.eigh(theta0)
        r0 = evec.T @ np.asarray(fx0 - y)
        fac = (1.0 - lr * ev / n_train)[None, :, None] ** np.arange(steps + 1)[:, None, None]
        res_lin_disc = evec[None] @ (fac * r0[None])  # f_lin(t) - y, (T+1, N, 1)
        loss_lin_disc = 0.5 * np.mean(res_lin_disc**2, axis=(1, 2))
        res_traj = np.asarray(f_traj) - np.asarray(y)[None]  # f(t) - y for t = 0..T-1
        fn_dev = np.linalg.norm(res_traj - res_lin_disc[:-1], axis=(1, 2)).max() / np.linalg.norm(r0)
    losses = np.asarray(losses)
    return {
        "width": width, "mode": mode, "depth": depth, "activation": activation, "lr": float(lr),
        "steps": steps, "loss": losses.tolist(), "loss_lin": loss_lin.tolist(),
        "loss_lin_discrete": loss_lin_disc.tolist(),
        "kernel_drift": float(np.linalg.norm(theta_t - theta0) / np.linalg.norm(theta0)),
        "max_loss_dev_vs_lin": float(np.max(np.abs(losses - loss_lin_disc)) / losses[0]),
        "fn_dev_vs_lin": float(fn_dev),
        "lambda_max": float(evals[-1]), "lambda_min": float(evals[0]),
        "cond": float(evals[-1] / max(evals[0], 1e-300)),
        "final_loss_ratio": float(losses[-1] / losses[0]),
    }


def dynamics_sweep(widths=(64, 256, 1024), depth=2, activation="relu", steps=100, seeds=2,
                   lr_factor=0.25, seed=0, progress=True) -> dict:
    """Run BN-only and all-parameter training over widths and seeds; aggregate drift and deviations."""
    import sys

    from tqdm import tqdm

    runs = []
    jobs = [(w, m, s) for w in widths for m in ("bn", "all") for s in range(seeds)]
    for w, m, s in tqdm(jobs, desc="dynamics", file=sys.stderr, disable=not progress):
        # same data and same initial weights for BN-only and all-param runs of one (width, seed);
        # same data across widths
        base = jax.random.fold_in(jax.random.PRNGKey(seed), s)
        key = jax.random.fold_in(base, w)
        r = run_one(key, w, depth, activation, m, steps, lr_factor, data_key=jax.random.fold_in(base, _DATA_SALT))
        r["seed"] = s
        runs.append(r)
    summary = []
    for w in widths:
        for m in ("bn", "all"):
            rs = [r for r in runs if r["width"] == w and r["mode"] == m]
            summary.append({"width": w, "mode": m,
                            **{k: float(np.mean([r[k] for r in rs])) for k in
                               ("kernel_drift", "max_loss_dev_vs_lin", "fn_dev_vs_lin", "final_loss_ratio", "cond",
                                "lambda_max", "lambda_min", "lr")}})
    slopes = {}
    for m in ("bn", "all"):
        d = [s["kernel_drift"] for s in summary if s["mode"] == m]
        slopes[m] = float(np.polyfit(np.log(widths), np.log(d), 1)[0]) if len(widths) > 1 else float("nan")
    return {"config": {"widths": list(widths), "depth": depth, "activation": activation, "steps": steps,
                       "seeds": seeds, "lr_factor": lr_factor, "seed": seed},
            "summary": summary, "drift_slope": slopes, "runs": runs}


def format_dynamics(res: dict) -> str:
    lines = [f"{'width':>6} {'mode':>4} | {'drift':>8} | {'max|L-L_lin|/L0':>15} | {'max fn dev':>10} | {'L_T/L_0':>9} | {'cond(Th0)':>9}"]
    for s in res["summary"]:
        lines.append(f"{s['width']:>6} {s['mode']:>4} | {s['kernel_drift']:8.4f} | {s['max_loss_dev_vs_lin']:15.4f} | "
                     f"{s['fn_dev_vs_lin']:10.4f} | {s['final_loss_ratio']:9.2e} | {s['cond']:9.1f}")
    lines.append(f"kernel-drift log-log slope vs width: BN-only {res['drift_slope']['bn']:+.3f}, all {res['drift_slope']['all']:+.3f}")
    return "\n".join(lines)
