"""Stage ``standalone``: FBN-NAS Figs. 2-3 -- stand-alone networks trained BN-only, gamma vs accuracy.

Random NB201 architectures (uniform, ``--seed``), each trained as a stand-alone network,
BN-only, for the preset's epochs (1, as the paper) in **both** BN placements: ``bnnas`` (BN
in convolutions only) and ``fair`` (an extra BN after every skip / pool op). K networks train
at once (:func:`fbnas_jax.training.many.train_many`); chunks of K alternate between the two
placements and continue until ``--standalone-archs`` architectures or ``--standalone-budget-s``
seconds, so the number that fit is whatever the budget allows (reported). Every chunk is
appended to ``standalone.csv`` as soon as it ends.

Per network: gamma (BN-NAS indicator from its own BN), trainability, test accuracy after
the BN-only epoch(s) (running statistics, a class-balanced random ``--standalone-eval-images``
of the test images),
final training loss, and NB201's 200-epoch test accuracy. Outputs: Kendall tau of gamma vs
both accuracies per placement, scatter plots (Fig. 2: ``bnnas``; Fig. 3: ``fair``) and
Table 1 (op counts of the top-10 by gamma), in ``standalone.json`` / ``standalone.md``.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

CSV_NAME = "standalone.csv"
FIELDS = ["arch", "bn_mode", "gamma", "trainability", "test_acc", "train_loss", "train_acc", "truth", "params"]


def _config(args, bn_mode: str):
    from fbnas_jax.config import load_config

    tag = "bnnas" if bn_mode == "bnnas" else "fair"
    return load_config(args.configs[tag], list(args.standalone_overrides) + list(args.override))


def run(args, log, save) -> dict:
    from fbnas_jax.data import normalize
    from fbnas_jax.data.dataset import balanced_subset_indices
    from fbnas_jax.groundtruth import load_ground_truth
    from fbnas_jax.models.nb201 import build_network
    from fbnas_jax.spaces import cost, nb201
    from fbnas_jax.training import many
    from fbnas_jax.training.loop import load_data, optimizer_from_config, plan_steps

    t_start = time.perf_counter()
    cfgs = {m: _config(args, m) for m in ("bnnas", "fair")}
    data = load_data(cfgs["fair"])
    gt = load_ground_truth(args.truth)
    # a class-balanced random subset of the test split (the split is stored class by class)
    n_eval = min(int(args.standalone_eval_images), len(data.test_labels))
    ev = balanced_subset_indices(data.test_labels, n_eval, data.num_classes, args.seed)
    eval_x, eval_y = normalize(data.test_images[ev], data.mean, data.std), data.test_labels[ev]
    order = np.random.default_rng([args.seed, 0x5A]).permutation(nb201.NUM_ARCHS)[:args.standalone_archs]
    all_enc = nb201.all_encodings()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / CSV_NAME
    with path.open("w", newline="") as f:
        csv.writer(f).writerow(FIELDS)
    k = int(args.standalone_chunk)
    done = {"bnnas": 0, "fair": 0}
    chunk_s: list[float] = []
    meta = {"budget_s": args.standalone_budget_s, "chunk": k, "configs": {m: c.to_dict() for m, c in cfgs.items()},
            "eval_images": args.standalone_eval_images, "chunks": []}
    c = 0  # chunk counter: block c // 2 of the architectures, in bnnas (even c) then fair (odd c)
    while (c // 2) * k < len(order):
        elapsed = time.perf_counter() - t_start
        # stop when the next chunk would probably overrun (mean of the recent chunks)
        budget = args.standalone_budget_s
        if budget is not None and chunk_s and elapsed + np.mean(chunk_s[-4:]) > budget:
            break
        mode = ("bnnas", "fair")[c % 2]
        idx = order[(c // 2) * k:(c // 2 + 1) * k]
        cfg = cfgs[mode]
        net = build_network(channels=cfg.model.channels, cells_per_stage=cfg.model.cells_per_stage,
                            num_classes=data.num_classes, bn_mode=mode, bn_momentum=cfg.model.bn_momentum)
        per_epoch, _, _ = plan_steps(cfg, data)
        t0 = time.perf_counter()
        res = many.train_many(net, all_enc[idx], data,
                              tx_fn=lambda n, cf=cfg, p=per_epoch: optimizer_from_config(cf, n, p),
                              batch_size=cfg.train.batch_size, epochs=cfg.train.epochs,
                              seed=cfg.train.seed + c // 2, augment=cfg.data.augment,
                              label_smoothing=cfg.train.label_smoothing)
        test_acc = many.evaluate_many(res, eval_x, eval_y)
        gamma, train = many.gamma_many(res, "gamma"), many.gamma_many(res, "trainability")
        truth = gt.values("cifar10_test_200ep", all_enc[idx])
        params = cost.nb201_costs(all_enc[idx])[0]
        with path.open("a", newline="") as f:
            w = csv.writer(f)
            for j, a in enumerate(idx):
                w.writerow([nb201.encoding_to_string(all_enc[a]), mode, f"{gamma[j]:.6g}", f"{train[j]:.6g}",
                            f"{test_acc[j]:.4f}", f"{res.final_loss[j]:.4f}", f"{res.final_accuracy[j]:.4f}",
                            f"{truth[j]:.4f}", f"{params[j]:.6g}"])
        chunk_s.append(time.perf_counter() - t0)
        done[mode] += len(idx)
        meta["chunks"].append({"bn_mode": mode, "archs": int(len(idx)), "steps": res.steps, "seconds": chunk_s[-1]})
        meta.update({"networks": dict(done), "seconds": time.perf_counter() - t_start})
        log(f"standalone {mode}: {done[mode]} networks ({chunk_s[-1]:.1f} s for {len(idx)}; "
            f"{meta['seconds']:.0f} s elapsed, budget {budget} s)")
        save(meta)
        c += 1
    meta.update(summarize(path, out, args))
    meta.update({"networks": dict(done), "seconds": time.perf_counter() - t_start})
    save(meta)
    return meta


def read_rows(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{bn_mode: {field: array}}`` from ``standalone.csv``."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    out: dict = {}
    for mode in ("bnnas", "fair"):
        sel = [r for r in rows if r["bn_mode"] == mode]
        out[mode] = {k: (np.asarray([r[k] for r in sel]) if k == "arch"
                         else np.asarray([float(r[k]) for r in sel])) for k in FIELDS if k != "bn_mode"}
    return out


def summarize(path: Path, out: Path, args) -> dict:
    from scipy.stats import kendalltau

    from fbnas_jax.bench import plots
    from fbnas_jax.spaces import nb201

    data = read_rows(path)
    summary: dict = {"kendall_tau": {}, "table1": {}}
    for mode, fig in (("bnnas", "fig2_standalone_gamma_bnnas.png"), ("fair", "fig3_standalone_gamma_fair.png")):
        d = data[mode]
        if len(d["gamma"]) < 3:
            continue
        tau = lambda x, y: float(kendalltau(x, y)[0])  # noqa: E731
        summary["kendall_tau"][mode] = {
            "n": int(len(d["gamma"])), "gamma_vs_test_acc": tau(d["gamma"], d["test_acc"]),
            "gamma_vs_truth_200ep": tau(d["gamma"], d["truth"]),
            "trainability_vs_truth_200ep": tau(d["trainability"], d["truth"]),
            "test_acc_vs_truth_200ep": tau(d["test_acc"], d["truth"]),
            "params_vs_truth_200ep": tau(d["params"], d["truth"]),
            "mean_test_acc": float(np.mean(d["test_acc"])), "mean_train_loss": float(np.mean(d["train_loss"]))}
        placement = "BN-NAS placement" if mode == "bnnas" else "fair placement"
        plots.scatter_plot(d["gamma"], d["truth"], out / fig, color=d["params"], color_label="params (M)",
                           xlabel=f"gamma after BN-only training ({placement})",
                           ylabel="NB201 test accuracy, 200 epochs (%)",
                           title=f"stand-alone nets, {len(d['gamma'])} archs, {placement}")
        top = np.argsort(-d["gamma"], kind="stable")[:10]
        enc = np.stack([nb201.string_to_encoding(a) for a in d["arch"][top]])
        counts = nb201.op_counts(enc).sum(axis=0)
        summary["table1"][mode] = {"op_counts": {op: int(c) for op, c in zip(nb201.OPS, counts)},
                                   "mean_params_m": float(d["params"][top].mean()),
                                   "mean_acc": float(d["truth"][top].mean())}
    lines = ["# Stand-alone BN-only networks: gamma vs accuracy (FBN-NAS Figs. 2-3)", "",
             "| placement | n | tau(gamma, acc after BN-only) | tau(gamma, NB201 200 ep) | "
             "tau(trainability, NB201) | tau(acc after BN-only, NB201) | tau(params, NB201) | mean acc |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, t in summary["kendall_tau"].items():
        lines.append(f"| {mode} | {t['n']} | {t['gamma_vs_test_acc']:.3f} | {t['gamma_vs_truth_200ep']:.3f} | "
                     f"{t['trainability_vs_truth_200ep']:.3f} | {t['test_acc_vs_truth_200ep']:.3f} | "
                     f"{t['params_vs_truth_200ep']:.3f} | {t['mean_test_acc']:.3f} |")
    lines += ["", "Table 1 (top-10 stand-alone networks by gamma):", "",
              "| placement | none | skip | conv1x1 | conv3x3 | pool | params M | NB201 acc % |",
              "|---|---|---|---|---|---|---|---|"]
    for mode, t in summary["table1"].items():
        c = t["op_counts"]
        lines.append(f"| {mode} | {c['none']} | {c['skip_connect']} | {c['nor_conv_1x1']} | {c['nor_conv_3x3']} | "
                     f"{c['avg_pool_3x3']} | {t['mean_params_m']:.3f} | {t['mean_acc']:.2f} |")
    (out / "standalone.md").write_text("\n".join(lines) + "\n")
    return summary
