"""Generate the theory notebooks with nbformat (run: python notebooks/build_notebooks.py [01 02 03]).

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
print(SIZE, OUT.relative_to(ROOT) if OUT.is_relative_to(ROOT) else OUT, META)'''

KERNEL_CELLS = [
    ("md", "# BN-only NTK: the corrected Theorem 1 against finite nets, and every fair reading of Eq. 4\n\n"
           "FBN-NAS Theorem 1 claims that the NTK w.r.t. the BatchNorm parameters only of a fixed-weight FCN-BN "
           "network converges to Eq. 4, `Theta^l = sigma_w^2 Sigma^l Theta^{l-1} + Sigma^l`. "
           "`theory/DERIVATION.md` states and derives the limit that holds instead (for ReLU with population "
           "statistics: `Theta^l = (sigma_w^2/s_l^2) Sigma_dot^l Theta^{l-1} + Sigma^l` plus a beta term; with batch "
           "statistics the BN Jacobian couples the batch). Here the empirical BN-only NTK (neural-tangents "
           "`empirical_ntk_fn`, BN partition only) of finite nets is compared with the derived limit and with every "
           "variant of Eq. 4: verbatim, best outer scale, (a) Sigma of the network as it is (batch statistics, random "
           "gamma/beta), (b) a fitted constant in place of sigma_w^2; (c) gamma, beta ~ N(0, 1) at initialisation is "
           "a setting of the sweep. Settings: ReLU/erf x batch/population BN x depth 1-5, three input sets "
           "(two Gaussian draws, points on a circle), two (sigma_w, sigma_b), both gamma/beta initialisations.\n\n"
           "A reference that is the limit gives errors falling like width^-1/2, and the error of the seed-averaged "
           "kernel keeps falling (its 'noise floor' is rms(per-seed error)/sqrt(seeds)); a wrong reference leaves a floor."),
    ("code", SETUP),
    ("code", '''from IPython.display import Markdown
from theory import report
from theory.sweep import run_sweep
committed = OUT / "sweep.json"
if SIZE == "full" and committed.exists() and json.loads(committed.read_text())["meta"].get("complete"):
    sweep = json.loads(committed.read_text())
    print("full size: loaded theory/results/sweep.json (recompute or resume: fbnas theory sweep --size full)")
else:  # small: a 3-setting sweep in a temporary directory, about a minute on 2 CPU cores
    sweep = run_sweep(SIZE, out=OUT / "sweep.json", state=None if SIZE == "full" else OUT / "state.pkl",
                      progress=False)
print(SIZE, "sweep:", len(sweep["settings"]), "settings, widths", sweep["config"]["widths"])
display(Markdown(report.group_table(sweep)))
display(Markdown(report.sweep_table(sweep)))'''),
    ("code", '''fig_path = report.error_vs_width_figure(sweep, OUT / "ntk_error_vs_width.png")
display(Image(filename=str(fig_path)))'''),
    ("code", '''from theory.check import ntk_check
w = 4096 if SIZE == "full" else 128
r = ntk_check(widths=(w,), depth=3, seeds=4 if SIZE == "full" else 2, progress=False, reference=False,
              mc_samples=200_000 if SIZE == "full" else 10_000, return_kernels=True)
K = r["kernels"]
mats = [(f"empirical, width {w} (mean of {r['rows'][0]['seeds']} seeds)", K["empirical"][w].mean(0)),
        ("derived limit", K["derived"]), ("Eq. 4 verbatim", K["eq4"])]
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
for ax, (t, m) in zip(axes, mats):
    im = ax.imshow(np.asarray(m), cmap="viridis"); ax.set_title(t); fig.colorbar(im, ax=ax)
fig.suptitle("ReLU, depth 3, batch statistics: BN-only NTK on the 8-point batch"); fig.tight_layout()
fig.savefig(OUT / "ntk_heatmaps.png", dpi=110); plt.close(fig)
display(Image(filename=str(OUT / "ntk_heatmaps.png")))'''),
    ("code", '''# the verdict below must be backed by the numbers: these assertions fail if it stops holding
for s in sweep["settings"]:
    e, b = s["seedavg_at_max_width"], report.best_eq4(s)
    if s["setting"]["stats"] == "batch":  # every Eq. 4 variant is far off with batch statistics, at any size
        assert e[b] > (2 if SIZE == "full" else 1.2) * e["derived"] and s["limit_gap"][b] > 0.1, (s["name"], b, e)
    if SIZE == "full":  # (at small size, 3 seeds at 2 widths are too few for a slope: per-seed errors are heavy-tailed)
        assert s["slope"]["derived"] < -0.3, (s["name"], s["slope"]["derived"])
        assert e[b] > 1.5 * e["derived"] and s["limit_gap"][b] > 0.015, (s["name"], b, e)
        assert e["derived"] < 0.02, (s["name"], e["derived"])  # the 2 % goal, met in every setting
for g in report.group_summary(sweep):
    print(f"{g['activation']:>4} {g['stats']:>10}: derived limit {g['derived_min']:.3f}-{g['derived_max']:.3f} "
          f"(slopes {g['slope_min']:+.2f}..{g['slope_max']:+.2f}); best Eq. 4 variant {g['eq4_best_min']:.3f}-"
          f"{g['eq4_best_max']:.3f}, infinite-width gap >= {g['eq4_gap_min']:.3f}; settings at or above 2 %: "
          f"{g['missed_2pct'] or 'none'}")'''),
    ("md", "## Verdict (full size, `theory/results/verdict.md`)\n\n"
           "In all 32 settings the empirical BN-only NTK converges to the derived limit: the per-seed error falls like "
           "width^-0.36 ... width^-0.59, and the error of the seed-averaged kernel at width 4096 sits at its noise "
           "floor (0.6-1.9 %: below 2 % in all 32 settings; the hardest, erf with batch statistics on circle inputs, "
           "needed 160 seeds: 2.3 % with 48 against a 2.1 % noise floor, 0.8 % with 160). No reading of Eq. 4 is the limit. With batch "
           "statistics (training-mode BN, what BN-only supernet training uses) every variant, including Eq. 4 built "
           "from batch-statistics Sigma and Eq. 4 with a fitted inner constant, stays 15-89 % away and does not "
           "improve with width. With population statistics the most generous variant (fitted constant; Sigma of the "
           "random gamma/beta net) comes within 2.0-4.5 % for ReLU (12.8 % at depth 1, where the missing beta term is "
           "the whole difference), within 2.6 % and 9.1 % for erf in two settings and 62-92 % otherwise -- still "
           "resolved from the derived limit at width 4096. Exact numbers: the tables above."),
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


STUDY_CELLS = [
    ("md", "# BN-only NTK: batch size, and a convolutional net\n\n"
           "**Batch size.** Training-mode BN couples the samples of a batch, so the BN-only NTK on a batch of m "
           "points and its limit depend on m. On the first 4 points of a fixed sequence we compute, for m = 4 ... 64, "
           "the derived limit for batch statistics, for batch statistics without gradient through them (frozen), "
           "and for population statistics, check the batch limits against finite nets, and ask whether the batch "
           "limit approaches the population kernel as m grows.\n\n"
           "**CNN.** A small BN-only CNN (3x3 circular conv -> BN -> ReLU, global average pooling, readout): does its "
           "kernel concentrate as the channel count grows, and on what? We compare it with the derived CNN limit "
           "(the FCN recursion over images x pixels, with the CNTK rule that a k x k conv averages the covariance "
           "over the k^2 diagonal shifts) and with the FCN limit applied per pixel."),
    ("code", SETUP),
    ("code", '''from IPython.display import Markdown
from theory import report, studies
from theory.sweep import meta
def load_or_run(name, fn):
    path = OUT / name
    if SIZE == "full" and path.exists():
        print(f"full size: loaded theory/results/{name} (recompute: fbnas theory {name[:-5].replace('_', '-')} "
              f"--size full --out theory/results/{name})")
        return json.loads(path.read_text())
    res = {"meta": meta(), **fn(SIZE, progress=False)}
    path.write_text(json.dumps(res, indent=1))
    return res
bs = load_or_run("batch_size.json", lambda size, progress: studies.batch_size_study(
    size, activations=("relu", "erf") if size == "full" else ("relu",), progress=progress))
display(Markdown(report.batch_size_table(bs)))'''),
    ("code", '''fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for i, (act, v) in enumerate(bs["activations"].items()):
    ms = [r["m"] for r in v["rows"]]
    for key, lab, ls in (("limit_batch_vs_population", "batch limit vs population", "-"),
                         ("limit_frozen_vs_population", "frozen-stats limit vs population", "--"),
                         ("nngp_batch_vs_population", "forward NNGP: batch vs population", ":")):
        axes[0].plot(ms, [r[key] for r in v["rows"]], marker="o", ls=ls, color=f"C{i}", label=f"{act}: {lab}")
    axes[1].plot(ms, [r["empirical_batch_vs_limit_batch_seedavg"] for r in v["rows"]], "o-", color=f"C{i}",
                 label=f"{act}: empirical vs batch limit")
    axes[1].plot(ms, [r["empirical_batch_vs_population_seedavg"] for r in v["rows"]], "s--", color=f"C{i}",
                 label=f"{act}: empirical vs population kernel")
for ax, t in zip(axes, ("infinite-width kernels on the first 4 points", "finite nets (seed-averaged)")):
    ax.set_xscale("log", base=2); ax.set_yscale("log"); ax.set_xlabel("batch size m"); ax.set_title(t)
    ax.legend(fontsize=7)
axes[0].set_ylabel("relative Frobenius distance")
fig.tight_layout(); fig.savefig(OUT / "batch_size.png", dpi=110); plt.close(fig)
display(Image(filename=str(OUT / "batch_size.png")))
for act, v in bs["activations"].items():
    last = v["rows"][-1]
    # the batch limit is what finite nets approach at every m (closer than the population kernel)
    for r in v["rows"]:
        assert r["empirical_batch_vs_limit_batch_seedavg"] < r["empirical_batch_vs_population_seedavg"], (act, r)
    print(f"{act}: m = {last['m']}: batch limit is {last['limit_batch_vs_population']:.3f} from the population kernel; "
          f"extrapolated m -> inf: {v['extrapolated_m_inf_vs_population']:.3f}")'''),
    ("code", '''cn = load_or_run("cnn.json", lambda size, progress: studies.cnn_study(
    size, depths=(2, 3) if size == "full" else (2,), progress=progress))
display(Markdown(report.cnn_table(cn)))
fig, ax = plt.subplots(figsize=(6, 4.2))
for i, s in enumerate(cn["settings"]):
    cs = [r["channels"] for r in s["rows"]]
    ax.plot(cs, [r["cnn_limit_seedavg"] for r in s["rows"]], "o-", color=f"C{i}",
            label=f"depth {s['depth']}, {s['stats']}: vs CNN limit (seed-avg)")
    ax.plot(cs, [r["cnn_limit_mean"] for r in s["rows"]], "s:", color=f"C{i}", alpha=0.6,
            label=f"depth {s['depth']}, {s['stats']}: vs CNN limit (per seed, slope {s['slope_cnn_limit']:+.2f})")
cs = np.array(cs, float); ax.plot(cs, 0.3 * (cs / cs[0]) ** -0.5, "k--", lw=0.8, label="channels$^{-1/2}$")
ax.set_xscale("log", base=2); ax.set_yscale("log"); ax.set_xlabel("channels"); ax.set_ylabel("rel. Frobenius error")
ax.legend(fontsize=6); fig.tight_layout(); fig.savefig(OUT / "cnn_concentration.png", dpi=110); plt.close(fig)
display(Image(filename=str(OUT / "cnn_concentration.png")))
for s in cn["settings"]:
    assert all(np.isfinite(r["cnn_limit_mean"]) for r in s["rows"])
    if SIZE == "full":  # concentrates at the standard rate, onto the derived CNN limit
        assert s["slope_cnn_limit"] < -0.3 and s["rows"][-1]["cnn_limit_seedavg"] < 0.03, s
    print(f"depth {s['depth']} {s['stats']}: per-seed error slope {s['slope_cnn_limit']:+.2f}, seed-avg error at "
          f"{s['rows'][-1]['channels']} channels {s['rows'][-1]['cnn_limit_seedavg']:.4f}; per-pixel FCN limit is "
          f"{s['limit_gap_fcn_per_pixel_vs_cnn']:.4f} from the CNN limit")'''),
    ("md", "## Verdict (full size, `theory/results/verdict.md`)\n\n"
           "**Batch size.** For every m the finite nets approach the derived batch limit (seed-averaged errors "
           "1.4-3.1 % at width 2048 for m >= 8), so the limit is right at each batch size; but it does **not** approach "
           "the population-statistics kernel as m grows: at m = 64 it is 0.41 (ReLU) and 0.53 (erf) away, and a "
           "K_inf + C/m extrapolation gives 0.37 and 0.52. `DERIVATION.md`'s earlier claim that population statistics "
           "are the large-batch limit was wrong. For ReLU the forward pass already differs (the batch mean tends to "
           "the channel's data mean, which is not zero: ReLU features share a large common component). For erf the "
           "forward pass and the frozen-statistics (eval-mode) kernel do approach the population ones (0.07 and 0.10 "
           "at m = 64), but the gradient through the batch statistics keeps the training-mode kernel away. "
           "**CNN.** The BN-only CNN kernel concentrates with channel count (per-seed error ~ channels^-0.36 ... -0.52) "
           "onto the derived CNN limit (seed-averaged error at 1024 channels at its noise floor); with global average "
           "pooling that limit is within 0.13-0.23 % of the FCN limit applied per pixel, too close for finite nets of "
           "this size to tell apart."),
]


NOTEBOOKS = {"01": (KERNEL_CELLS, "01_bn_ntk_kernel_convergence.ipynb"),
             "02": (DYN_CELLS, "02_bn_training_dynamics.ipynb"),
             "03": (STUDY_CELLS, "03_bn_ntk_batch_size_and_cnn.ipynb")}

if __name__ == "__main__":
    import sys

    # rebuilding a notebook drops its outputs: name the ones to rebuild (default: all), e.g. `01 03`
    picked = sys.argv[1:] or list(NOTEBOOKS)
    unknown = [p for p in picked if p not in NOTEBOOKS]
    if unknown:
        sys.exit(f"unknown notebook(s) {unknown}; choose from {sorted(NOTEBOOKS)}")
    for key in picked:
        cells, name = NOTEBOOKS[key]
        build(cells, HERE / name)
        print("wrote", HERE / name)
