"""Stage ``analyze``: Fig. 4 (rank correlations), Figs. 2-3 (gamma scatter), Table 1, Table 2.

* Correlations of every score column with ``cifar10_test_200ep``: Kendall tau, Spearman rho
  and top-10 % precision over the architectures the column scored (all 15,625 at full
  scale), plus Kendall tau on the rows *every* column scored (one common set; equal to the
  first when everything covers the whole space).
* Table 1: op counts, mean params / FLOPs / accuracy of the top-10 architectures of
  ``gamma@bnnas``, ``gamma@fair``, ``cpi@fair``, ``cpi@fairnas`` and ``naswot``.
* Table 2: the BN-NAS / SPOS evolutionary search (population 50, 20 generations, top-10
  parents, 25 mutations + 25 crossovers: 1,000 architectures) driven by each method's column,
  ``--search-seeds`` seeds, restricted to the architectures the column scored; test accuracy
  of the pick, mean +- std. Time: the supernet's training (measured), the EA itself (measured,
  on precomputed scores) and the scoring of the architectures the EA evaluated, i.e. their
  number times the per-architecture time measured in the score stage -- **computed, not
  timed separately**: the scores were computed once for the whole scored set. "random" is a
  uniformly random architecture per seed (no search).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from nb201_protocol.score_stage import SCORES_CSV

TRUTH_COLUMN = "cifar10_test_200ep"
TABLE1 = ("gamma@bnnas", "gamma@fair", "cpi@fair", "cpi@fairnas", "naswot")
TABLE2 = {"FBN-NAS, SPOS (cpi@fair)": ("cpi@fair", "fair"),
          "FBN-NAS, FairNAS (cpi@fairnas)": ("cpi@fairnas", "fairnas"),
          "BN-NAS (gamma@bnnas)": ("gamma@bnnas", "bnnas"),
          "NASWOT (naswot)": ("naswot", None),
          "random architecture": (None, None)}


def topk_table(enc, acc, params, flops, score, k=10) -> dict:
    from fbnas_jax.spaces import nb201

    ok = ~np.isnan(score)
    idx = np.flatnonzero(ok)[np.argsort(-score[ok], kind="stable")[:k]]
    counts = nb201.op_counts(enc[idx]).sum(axis=0)
    return {"op_counts": {op: int(c) for op, c in zip(nb201.OPS, counts)}, "n_ranked": int(ok.sum()),
            "mean_params_m": float(params[idx].mean()), "mean_flops_m": float(flops[idx].mean()),
            "mean_acc": float(acc[idx].mean()), "archs": [nb201.encoding_to_string(e) for e in enc[idx]]}


def _per_arch_seconds(column: str, score_meta: dict) -> float:
    """Measured scoring seconds per architecture of a column (a composite: its components)."""
    from fbnas_jax.indicators import base

    name, _, tag = column.partition("@")
    ind = base.get(name)
    parts = [f"{c}@{tag}" for c in ind.components] if ind.family == "composite" else [column]
    total = 0.0
    for p in parts:
        t = score_meta["timings"].get(p, {})
        total += t.get("run_s", np.nan) / max(score_meta["rows"].get(p, 1), 1)
    return float(total)


def search_table(scores_by_index: dict, acc_by_index: np.ndarray, meta: dict, seeds: int) -> dict:
    from fbnas_jax.search import evolutionary_search
    from fbnas_jax.spaces.nb201 import NUM_ARCHS, all_encodings, encoding_to_index

    out = {}
    for label, (col, tag) in TABLE2.items():
        if col is not None and col not in scores_by_index:
            continue
        picks, ea_s, n_eval = [], [], []
        for seed in range(seeds):
            if col is None:
                picks.append(float(acc_by_index[np.random.default_rng(seed).integers(NUM_ARCHS)]))
                continue
            s = scores_by_index[col]
            scored = ~np.isnan(s)
            r = evolutionary_search(lambda e, s=s: s[encoding_to_index(e)], np.random.default_rng(seed),
                                    candidates=None if scored.all() else all_encodings()[scored])
            picks.append(float(acc_by_index[encoding_to_index(r.encoding[None])[0]]))
            ea_s.append(r.wall_s)
            n_eval.append(r.n_evaluated)
        row = {"acc_mean": float(np.mean(picks)), "acc_std": float(np.std(picks)), "picks": picks, "seeds": seeds}
        if col is not None:
            per_arch = _per_arch_seconds(col, meta["score"])
            train_s = meta.get("train", {}).get(tag, {}).get("seconds", 0.0) if tag else 0.0
            row.update({"column": col, "n_evaluated_mean": float(np.mean(n_eval)),
                        "domain_size": int(np.sum(~np.isnan(scores_by_index[col]))),
                        "ea_s_mean": float(np.mean(ea_s)), "scoring_s_computed": float(np.mean(n_eval) * per_arch),
                        "train_s": float(train_s),
                        "total_s": float(train_s + np.mean(ea_s) + np.mean(n_eval) * per_arch)})
        out[label] = row
    return out


def run(args, log, meta) -> dict:
    from fbnas_jax.bench import correlation, plots
    from fbnas_jax.groundtruth import load_ground_truth
    from fbnas_jax.spaces.nb201 import NUM_ARCHS, encoding_to_index

    out = Path(args.out)
    table = correlation.read_scores_csv(out / SCORES_CSV)
    gt = load_ground_truth(args.truth)
    ti, qi = gt.align(table.archs)
    enc, acc = gt.encodings[ti], gt.column(TRUTH_COLUMN)[ti]
    scores = {k: np.asarray(v, np.float64)[qi] for k, v in table.columns.items()}
    common = np.all([~np.isnan(v) for v in scores.values()], axis=0)
    with warnings.catch_warnings():  # NaN = outside the scored pool: expected, counted in n
        warnings.simplefilter("ignore", correlation.NaNScoreWarning)
        rows = correlation.correlate(scores, {TRUTH_COLUMN: acc}, archs=[table.archs[i] for i in qi])
        on_common = correlation.correlate({k: np.where(common, v, np.nan) for k, v in scores.items()},
                                          {TRUTH_COLUMN: acc}) if common.sum() > 2 else [None] * len(rows)
    summary: dict = {"truth_column": TRUTH_COLUMN, "n_common": int(common.sum()),
                     "correlation": [{"indicator": r.indicator, "n": r.n, "kendall_tau": r.kendall_tau,
                                      "spearman_rho": r.spearman_rho, "top10_precision": r.top_precision,
                                      "kendall_tau_common": None if c is None else c.kendall_tau}
                                     for r, c in zip(rows, on_common)]}
    taus = {r["indicator"]: r["kendall_tau"] for r in summary["correlation"] if np.isfinite(r["kendall_tau"])}
    plots.tau_bar_chart(taus, out / "fig4_kendall_tau.png", column=TRUTH_COLUMN,
                        title=f"Kendall tau vs NB201 CIFAR-10 test accuracy ({args.preset} preset)")
    params, flops = scores.get("params"), scores.get("flops")
    for col, fig, what in (("gamma@bnnas", "fig2_gamma_bnnas.png", "BN-NAS supernet"),
                           ("gamma@fair", "fig3_gamma_fair.png", "fair (FBN) supernet, SPOS")):
        if col in scores:
            plots.scatter_plot(scores[col], acc, out / fig, color=params, color_label="params (M)",
                               xlabel=f"gamma indicator ({col})", ylabel="test accuracy (%)",
                               title=f"gamma on the {what}")
    summary["table1"] = {c: topk_table(enc, acc, params, flops, scores[c]) for c in TABLE1 if c in scores}
    by_index = {}
    flat = encoding_to_index(enc)
    for k, v in scores.items():
        by_index[k] = np.full(NUM_ARCHS, np.nan)
        by_index[k][flat] = v
    acc_by_index = np.full(NUM_ARCHS, np.nan)
    acc_by_index[flat] = acc
    summary["table2"] = search_table(by_index, acc_by_index, meta, args.search_seeds)
    summary["best_in_space"] = float(np.nanmax(acc))
    log(f"analysis: {len(rows)} columns correlated, Table 2 over {args.search_seeds} seeds")
    return summary


def write_markdown(path: Path, meta: dict) -> None:
    a, dev = meta.get("analyze", {}), meta["device"]
    tr = meta.get("train", {})
    lines = [f"# NB201 CIFAR-10 protocol, preset `{meta['preset']}` ({meta['date']}, {dev['device']}, "
             f"JAX {dev['jax']})", ""]
    if tr:
        lines += ["Supernets (BN-only; per-epoch means of the training loss / accuracy; chance: loss "
                  "ln 10 = 2.303, accuracy 0.100):", "",
                  "| supernet | C / N | steps | train s | loss per epoch | accuracy per epoch | note |",
                  "|---|---|---|---|---|---|---|"]
        for t, v in tr.items():
            m = v["config"]["model"]
            eps = v.get("epochs") or []
            note = ("diverged: " + v["diverged"]) if "diverged" in v else (
                "stopped by the time budget" if v.get("time_limited") else "")
            lines.append(f"| {t} | {m['channels']} / {m['cells_per_stage']} | {v.get('steps', '')}/"
                         f"{v.get('scheduled_steps', '')} | {v['seconds']:.0f} | "
                         + " ".join(f"{e['loss']:.3f}" for e in eps) + " | "
                         + " ".join(f"{e['accuracy']:.3f}" for e in eps) + f" | {note} |")
        lines.append("")
    stage_s = meta.get("stage_seconds", {})
    if stage_s:
        lines += ["Stage wall seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in stage_s.items())
                  + f" (load average at the end {', '.join(f'{x:.1f}' for x in meta.get('loadavg', []))})", ""]
    skipped = meta.get("score", {}).get("skipped", {})
    if skipped:
        lines += ["Skipped columns: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()), ""]
    lines += [f"Truth: {a.get('truth_column')}; n = architectures scored by the column; tau (common) over the "
              f"{a.get('n_common')} architectures every column scored.", "",
              "| column | n | Kendall tau | tau (common) | Spearman | top-10% precision | score s |",
              "|---|---|---|---|---|---|---|"]
    timings = meta.get("score", {}).get("timings", {})
    for r in a.get("correlation", []):
        common = "" if r["kendall_tau_common"] is None else f"{r['kendall_tau_common']:.3f}"
        secs = timings.get(r["indicator"], {}).get("total_s", float("nan"))
        lines.append(f"| {r['indicator']} | {r['n']} | {r['kendall_tau']:.3f} | {common} | {r['spearman_rho']:.3f} "
                     f"| {r['top10_precision']:.3f} | {secs:.1f} |")
    lines += ["", "Table 1 (top-10 architectures by each column):", "",
              "| ranking | none | skip | conv1x1 | conv3x3 | pool | params M | FLOPs M | acc % |",
              "|---|---|---|---|---|---|---|---|---|"]
    for k, t in a.get("table1", {}).items():
        c = t["op_counts"]
        lines.append(f"| {k} | {c['none']} | {c['skip_connect']} | {c['nor_conv_1x1']} | {c['nor_conv_3x3']} | "
                     f"{c['avg_pool_3x3']} | {t['mean_params_m']:.3f} | {t['mean_flops_m']:.1f} | {t['mean_acc']:.2f} |")
    lines += ["", f"Table 2 (EA, BN-NAS settings; test accuracy of the pick, mean ± std over seeds; best in space "
              f"{a.get('best_in_space', float('nan')):.2f}). Scoring s = evaluated architectures x measured "
              "per-architecture time (computed).", "",
              "| method | acc % | archs evaluated | supernet train s | EA s | scoring s | total s |",
              "|---|---|---|---|---|---|---|"]
    for k, t in a.get("table2", {}).items():
        if "column" not in t:
            lines.append(f"| {k} | {t['acc_mean']:.2f} ± {t['acc_std']:.2f} | 0 | | | | |")
            continue
        lines.append(f"| {k} | {t['acc_mean']:.2f} ± {t['acc_std']:.2f} | {t['n_evaluated_mean']:.0f} of "
                     f"{t['domain_size']} | {t['train_s']:.0f} | {t['ea_s_mean']:.2f} | {t['scoring_s_computed']:.2f} "
                     f"| {t['total_s']:.0f} |")
    path.write_text("\n".join(lines) + "\n")
