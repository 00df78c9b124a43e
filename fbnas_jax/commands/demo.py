"""``fbnas demo``: the method end to end in about two minutes on two CPU cores, no download.

Trains a small fair (FBN) supernet BN-only with SPOS on the embedded synthetic dataset (in the
easier demo colours of :data:`DEMO_DATA`), shows that it learns (training loss and accuracy per
epoch; subnets well above chance), prints the gamma / trainability indicators of a handful of
subnets, and, given the NAS-Bench-201 ground truth (``--truth`` or ``$FBNAS_NB201_CSV``), how
well those indicators rank all 15,625 architectures (Kendall tau; the parameter count alone as
the reference).
"""
from __future__ import annotations

import os
import time

from fbnas_jax.commands._common import add_set_option, log
from fbnas_jax.commands.core import _config
from fbnas_jax.data.loader import SYNTHETIC_VARIANTS

# The BN-only recipe of the demo: see README "Command line" for what it shows and its time.
# No augmentation: a horizontal flip turns a grating of class k into one of class 10 - k.
DEMO_OVERRIDES = (
    "model.channels=8", "model.cells_per_stage=1", "model.bn_mode=fair",
    "data.source=synthetic-easy", "data.augment=false", "train.params=bn_only", "train.sampler=spos",
    "train.epochs=2", "train.batch_size=32", "train.learning_rate=1.0", "train.log_every=1",
)
# The demo's synthetic images (`synthetic-easy`, fbnas_jax/data/loader.py): the class colour at
# full strength and the second colour near grey, so that a BN-only net with frozen random
# convolutions learns within the demo's budget (with the default set it stays near chance).
# A named source, so the workdir's run.json regenerates these same images when scored later.
DEMO_DATA = SYNTHETIC_VARIANTS["synthetic-easy"]
DEMO_ARCHS = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
)
TRUTH_COLUMN = "cifar10_test_200ep"


def epoch_means(history, steps_per_epoch: int) -> list[dict[str, float]]:
    """Mean training loss / accuracy per epoch from per-step history entries."""
    out: dict[int, list] = {}
    for h in history:
        out.setdefault((h["step"] - 1) // steps_per_epoch, []).append(h)
    return [{"epoch": e + 1, "steps": len(v), "loss": sum(h["loss"] for h in v) / len(v),
             "accuracy": sum(h["accuracy"] for h in v) / len(v)} for e, v in sorted(out.items())]


def subnet_table(result, archs, batch_size: int = 250):
    """Per subnet: params (M), FLOPs (M), gamma, |gamma|/sigma and test accuracy with weights
    inherited from the supernet. BN normalises with each test batch's own statistics (as SPOS
    recalibrates BN per subnet): the running statistics mix every subnet the supernet sampled."""
    import jax
    import numpy as np

    from fbnas_jax import data as fdata
    from fbnas_jax.models.layers import ForwardMode
    from fbnas_jax.spaces import of_network

    state, net, ds = result.state, result.net, result.dataset
    space = of_network(net)
    network = space.network()
    encodings = space.parse_many(archs)
    scores = {kind: np.asarray(network.bn_scores(state.params, state.batch_stats, encodings, net=net, kind=kind))
              for kind in ("gamma", "trainability")}
    params_m, flops_m = space.costs(encodings, **network.cost_settings(net, ds.image_shape[0]))
    logits = jax.jit(lambda v, x, e: net.apply(v, x, e, mode=ForwardMode(train=True)))
    rows = []
    for i, (arch, enc) in enumerate(zip(archs, encodings)):
        correct = total = 0
        for batch in fdata.eval_batches(ds, batch_size):
            pred = np.asarray(logits(state.variables, batch["image"], enc)).argmax(-1)
            correct += int((pred == batch["label"]).sum())
            total += len(batch["label"])
        rows.append((arch, params_m[i], flops_m[i], scores["gamma"][i], scores["trainability"][i],
                     correct / max(total, 1)))
    return rows


def truth_correlation(result, truth_path: str):
    """Kendall tau of gamma, trainability and the parameter count over all 15,625 architectures
    against the ground truth's ``cifar10_test_200ep`` (or its first numeric column)."""
    import warnings

    import numpy as np

    from fbnas_jax.bench.correlation import correlate
    from fbnas_jax.groundtruth import load_ground_truth
    from fbnas_jax.spaces import of_network

    state, net = result.state, result.net
    space = of_network(net)
    network = space.network()
    gt = load_ground_truth(truth_path, space=space)
    names = [c for c in gt.column_names if c.lower() != "index"]
    column = TRUTH_COLUMN if TRUTH_COLUMN in names else names[0]
    enc = space.all_encodings()
    scores = {f"{kind}@{net.bn_mode}": np.asarray(network.bn_scores(state.params, state.batch_stats, enc, net=net,
                                                                    kind=kind))
              for kind in ("gamma", "trainability")}
    scores["params"] = space.costs(enc)[0]  # the reference: the benchmark network's size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # architectures missing from a partial truth file are just left out
        rows = correlate(scores, {column: gt.values(column, enc)}, archs=None)
    return column, rows


def demo_data(cfg):
    """The demo's dataset as the config names it (``synthetic-easy`` unless overridden)."""
    from fbnas_jax.training.loop import load_data

    return load_data(cfg)


def cmd_demo(args) -> int:
    from fbnas_jax.data import num_batches
    from fbnas_jax.runtime import enable_compilation_cache
    from fbnas_jax.training.loop import train

    t0 = time.perf_counter()
    enable_compilation_cache()
    cfg = _config(args, DEMO_OVERRIDES)
    truth = args.truth or os.environ.get("FBNAS_NB201_CSV")
    if truth and not os.path.isfile(truth):
        raise FileNotFoundError(f"ground truth {truth!r} not found (--truth or $FBNAS_NB201_CSV)")
    ds = demo_data(cfg)
    per_epoch = num_batches(ds, cfg.train.batch_size)
    steps = per_epoch * cfg.train.epochs if cfg.train.max_steps is None else min(
        per_epoch * cfg.train.epochs, cfg.train.max_steps)
    what = ("the embedded synthetic dataset in demo colours\n  ("
            + ", ".join(f"{k} {v:g}" for k, v in DEMO_DATA.items()) + "; "
            if cfg.data.source == "synthetic-easy" else f"the {ds.name} dataset (")
    print(f"fbnas demo: a fair-BN supernet (FBN-NAS; C={cfg.model.channels}, N={cfg.model.cells_per_stage}) "
          f"trained BN-only (frozen random convolutions)\n  with SPOS on {what}{ds.num_train:,} "
          f"{ds.image_shape[0]}x{ds.image_shape[1]} images, {ds.num_classes} classes; chance "
          f"{100 / ds.num_classes:.0f} %):\n  {steps} steps; 110 s measured on 2 quiet CPU cores", flush=True)
    result = train(cfg, args.workdir, dataset=ds, progress=not args.no_progress, log=log)
    for e in epoch_means(result.history, per_epoch):
        print(f"epoch {e['epoch']}: training loss {e['loss']:.3f}, training accuracy {100 * e['accuracy']:.1f} % "
              f"({e['steps']} steps)")
    print(f"trained {int(result.state.step)} steps in {result.seconds:.1f} s (compilation included)")
    rows = subnet_table(result, DEMO_ARCHS)
    print(f"\n{'subnet (NB201 cell)':<100} {'params M':>8} {'MFLOPs':>8} {'gamma':>7} {'|g|/sig':>8} {'acc %':>6}")
    for arch, p, f, g, t, acc in sorted(rows, key=lambda r: -r[5]):
        print(f"{arch:<100} {p:8.4f} {f:8.2f} {g:7.2f} {t:8.2f} {100 * acc:6.1f}")
    print(f"\nacc % = test accuracy ({ds.num_test:,} images) of the subnet with the supernet's weights, BN "
          f"statistics re-estimated per test batch\n  (chance {100 / ds.num_classes:.0f} %; the all-`none` cell "
          "cannot see the input);\ngamma = BN-NAS indicator (sum of mean |gamma| of each op's last BN); "
          "|g|/sig = FBN-NAS trainability.")
    if truth:
        column, corr = truth_correlation(result, truth)
        print(f"\nranking all {corr[0].n:,} NB201 architectures vs ground truth {column!r} ({truth}):")
        for r in corr:
            print(f"  {r.indicator:<24} Kendall tau {r.kendall_tau:+.3f}   top-10 % precision {r.top_precision:.2f}")
        print("  (params = parameter count of the NB201 network, a strong baseline; this supernet saw only "
              "synthetic\n  images for a minute: README \"Results\" has the CIFAR-10 benchmark)")
    else:
        print("\n(set FBNAS_NB201_CSV or pass --truth to rank all 15,625 architectures against NAS-Bench-201)")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="train a small fair BN-only supernet on embedded data (~2 min on 2 CPU cores)",
                       description="Train a small FBN (fair BN) supernet BN-only on the embedded synthetic "
                                   "dataset, show that it learns, evaluate a handful of subnets and, with the "
                                   "NAS-Bench-201 ground truth, rank all 15,625 architectures by gamma.")
    p.add_argument("--config", help="optional YAML config overriding the demo settings")
    p.add_argument("--workdir", help="optional run directory (checkpoints)")
    p.add_argument("--truth", default=None,
                   help="NAS-Bench-201 ground-truth CSV (default: $FBNAS_NB201_CSV): report Kendall tau")
    add_set_option(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)
