"""BN-only training recipe sweep: peak learning rate, warm-up and weight decay on a small supernet.

Why: BN-only supernets trained at rate 0.1-0.2 with no warm-up sit near chance after a few
hundred steps. BN-NAS trains BN-only with Nesterov SGD 0.9, a linear warm-up 0.2 -> 0.8 over 5
epochs at batch 1024, cosine to 0, L2 1e-4 and label smoothing 0.1. This script trains short
runs of one small supernet under several recipes (each run = config overrides on a base
config) and records, per run:

* training loss / accuracy per epoch (mean over the epoch's steps) and every ``--log-every``
  steps, with the learning rate at that step;
* held-out accuracy: ``supernet_accuracy`` (inherited weights, batch statistics) of
  ``--eval-archs`` fixed random subnets on ``--eval-images`` CIFAR-10 *test* images (a check
  that what is learned generalises; the selection criterion is the training curve);
* the gamma indicator: mean and spread of every op's mean |gamma|, and the Kendall tau of
  ``gamma`` and ``trainability`` over all 15,625 NB201 architectures vs ``cifar10_test_200ep``
  (parameter-only, milliseconds) -- to see what weight decay does to gamma.

Results go to ``--out`` (JSON after every run, so a killed sweep keeps what it finished and a
rerun skips finished runs), then a plot and a markdown table::

    nice -n 10 python benchmarks/recipe_sweep.py --grid peak          # peak-rate sweep
    nice -n 10 python benchmarks/recipe_sweep.py --grid ablation --best-lr 1.0
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import numpy as np

BASE = ["model.channels=8", "model.cells_per_stage=1", "model.bn_mode=fair", "data.source=${FBNAS_CIFAR10_ARCHIVE}",
        "data.subset=10000", "train.sampler=spos", "train.epochs=4", "train.batch_size=128",
        "train.checkpoint_every=100000"]
BNNAS = ["train.warmup_epochs=2", "train.warmup_start_factor=0.25", "train.weight_decay=1e-4",
         "train.label_smoothing=0.1"]  # BN-NAS: warm-up over half the epochs (5 of 10), from peak/4


def grid(name: str, best_lr: float) -> dict[str, list[str]]:
    """Named run lists (run name -> overrides applied on BASE)."""
    lr = f"train.learning_rate={best_lr:g}"
    grids = {
        "peak": {
            "old (lr 0.2, no warm-up/wd/ls)": ["train.learning_rate=0.2"],
            "bnnas lr 0.1 (linear scaling)": BNNAS + ["train.learning_rate=0.1"],
            "bnnas lr 0.4": BNNAS + ["train.learning_rate=0.4"],
            "bnnas lr 1": BNNAS + ["train.learning_rate=1.0"],
            "bnnas lr 2": BNNAS + ["train.learning_rate=2.0"],
            "bnnas lr 4": BNNAS + ["train.learning_rate=4.0"],
        },
        "peak_b": {  # the high end of "peak", for a second process
            "bnnas lr 4": BNNAS + ["train.learning_rate=4.0"],
            "bnnas lr 2": BNNAS + ["train.learning_rate=2.0"],
        },
        "ablation": {
            f"lr {best_lr:g}, no warm-up": BNNAS[1:] + [lr, "train.warmup_epochs=0"],
            f"lr {best_lr:g}, warm-up 0.5 ep": BNNAS[1:] + [lr, "train.warmup_epochs=0.5"],
            f"lr {best_lr:g}, no weight decay": [o for o in BNNAS if "weight_decay" not in o] + [lr],
            f"lr {best_lr:g}, weight decay 1e-3": [o for o in BNNAS if "weight_decay" not in o] + [
                lr, "train.weight_decay=1e-3"],
        },
        "bnnas_mode": {
            "BN-NAS supernet, old (lr 0.2)": ["model.bn_mode=bnnas", "train.learning_rate=0.2"],
            f"BN-NAS supernet, bnnas lr {best_lr:g}": ["model.bn_mode=bnnas"] + BNNAS + [lr],
        },
    }
    if name not in grids:
        raise SystemExit(f"--grid must be one of {sorted(grids)}, got {name!r}")
    return grids[name]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default="peak", help="peak | ablation | bnnas_mode")
    p.add_argument("--best-lr", type=float, default=1.0, help="peak rate used by the ablation grids")
    p.add_argument("--extra", nargs="*", default=[], help="overrides applied to every run (after BASE)")
    p.add_argument("--truth", default=os.environ.get("FBNAS_NB201_CSV"), help="NB201 ground-truth CSV")
    p.add_argument("--eval-archs", type=int, default=50)
    p.add_argument("--eval-images", type=int, default=500)
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/recipe")
    p.add_argument("--part", default=None,
                   help="write recipe_sweep.<part>.json (parallel processes); the report merges every part")
    p.add_argument("--only-report", action="store_true", help="redraw plot + table from the JSON files")
    return p.parse_args(argv)


def gamma_stats(variables, net) -> dict:
    """Spread of the per-op mean |gamma| table over ops that carry a BN."""
    from fbnas_jax.models.nb201 import bn_table

    t = np.asarray(bn_table(variables["params"], variables["batch_stats"], num_cells=3 * net.cells_per_stage,
                            bn_mode=net.bn_mode))
    nz = t[t > 0]
    return {"op_gamma_mean": float(nz.mean()), "op_gamma_std": float(nz.std()),
            "op_gamma_min": float(nz.min()), "op_gamma_max": float(nz.max())}


def run_one(name, overrides, ds, truth, args, log):
    import jax

    from fbnas_jax import scoring
    from fbnas_jax.bench.correlation import correlate
    from fbnas_jax.config import load_config
    from fbnas_jax.spaces import nb201
    from fbnas_jax.training.loop import LoadedRun, optimizer_from_config, plan_steps, train, warmup_steps
    from fbnas_jax.training.steps import learning_rate_schedule

    cfg = load_config(None, BASE + args.extra + overrides + [f"train.log_every={args.log_every}"])
    per_epoch, scheduled, _ = plan_steps(cfg, ds)
    tc = cfg.train
    lr = learning_rate_schedule(learning_rate=tc.learning_rate, total_steps=scheduled,
                                warmup_steps=warmup_steps(cfg, per_epoch), warmup_start_factor=tc.warmup_start_factor,
                                schedule=tc.schedule)
    optimizer_from_config(cfg, scheduled, per_epoch)  # validates the recipe before training
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    try:
        res = train(cfg, dataset=ds, progress=False, log=log)
    except Exception as e:  # a diverged recipe is a result, not a crash of the sweep
        return {"name": name, "overrides": overrides, "config": cfg.to_dict(), "error": str(e)}
    train_s = time.perf_counter() - t0
    run = LoadedRun(cfg, res.net, jax.device_get(res.state.variables), ds.num_classes,
                    tuple(ds.train_images.shape[1:]), int(res.state.step))
    ctx = scoring.make_context(run, ds, eval_batch_size=args.eval_images, eval_split="test", mc_samples=1,
                               mc_batch_size=8, seed=0)
    enc = nb201.all_encodings()
    eval_idx = np.random.default_rng(0).choice(len(enc), args.eval_archs, replace=False)
    table = scoring.score_architectures(ctx, ["gamma", "trainability"], enc)
    held = scoring.score_architectures(ctx, ["supernet_accuracy"], enc[eval_idx], chunk_size=10)
    out = {"name": name, "overrides": overrides, "config": cfg.to_dict(), "steps": int(res.state.step),
           "steps_per_epoch": per_epoch, "train_seconds": train_s, "loadavg_before": load0,
           "loadavg_after": os.getloadavg(),
           "epochs": res.epochs,
           "curve": [dict(h, lr=float(lr(h["step"] - 1)) if callable(lr) else float(lr)) for h in res.history],
           "heldout_subnet_accuracy_mean": float(np.mean(held["supernet_accuracy"])),
           "heldout_subnet_accuracy_max": float(np.max(held["supernet_accuracy"])),
           **gamma_stats(run.variables, res.net)}
    if truth is not None:
        ti, qi = truth.align([nb201.encoding_to_string(e) for e in enc])
        acc = truth.column("cifar10_test_200ep")[ti]
        rows = correlate({k: np.asarray(table[k])[qi] for k in ("gamma", "trainability")},
                         {"cifar10_test_200ep": acc})
        out.update({f"tau_{r.indicator}": r.kendall_tau for r in rows})
    log(f"{name}: final epoch loss {res.epochs[-1]['loss']:.3f} acc {res.epochs[-1]['accuracy']:.3f}, "
        f"held-out subnet acc {out['heldout_subnet_accuracy_mean']:.3f}, {train_s:.0f} s")
    return out


def report(out: Path, results: dict) -> None:
    from fbnas_jax.bench.plots import _plt, _save

    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for r in results["runs"]:
        if "error" in r:
            continue
        steps = [h["step"] for h in r["curve"]]
        k = 8  # moving average over 8 logged points (40 steps): per-batch SPOS losses are noisy
        for ax, key in ((axes[0], "loss"), (axes[1], "accuracy")):
            y = np.asarray([h[key] for h in r["curve"]])
            y = np.convolve(y, np.ones(k) / k, mode="valid") if len(y) >= k else y
            ax.plot(steps[len(steps) - len(y):], y, label=r["name"])
        axes[2].plot(steps, [h["lr"] for h in r["curve"]], label=r["name"])
    axes[0].axhline(np.log(10), color="grey", ls=":", lw=1)
    axes[1].axhline(0.1, color="grey", ls=":", lw=1)
    for ax, t in zip(axes, ("training loss (moving avg; dotted = chance)", "training accuracy (moving avg)",
                            "learning rate")):
        ax.set_title(t, fontsize=10)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"BN-only recipe sweep: {results['setup']}", fontsize=9)
    fig.tight_layout()
    _save(plt, fig, out / "recipe_sweep.png")
    lines = [f"# BN-only recipe sweep ({results['date']}, {results['device']['device']}, JAX "
             f"{results['device']['jax']})", "", f"Setup: {results['setup']}.", "",
             "Loss includes label smoothing 0.1 where the run uses it (its floor is then ~0.5, not 0); "
             "compare accuracies across the two.", "",
             "Chance: loss ln 10 = 2.303, accuracy 0.100. Per-epoch values are means over the epoch's steps.", "",
             "| run | train loss per epoch | train acc per epoch | held-out subnet acc (mean / max) | "
             "op mean abs(gamma) (mean ± std) | tau gamma | tau trainability | train s | load |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['error']} |  |  |  |  |  |  |  |")
            continue
        losses = " ".join(f"{e['loss']:.3f}" for e in r["epochs"])
        accs = " ".join(f"{e['accuracy']:.3f}" for e in r["epochs"])
        lines.append(
            f"| {r['name']} | {losses} | {accs} | {r['heldout_subnet_accuracy_mean']:.3f} / "
            f"{r['heldout_subnet_accuracy_max']:.3f} | {r['op_gamma_mean']:.3f} ± {r['op_gamma_std']:.3f} | "
            f"{r.get('tau_gamma', float('nan')):.3f} | {r.get('tau_trainability', float('nan')):.3f} | "
            f"{r['train_seconds']:.0f} | {r['loadavg_before'][0]:.1f} |")
    (out / "recipe_sweep.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    from fbnas_jax.runtime import device_summary, enable_compilation_cache

    enable_compilation_cache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (f"recipe_sweep.{args.part}.json" if args.part else "recipe_sweep.json")
    results = json.loads(path.read_text()) if path.exists() else {"runs": []}
    if not args.only_report:
        from fbnas_jax.config import load_config
        from fbnas_jax.groundtruth import load_ground_truth
        from fbnas_jax.training.loop import load_data

        base = load_config(None, BASE + args.extra)
        ds = load_data(base)
        truth = load_ground_truth(args.truth) if args.truth else None
        results.update({"date": dt.date.today().isoformat(), "device": device_summary(),
                        "setup": f"NB201 supernet C={base.model.channels} N={base.model.cells_per_stage}, SPOS, "
                                 f"{base.data.subset} CIFAR-10 images, batch {base.train.batch_size}, "
                                 f"{base.train.epochs} epochs, Nesterov 0.9, cosine to 0",
                        "base_overrides": BASE + args.extra})
        done = {r["name"] for r in results["runs"]}
        for name, overrides in grid(args.grid, args.best_lr).items():
            if name in done:
                continue
            r = run_one(name, overrides, ds, truth, args, print)
            r["grid"] = args.grid
            results["runs"].append(r)
            path.write_text(json.dumps(results, indent=1, default=str))
    merged = None
    for part in sorted(out.glob("recipe_sweep*.json")):
        r = json.loads(part.read_text())
        if merged is None:
            merged = r
        else:
            merged["runs"] += r["runs"]
    results = merged or results
    report(out, results)
    print(f"wrote {path}, {out / 'recipe_sweep.md'}, {out / 'recipe_sweep.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
