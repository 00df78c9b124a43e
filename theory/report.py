"""Markdown tables and figures from the committed JSON (``fbnas theory report``).

Reads ``sweep.json`` (the FCN grid), ``batch_size.json`` and ``cnn.json`` from
a results folder and writes ``verdict.md`` and ``ntk_error_vs_width.png``
(error vs width for every variant, log-log) next to them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from theory.variants import LABELS, VARIANTS

SHORT = {"derived": "derived", "derived_scaled": "derived*", "eq4": "Eq. 4", "eq4_scaled": "Eq. 4*",
         "eq4_matched": "Eq. 4 matched*", "eq4_free": "Eq. 4 fit-c*"}
EQ4 = ("eq4", "eq4_scaled", "eq4_matched", "eq4_free")


def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def best_eq4(s: dict) -> str:
    """The most generous Eq. 4 variant of a setting: smallest seed-averaged error at the largest width."""
    return min(EQ4, key=lambda v: s["seedavg_at_max_width"][v])


def _fmt_meta(meta: dict) -> str:
    keys = ("first_started", "date", "device", "jax_version", "neural_tangents_version", "numpy_version")
    extra = [f"load average {meta['loadavg_at_start'][0]:.1f} at the start of the last (resumed) call"
             if "first_started" in meta else f"load average {meta['loadavg_at_start'][0]:.1f} at start"] \
        if "loadavg_at_start" in meta else []
    for k in ("wall_seconds", "process_cpu_seconds"):
        if meta.get(k):
            extra.append(f"{k.replace('_', ' ')} {meta[k]:.0f}")
    return "; ".join([f"{k}: {meta[k]}" for k in keys if k in meta] + extra)


def sweep_table(sweep: dict) -> str:
    """One row per setting: derived limit vs every Eq. 4 variant (seed-averaged errors at the largest width)."""
    head = ("| setting | seeds | derived: seed-avg error (noise floor) | slope (per-seed / seed-avg) | derived* | "
            + " | ".join(SHORT[v] for v in EQ4) + " | fitted c | best Eq. 4: limit gap |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in sweep["settings"]:
        e, nf = s["seedavg_at_max_width"], s["noise_floor_at_max_width"]
        b = best_eq4(s)
        c = s["eq4_free_c"]["fitted_to_empirical"]
        lines.append(
            f"| {s['name']} | {s['seeds_at_max_width']} | **{e['derived']:.4f}** ({nf['derived']:.4f}) | "
            f"{s['slope']['derived']:+.2f} / {s['slope_seedavg']['derived']:+.2f} | {e['derived_scaled']:.4f} | "
            + " | ".join(f"{e[v]:.3f}" for v in EQ4)
            + f" | {'-' if c != c else f'{c:.3g}'} | {SHORT[b]} {s['limit_gap'][b]:.3f} |")
    return "\n".join(lines)


def group_summary(sweep: dict) -> list[dict]:
    """Per (activation, BN statistics): ranges over settings of the derived error and of the best Eq. 4 variant."""
    groups = {}
    for s in sweep["settings"]:
        groups.setdefault((s["setting"]["activation"], s["setting"]["stats"]), []).append(s)
    out = []
    for (act, st), ss in groups.items():
        best = [(best_eq4(s), s) for s in ss]
        out.append({"activation": act, "stats": st, "settings": len(ss),
                    "derived_max": max(s["seedavg_at_max_width"]["derived"] for s in ss),
                    "derived_min": min(s["seedavg_at_max_width"]["derived"] for s in ss),
                    "slope_min": min(s["slope"]["derived"] for s in ss),
                    "slope_max": max(s["slope"]["derived"] for s in ss),
                    "eq4_best_min": min(s["seedavg_at_max_width"][b] for b, s in best),
                    "eq4_best_max": max(s["seedavg_at_max_width"][b] for b, s in best),
                    "eq4_gap_min": min(s["limit_gap"][b] for b, s in best),
                    "eq4_slope_max": min(s["slope_seedavg"][b] for b, s in best),
                    "missed_2pct": [s["name"] for s in ss if s["seedavg_at_max_width"]["derived"] >= 0.02]})
    return out


def group_table(sweep: dict) -> str:
    w = max(s["max_width"] for s in sweep["settings"])
    lines = [f"| activation, BN statistics (settings) | derived limit: seed-avg error at width {w} | "
             "per-seed error slope vs width | most generous Eq. 4 variant: seed-avg error at width "
             f"{w} | its infinite-width gap to the derived limit |", "|---|---|---|---|---|"]
    for g in group_summary(sweep):
        lines.append(f"| {g['activation']}, {g['stats']} ({g['settings']}) | {g['derived_min']:.3f} - "
                     f"{g['derived_max']:.3f} | {g['slope_min']:+.2f} ... {g['slope_max']:+.2f} | "
                     f"{g['eq4_best_min']:.3f} - {g['eq4_best_max']:.3f} | >= {g['eq4_gap_min']:.3f} |")
    return "\n".join(lines)


def batch_size_table(bs: dict) -> str:
    lines = ["| activation | m | batch limit vs population (raw / best scale) | forward NNGP Sigma^L: batch vs "
             "population | frozen-statistics limit vs population | batch vs frozen limit | empirical (width "
             f"{bs['config']['width']}, {bs['config']['seeds']} seeds) vs batch limit, seed-avg | limit MC s.e. |",
             "|---|---|---|---|---|---|---|---|"]
    for act, v in bs["activations"].items():
        for r in v["rows"]:
            lines.append(f"| {act} | {r['m']} | {r['limit_batch_vs_population']:.3f} / "
                         f"{r['limit_batch_vs_population_scaled']:.3f} | {r['nngp_batch_vs_population']:.3f} | "
                         f"{r['limit_frozen_vs_population']:.3f} | {r['limit_batch_vs_frozen']:.3f} | "
                         f"{r['empirical_batch_vs_limit_batch_seedavg']:.3f} | {r['limit_mc_rel_stderr']:.1e} |")
        lines.append(f"| {act} | m -> inf (fit K_inf + C/m, m >= 8) | {v['extrapolated_m_inf_vs_population']:.3f} "
                     "| | | | | |")
    return "\n".join(lines)


def cnn_table(c: dict) -> str:
    lines = ["| depth, BN stats | channels | seeds | vs CNN limit: per-seed mean / seed-avg (noise floor) | vs "
             "per-pixel FCN limit: seed-avg | spread around the seed mean |", "|---|---|---|---|---|---|"]
    for s in c["settings"]:
        for r in s["rows"]:
            nf = f" ({r['cnn_limit_noise_floor']:.4f})" if "cnn_limit_noise_floor" in r else ""
            lines.append(f"| {s['depth']}, {s['stats']} | {r['channels']} | {r['seeds']} | {r['cnn_limit_mean']:.4f} / "
                         f"{r['cnn_limit_seedavg']:.4f}{nf} | {r['fcn_per_pixel_seedavg']:.4f} | "
                         f"{r['spread_around_seed_mean']:.4f} |")
        lines.append(f"| {s['depth']}, {s['stats']} | slopes | | {s['slope_cnn_limit']:+.2f} / "
                     f"{s['slope_cnn_limit_seedavg']:+.2f} | {s['slope_fcn_per_pixel_seedavg']:+.2f} | "
                     f"{s['slope_spread']:+.2f} |")
    return "\n".join(lines)


def error_vs_width_figure(sweep: dict, path: Path) -> Path:
    """Log-log error vs width for every variant: median over settings, band = range over settings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    widths = sorted({r["width"] for s in sweep["settings"] for r in s["rows"]})
    for ax, kind, title in ((axes[0], "seedavg", "error of the seed-averaged kernel (16 seeds)"),
                            (axes[1], "mean", "per-seed error, mean over seeds")):
        for i, v in enumerate(VARIANTS):
            ys = np.array([[next(r for r in s["rows"] if r["width"] == w).get(f"{v}_seedavg_first16" if kind ==
                            "seedavg" else f"{v}_mean", next(r for r in s["rows"] if r["width"] == w)[f"{v}_{kind}"])
                            for w in widths] for s in sweep["settings"]])
            med = np.median(ys, 0)
            ax.plot(widths, med, "o-", color=f"C{i}", label=LABELS[v])
            ax.fill_between(widths, ys.min(0), ys.max(0), color=f"C{i}", alpha=0.12)
        w = np.array(widths, float)
        ax.plot(w, 0.5 * (w / w[0]) ** -0.5, "k:", label="width$^{-1/2}$")
        ax.axhline(0.02, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width")
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("relative Frobenius error (median over settings; band: min-max)")
    axes[1].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"BN-only NTK of FCN-BN nets vs each reference kernel ({len(sweep['settings'])} settings: ReLU/erf, "
                 "batch/population BN, depth 1-5, 3 input sets, 2 (sigma_w, sigma_b), gamma/beta init)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _stages(c: dict) -> str:
    """'48, then 160' from the sweep config's ``extra_seeds`` (an int in older JSON)."""
    e = c.get("extra_seeds") or c["seeds"]
    return ", then ".join(map(str, e)) if isinstance(e, list) else str(e)


def write_report(results: Path = Path("theory/results")) -> list[Path]:
    """Write verdict.md and ntk_error_vs_width.png from the JSON found in ``results``."""
    results = Path(results)
    sweep, bs, cnn = (_load(results / n) for n in ("sweep.json", "batch_size.json", "cnn.json"))
    parts, written = ["# Theorem 1: measured verdict (generated by `fbnas theory report`)", ""], []
    if sweep:
        c = sweep["config"]
        parts += ["## FCN sweep (`sweep.json`)", "",
                  f"Config: widths {c['widths']}, {c['seeds']} seeds per width (settings above 2 % at the largest "
                  f"width: more in stages, up to {_stages(c)} there), batch m = {c['batch']}, d_in = "
                  f"{c['d_in']}, limit Monte Carlo {c['mc_samples']} draws x {c['mc_reps']} replicates. "
                  f"{_fmt_meta(sweep['meta'])}.", "",
                  "Errors are relative Frobenius distances to each reference; * = after the best scalar "
                  "rescaling; 'seed-avg' = error of the mean kernel over seeds; noise floor = rms per-seed "
                  "error / sqrt(seeds), the seed-avg error an unbiased reference would give.", "",
                  group_table(sweep), "", sweep_table(sweep), ""]
        written.append(error_vs_width_figure(sweep, results / "ntk_error_vs_width.png"))
    if bs:
        parts += ["## Batch size (`batch_size.json`)", "",
                  f"Kernel on the first {bs['config']['s_points']} points of batches of m points, depth "
                  f"{bs['config']['depth']}. {_fmt_meta(bs.get('meta', {}))}.", "", batch_size_table(bs), ""]
    if cnn:
        cc = cnn["config"]
        parts += ["## CNN (`cnn.json`)", "",
                  f"{cc['m_images']} images {cc['hw']}x{cc['hw']}x{cc['c_in']}, {cc['k']}x{cc['k']} circular conv "
                  f"-> BN -> ReLU, global average pooling. {_fmt_meta(cnn.get('meta', {}))}.", "", cnn_table(cnn), "",
                  "Infinite-channel gap between the per-pixel FCN limit and the CNN limit: "
                  + ", ".join(f"depth {s['depth']} {s['stats']} {s['limit_gap_fcn_per_pixel_vs_cnn']:.4f}"
                              for s in cnn["settings"]), ""]
    out = results / "verdict.md"
    out.write_text("\n".join(parts))
    return [out] + written
