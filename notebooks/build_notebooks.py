"""Generate the theory notebooks with nbformat (run: python notebooks/build_notebooks.py).

Sizes are picked at run time by FBNAS_NB_SIZE=small|full (small by default, for CI).
Full-size runs write figures and JSON to theory/results/; small runs write to a
temporary directory so CI never overwrites the committed results.
"""
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent

SETUP = '''import os, sys, json, datetime, tempfile, platform
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import jax
ROOT = Path.cwd() if (Path.cwd() / "theory").is_dir() else Path.cwd().parent
sys.path.insert(0, str(ROOT))
import theory
SIZE = os.environ.get("FBNAS_NB_SIZE", "small")
assert SIZE in ("small", "full"), SIZE
OUT = ROOT / "theory" / "results" if SIZE == "full" else Path(tempfile.mkdtemp(prefix="fbnas_nb_"))
OUT.mkdir(parents=True, exist_ok=True)
META = {"date": datetime.date.today().isoformat(), "device": "CPU (2 cores)" if SIZE == "full" else platform.processor() or "CPU",
        "jax_version": jax.__version__, "size": SIZE}
from IPython.display import Image, display
print(SIZE, OUT, META)'''

KERNEL_CELLS = [
    ("md", "# BN-only NTK: convergence of the empirical kernel vs Eq. 4 and vs the derived limit\n\n"
           "FBN-NAS Theorem 1 claims that the NTK w.r.t. the BatchNorm parameters only of a fixed-weight "
           "FCN-BN network converges to the kernel of Eq. 4 (`Theta^l = sigma_w^2 Sigma^l Theta^{l-1} + Sigma^l`). "
           "We measure the relative Frobenius distance between the empirical BN-only NTK (neural-tangents "
           "`empirical_ntk_fn`, BN partition only) and (a) Eq. 4 (raw and after the best scalar rescaling), "
           "(b) our derived limit (`theory/DERIVATION.md`), over widths and seeds. If the empirical kernel "
           "converges to a reference, the error falls like width^-1/2 (log-log slope -0.5); a slope near 0 "
           "means the reference is not the limit."),
    ("code", SETUP),
    ("code", '''from theory.check import ntk_check, format_table
if SIZE == "full":
    WIDTHS, SEEDS, MC, REPS = (64, 128, 256, 512, 1024, 2048, 4096), 5, 200_000, 4
else:
    WIDTHS, SEEDS, MC, REPS = (64, 128, 256), 2, 20_000, 2
CONFIGS = [("relu", "batch"), ("erf", "batch"), ("relu", "population"), ("erf", "population")]
results = {}
for act, stats in CONFIGS:
    r = ntk_check(widths=WIDTHS, depth=3, activation=act, seeds=SEEDS, stats=stats, mc_samples=MC,
                  mc_reps=REPS, progress=False, return_kernels=True)
    results[f"{act}-{stats}"] = r
    print(format_table(r), end="\\n\\n")'''),
    ("code", '''fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 4), sharey=True)
for ax, (name, r) in zip(axes, results.items()):
    w = [row["width"] for row in r["rows"]]
    for key, lab in [("err_eq4", "Eq. 4"), ("err_eq4_scaled", "Eq. 4 (best scale)"), ("err_derived", "derived limit"),
                     ("err_stax_ref", "ref: all-param NTK, no BN, vs stax")]:
        ax.errorbar(w, [row[key + "_mean"] for row in r["rows"]], yerr=[row[key + "_std"] for row in r["rows"]],
                    marker="o", capsize=3, label=f"{lab} (slope {r['slope_' + key[4:]]:+.2f})")
    ax.plot(w, r["rows"][0]["err_derived_mean"] * (np.array(w) / w[0]) ** -0.5, "k:", label="width^-1/2")
    ax.set_xscale("log", base=2); ax.set_yscale("log"); ax.set_title(name); ax.set_xlabel("width")
    ax.legend(fontsize=7)
axes[0].set_ylabel("rel. Frobenius distance")
fig.tight_layout(); fig.savefig(OUT / "ntk_error_vs_width.png", dpi=120); plt.close(fig)
display(Image(filename=str(OUT / "ntk_error_vs_width.png")))'''),
    ("code", '''r = results["relu-batch"]; K = r["kernels"]; wmax = max(K["empirical"])
mats = [("empirical, width %d" % wmax, K["empirical"][wmax]), ("derived limit", K["derived"]), ("Eq. 4", K["eq4"])]
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
for ax, (t, m) in zip(axes, mats):
    im = ax.imshow(np.asarray(m), cmap="viridis"); ax.set_title(t); fig.colorbar(im, ax=ax)
fig.suptitle("ReLU, depth 3, batch statistics: BN-only NTK on the batch"); fig.tight_layout()
fig.savefig(OUT / "ntk_heatmaps.png", dpi=120); plt.close(fig)
display(Image(filename=str(OUT / "ntk_heatmaps.png")))'''),
    ("code", '''summary = {name: {k: v for k, v in r.items() if k != "kernels"} for name, r in results.items()}
json.dump({"meta": META, "ntk_check": summary}, open(OUT / "ntk_check.json", "w"), indent=2)
rb = summary["relu-batch"]
# the verdict below must be backed by the numbers: these assertions fail if it no longer holds
assert rb["slope_derived"] < -0.3, rb["slope_derived"]
assert abs(rb["slope_eq4_scaled"]) < 0.15 and rb["rows"][-1]["err_eq4_scaled_mean"] > 0.3
for name, s in summary.items():
    print(f"{name:18s} slope derived {s['slope_derived']:+.3f}  slope Eq.4 {s['slope_eq4']:+.3f} "
          f"(scaled {s['slope_eq4_scaled']:+.3f})  limit gap Eq.4 vs derived {s['limit_eq4_vs_derived']:.3f} "
          f"(scaled {s['limit_eq4_vs_derived_scaled']:.3f})")'''),
    ("md", "## Verdict\n\n"
           "With training-mode BatchNorm (batch statistics), the empirical BN-only NTK converges to our derived "
           "limit (error slope close to -1/2 in width) but **not** to Eq. 4: the distance to Eq. 4 does not "
           "decrease with width, even after the best scalar rescaling (slope ~0, plateau ~0.8 for ReLU, ~0.4 for "
           "erf). The infinite-width kernels themselves differ by the printed 'limit gap'. Eq. 4 is therefore "
           "not the limit of the BN-only NTK; the correct limit (derived in `theory/DERIVATION.md`) multiplies by "
           "the derivative kernels of the layers *above* (not the Sigma's of the layers below), includes the beta "
           "(shift) term, and — with batch statistics — the BatchNorm Jacobian couples the samples of the batch. "
           "Exact numbers are in the table above and in `theory/results/ntk_check.json`."),
]

DYN_CELLS = [
    ("md", "# Training dynamics: BN-only vs all-parameter GD, vs the linearised NTK prediction\n\n"
           "FCN-BN networks (depth 2, ReLU, batch-statistics BN over the full training batch) are trained with "
           "full-batch GD on a 16-point regression problem, (a) BN parameters only, (b) all parameters, each "
           "at learning rate 0.25 N / lambda_max(Theta_0). We compare the loss with the prediction of the "
           "linearised model from each run's own initial NTK (`neural_tangents.predict.gradient_descent_mse`, "
           "continuous time, and its exact discrete-time counterpart) and measure the relative kernel drift "
           "||Theta_T - Theta_0|| / ||Theta_0||."),
    ("code", SETUP),
    ("code", '''from theory.dynamics import dynamics_sweep, format_dynamics
if SIZE == "full":
    WIDTHS, SEEDS, STEPS = (64, 256, 1024, 2048), 3, 100
else:
    WIDTHS, SEEDS, STEPS = (64, 256), 1, 60
res = dynamics_sweep(widths=WIDTHS, depth=2, activation="relu", steps=STEPS, seeds=SEEDS, progress=False)
print(format_dynamics(res))'''),
    ("code", '''fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, mode in zip(axes, ("bn", "all")):
    for i, w in enumerate(WIDTHS):
        r = next(r for r in res["runs"] if r["width"] == w and r["mode"] == mode and r["seed"] == 0)
        ax.plot(r["loss"], color=f"C{i}", label=f"width {w}: GD")
        ax.plot(r["loss_lin"], "--", color=f"C{i}", label=f"width {w}: linearised (NT, cont. time)")
    ax.set_yscale("log"); ax.set_xlabel("GD step"); ax.set_title("BN-only" if mode == "bn" else "all parameters")
    ax.legend(fontsize=7)
axes[0].set_ylabel("train loss 1/(2N)||f-y||^2")
fig.tight_layout(); fig.savefig(OUT / "dynamics_loss_curves.png", dpi=120); plt.close(fig)
display(Image(filename=str(OUT / "dynamics_loss_curves.png")))

fig, ax = plt.subplots(figsize=(5, 4))
for mode, lab in (("bn", "BN-only"), ("all", "all params")):
    s = [x for x in res["summary"] if x["mode"] == mode]
    ax.plot([x["width"] for x in s], [x["kernel_drift"] for x in s], "o-", label=f"{lab} (slope {res['drift_slope'][mode]:+.2f})")
ax.set_xscale("log", base=2); ax.set_yscale("log"); ax.set_xlabel("width"); ax.set_ylabel("||Theta_T - Theta_0|| / ||Theta_0||")
ax.legend(); fig.tight_layout(); fig.savefig(OUT / "dynamics_kernel_drift.png", dpi=120); plt.close(fig)
display(Image(filename=str(OUT / "dynamics_kernel_drift.png")))'''),
    ("code", '''json.dump({"meta": META, "dynamics": res}, open(OUT / "dynamics.json", "w"), indent=2)
bn = [s for s in res["summary"] if s["mode"] == "bn"]; al = [s for s in res["summary"] if s["mode"] == "all"]
# assertions backing the verdict below (fail if it stops holding)
assert bn[-1]["kernel_drift"] < bn[0]["kernel_drift"], "BN-only kernel drift should shrink with width"
assert res["drift_slope"]["bn"] < -0.3
for b, a in zip(bn, al):
    print(f"width {b['width']}: final loss ratio BN-only {b['final_loss_ratio']:.2e} vs all {a['final_loss_ratio']:.2e}; "
          f"cond(Theta_0) {b['cond']:.1f} vs {a['cond']:.1f}; drift {b['kernel_drift']:.3f} vs {a['kernel_drift']:.3f}")'''),
    ("md", "## Verdict\n\n"
           "BN-only training is in the lazy (NTK) regime in the same sense as all-parameter training: the relative "
           "kernel drift decreases with width (log-log slope printed above, about -1 for both) and the loss "
           "follows the linearised prediction from the initial BN-only NTK to within a few percent of the initial "
           "loss at widths >= 256. Its convergence rate, however, does **not** match all-parameter training: "
           "at the same fraction of the maximal stable step the BN-only NTK is worse conditioned and the loss after "
           "the same number of steps is higher by orders of magnitude (see the final-loss ratios above). The "
           "rate is set by the BN-only kernel's spectrum, which differs from the all-parameter NTK's."),
]


def build(cells, path):
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell(s) if t == "md" else nbf.v4.new_code_cell(s) for t, s in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbf.write(nb, path)


if __name__ == "__main__":
    build(KERNEL_CELLS, HERE / "01_bn_ntk_kernel_convergence.ipynb")
    build(DYN_CELLS, HERE / "02_bn_training_dynamics.ipynb")
    print("wrote notebooks to", HERE)
