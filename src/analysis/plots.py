"""Render a sweep's plots (metric against each swept parameter, parallel coordinates, parameter
importance) to PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from src.ml.plots import save_png  # noqa: E402


def save_sweep_plots(
    ranked: pd.DataFrame, params: list[str], metric: str, importance: pd.DataFrame, out_dir: Path
) -> list[Path]:
    """metric_vs_params.png, parallel_coordinates.png and parameter_importance.png of the ranked
    children over the swept `params` (none without a ranked child or a param that varies)."""
    if ranked.empty or not params:
        return []
    paths = [out_dir / "metric_vs_params.png", out_dir / "parallel_coordinates.png"]
    draw = [lambda: plot_metric_vs_params(ranked, params, metric),
            lambda: plot_parallel_coordinates(ranked, params, metric)]  # fmt: skip
    if len(importance):
        paths.append(out_dir / "parameter_importance.png")
        draw.append(lambda: plot_parameter_importance(importance, metric))
    for path, make in zip(paths, draw, strict=True):
        fig = make()
        try:
            fig.tight_layout()
            save_png(fig, path)
        finally:
            plt.close(fig)
    return paths


MAX_LABELLED_VALUES = 12  # a parallel-coordinates axis names every value up to this many


def _numeric(values: pd.Series) -> pd.Series | None:
    parsed = pd.to_numeric(values, errors="coerce")
    return parsed if parsed.notna().all() else None


def _log_spaced(values: pd.Series) -> bool:
    return bool(values.min() > 0 and values.max() / values.min() >= 100)


def natural_order(values: pd.Series) -> list[str]:
    """Distinct values as labels in their natural order: numbers ascending (3, 10), then the
    rest (None, words) alphabetically."""
    labels = values.astype(str).unique().tolist()
    number = dict(zip(labels, pd.to_numeric(pd.Series(labels), errors="coerce"), strict=True))
    return sorted(labels, key=lambda v: (0, number[v], "") if pd.notna(number[v]) else (1, 0, v))


def plot_metric_vs_params(ranked: pd.DataFrame, params: list[str], metric: str) -> plt.Figure:
    """One panel per swept param: every child's metric, and the mean per value."""
    fig, axes = plt.subplots(1, len(params), figsize=(4 * len(params), 3.5), squeeze=False)
    y = ranked[metric].astype(float)
    for ax, key in zip(axes[0], params, strict=True):
        numeric = _numeric(ranked[key])
        if numeric is not None:
            means = y.groupby(numeric).mean()
            ax.scatter(numeric, y, alpha=0.5, s=18)
            ax.plot(means.index, means.to_numpy(), color="tab:red", marker="o", label="mean")
            if _log_spaced(numeric):
                ax.set_xscale("log")
            ax.set_xticks(sorted(numeric.unique()), [f"{v:g}" for v in sorted(numeric.unique())],
                          rotation=30 if numeric.nunique() > 6 else 0)  # fmt: skip
            ax.minorticks_off()
        else:
            labels = natural_order(ranked[key])
            position = {label: i for i, label in enumerate(labels)}
            x = ranked[key].astype(str).map(position)
            jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(x))
            ax.scatter(x + jitter, y, alpha=0.5, s=18)
            means = y.groupby(x).mean()
            ax.plot(means.index, means.to_numpy(), color="tab:red", marker="o", linestyle="",
                    label="mean")  # fmt: skip
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set(xlabel=key, ylabel=metric)
        ax.legend(fontsize="small")
    fig.suptitle(f"{metric} by swept parameter")
    return fig


def plot_parallel_coordinates(ranked: pd.DataFrame, params: list[str], metric: str) -> plt.Figure:
    """Every child as a line across the swept params (scaled to 0-1) and the metric."""
    columns = [*params, metric]
    scaled = pd.DataFrame(index=ranked.index)
    ticks: dict[str, list[tuple[float, str]]] = {}
    for key in columns:
        numeric = _numeric(ranked[key])
        if numeric is None:
            labels = natural_order(ranked[key])
            codes = ranked[key].astype(str).map({v: i for i, v in enumerate(labels)})
            span = max(len(labels) - 1, 1)
            scaled[key] = codes / span
            ticks[key] = [(i / span, v) for i, v in enumerate(labels)]
        else:
            position = np.log10(numeric) if key != metric and _log_spaced(numeric) else numeric
            low, high = float(position.min()), float(position.max())
            extent = (high - low) or 1.0
            scaled[key] = (position - low) / extent
            distinct = sorted(numeric.unique())
            if key == metric or len(distinct) > MAX_LABELLED_VALUES:
                shown = [distinct[0], distinct[-1]]
            else:
                shown = distinct
            where = dict(zip(numeric, scaled[key], strict=True))
            ticks[key] = [(float(where[v]), f"{v:.4g}") for v in shown]
    fig, ax = plt.subplots(figsize=(max(5, 2 * len(columns)), 4))
    values = ranked[metric].astype(float)
    norm = plt.Normalize(values.min(), values.max())
    cmap = plt.get_cmap("viridis")
    xs = np.arange(len(columns))
    lines = [np.column_stack([xs, row]) for row in scaled.to_numpy()]
    ax.add_collection(LineCollection(lines, colors=cmap(norm(values.to_numpy())), alpha=0.6))
    ax.set_xlim(-0.1, len(columns) - 0.6)
    ax.set_ylim(-0.05, 1.05)
    for i, key in enumerate(columns):
        ax.axvline(i, color="grey", linewidth=0.8)
        for y, label in ticks[key]:
            ax.text(i + 0.03, y, label, fontsize="x-small", va="center")
    ax.set_xticks(range(len(columns)), columns, rotation=20, ha="right")
    ax.set_yticks([])
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=metric)
    ax.set_title("Parallel coordinates of all finished children")
    return fig


def plot_parameter_importance(importance: pd.DataFrame, metric: str) -> plt.Figure:
    """Bars of η² per swept param."""
    fig, ax = plt.subplots(figsize=(5, 0.5 + 0.5 * len(importance) + 1))
    ordered = importance.iloc[::-1]
    ax.barh(ordered["param"], ordered["eta_squared"], color="tab:purple")
    ax.set(xlim=(0, 1), xlabel=f"share of {metric} variance explained (η²)",
           title="Parameter importance")  # fmt: skip
    return fig
