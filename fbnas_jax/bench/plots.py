"""PNG figures for the benchmarks (matplotlib, Agg backend; imported lazily).

* :func:`scatter_plot` / :func:`scatter_plots`: indicator vs accuracy, optionally coloured
  by a third array (e.g. params) with a colorbar (the paper's Figs. 2 and 3);
* :func:`tau_bar_chart`: Kendall tau per indicator for one ground-truth column (Fig. 4).
"""
from __future__ import annotations

import math
import os
import re
from typing import Mapping, Sequence

import numpy as np

__all__ = ["scatter_plot", "scatter_plots", "tau_bar_chart"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path) -> str:
    """Write ``fig`` as PNG to ``path`` (creating folders), close it, return the path."""
    fig.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def scatter_plot(x, y, path, *, color=None, color_label: str = "", xlabel: str = "",
                 ylabel: str = "", title: str = "", max_points: int | None = None,
                 seed: int = 0) -> str:
    """Scatter ``y`` against ``x`` into ``path`` (PNG). NaN points are dropped.

    ``color``: optional per-point values shown with a colormap and a colorbar.
    ``max_points``: plot a random subset of at most this many points (None: all).
    """
    plt = _plt()
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    c = None
    if color is not None:
        c = np.asarray(color, np.float64)
        if c.shape != x.shape:
            raise ValueError(f"color has shape {c.shape}, x has {x.shape}")
        ok &= np.isfinite(c)
    idx = np.flatnonzero(ok)
    if max_points is not None and len(idx) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_points, replace=False))
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    if c is not None:
        sc = ax.scatter(x[idx], y[idx], c=c[idx], s=4, cmap="viridis", alpha=0.8, linewidths=0)
        fig.colorbar(sc, ax=ax, label=color_label)
    else:
        ax.scatter(x[idx], y[idx], s=4, alpha=0.6, linewidths=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(plt, fig, path)


def scatter_plots(scores: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray], out_dir,
                  *, indicators: Sequence[str] | None = None, columns: Sequence[str] | None = None,
                  color=None, color_label: str = "", taus: Mapping[tuple[str, str], float] | None = None,
                  max_points: int | None = None) -> list[str]:
    """One PNG per (indicator, column): ``<out_dir>/scatter_<indicator>__<column>.png``."""
    paths = []
    for ind in (indicators or list(scores)):
        for col in (columns or list(truth)):
            tau = (taus or {}).get((ind, col))
            title = f"{ind} vs {col}" + ("" if tau is None or math.isnan(tau) else f" (Kendall tau {tau:+.3f})")
            path = os.path.join(os.fspath(out_dir), f"scatter_{_safe(ind)}__{_safe(col)}.png")
            paths.append(scatter_plot(scores[ind], truth[col], path, color=color, color_label=color_label,
                                      xlabel=ind, ylabel=col, title=title, max_points=max_points))
    return paths


def tau_bar_chart(taus: Mapping[str, float], path, *, column: str = "", title: str = "") -> str:
    """Bar chart of Kendall tau per indicator (sorted, highest first); NaN drawn as 0, labelled."""
    plt = _plt()
    items = sorted(taus.items(), key=lambda kv: -np.nan_to_num(kv[1], nan=-np.inf))
    names = [k for k, _ in items]
    vals = np.asarray([v for _, v in items], np.float64)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 1.5), 3.5), dpi=120)
    colors = ["tab:blue" if v >= 0 else "tab:red" for v in np.nan_to_num(vals)]
    ax.bar(range(len(names)), np.nan_to_num(vals), color=colors)
    for i, v in enumerate(vals):
        ax.text(i, np.nan_to_num(v), "nan" if np.isnan(v) else f"{v:.2f}", ha="center",
                va="bottom" if np.nan_to_num(v) >= 0 else "top", fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel(f"Kendall tau{' vs ' + column if column else ''}")
    ax.set_title(title or "Kendall tau per indicator", fontsize=9)
    return _save(plt, fig, path)
