"""Render a sweep's plots (metric against each swept parameter, parallel coordinates, parameter
importance, each configuration's difference to the best) to PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

from src.ml.plots import save_png  # noqa: E402

BEST_COLOR = "tab:red"
EQUAL_COLOR = "tab:blue"
WORSE_COLOR = "tab:orange"
LABEL_BOX = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"}
MAX_LABELLED_VALUES = 12  # a parallel-coordinates axis names every value up to this many
FOREST_TOP = 15  # verdict.png shows the best this many configurations
DIFF_COLUMNS = ("diff_vs_best", "diff_ci_low", "diff_ci_high")


def save_sweep_plots(
    ranked: pd.DataFrame,
    params: list[str],
    metric: str,
    importance: pd.DataFrame,
    out_dir: Path,
    heading: str = "",
    also: Sequence[str] = (),
) -> list[Path]:
    """metric_vs_params.png, parallel_coordinates.png, parameter_importance.png and verdict.png
    of the ranked children over the swept `params` (none without a ranked child or a param that
    varies), each titled with `heading` (dataset, sweep, metric); verdict.png shows the top
    configurations and the run ids in `also`."""
    if ranked.empty or not params:
        return []
    paths = [out_dir / "metric_vs_params.png", out_dir / "parallel_coordinates.png"]
    draw = [lambda: plot_metric_vs_params(ranked, params, metric, heading),
            lambda: plot_parallel_coordinates(ranked, params, metric, heading)]  # fmt: skip
    if len(importance):
        paths.append(out_dir / "parameter_importance.png")
        draw.append(lambda: plot_parameter_importance(importance, metric, heading))
    if set(DIFF_COLUMNS) <= set(ranked) and ranked["diff_vs_best"].notna().any():
        paths.append(out_dir / "verdict.png")
        draw.append(lambda: plot_verdict(ranked, params, metric, heading, also))
    for path, make in zip(paths, draw, strict=True):
        fig = make()  # laid out by its maker
        try:
            save_png(fig, path)
        finally:
            plt.close(fig)
    return paths


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


def _titled(fig: plt.Figure, heading: str, what: str) -> None:
    fig.suptitle(f"{heading}\n{what}" if heading else what, fontsize="medium")


def _spread(groups: np.ndarray, width: float) -> np.ndarray:
    """Sideways offsets in [-width, width] that set apart the runs of each group (one value of
    a parameter): evenly spaced in a seeded shuffled order, so runs with equal scores never
    overlap and the picture is the same on every run."""
    rng = np.random.default_rng(0)
    offsets = np.zeros(len(groups))
    for value in np.unique(groups):
        members = np.flatnonzero(groups == value)
        if len(members) > 1:
            offsets[rng.permutation(members)] = np.linspace(-width, width, len(members))
    return offsets


def _min_gap(values: np.ndarray) -> float:
    distinct = np.unique(values)
    return float(np.diff(distinct).min()) if len(distinct) > 1 else 1.0


def plot_metric_vs_params(
    ranked: pd.DataFrame, params: list[str], metric: str, heading: str = ""
) -> plt.Figure:
    """One strip plot per swept param: every child as a dot (spread sideways, so runs with the
    same value and score stay apart), the mean per value, and the best."""
    fig, axes = plt.subplots(1, len(params), figsize=(4.2 * len(params), 4), squeeze=False)
    y = ranked[metric].astype(float).to_numpy()
    for ax, key in zip(axes[0], params, strict=True):
        numeric = _numeric(ranked[key])
        if numeric is not None:
            log = _log_spaced(numeric)
            where = np.log10(numeric.to_numpy()) if log else numeric.to_numpy(dtype=float)
            spread = where + _spread(where, 0.32 * _min_gap(where))
            x = 10**spread if log else spread
            means = pd.Series(y).groupby(numeric.to_numpy()).mean()
            if log:
                ax.set_xscale("log")
            distinct = sorted(numeric.unique())
            ax.set_xticks(distinct, [f"{v:g}" for v in distinct],
                          rotation=30 if len(distinct) > 6 else 0)  # fmt: skip
            ax.minorticks_off()
        else:
            labels = natural_order(ranked[key])
            codes = ranked[key].astype(str).map({v: i for i, v in enumerate(labels)}).to_numpy()
            x = codes + _spread(codes, 0.32)
            means = pd.Series(y).groupby(codes).mean()
            ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 3 else 0,
                          ha="right" if len(labels) > 3 else "center")  # fmt: skip
        ax.scatter(x, y, s=22, alpha=0.6, color=EQUAL_COLOR, edgecolors="white", linewidths=0.5,
                   label=f"one run ({len(y):,})", zorder=2)  # fmt: skip
        ax.plot(means.index, means.to_numpy(), color="black", marker="_", markersize=18,
                linestyle=":" if numeric is not None else "", label="mean per value",
                zorder=3)  # fmt: skip
        ax.scatter(x[:1], y[:1], s=120, marker="*", color=BEST_COLOR, label="best", zorder=4)
        ax.set(xlabel=key, ylabel=metric)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize="small", frameon=False)
    _titled(fig, heading, f"{metric} of every run by swept parameter")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _axis_positions(ranked: pd.DataFrame, key: str, metric: str):
    """Each run's place on a parallel-coordinates axis (0-1) and the axis's labels: repeated
    values are spread over a band (in rank order, the best on top) so that runs which share a
    value stay apart."""
    numeric = _numeric(ranked[key])
    if numeric is None:
        labels = natural_order(ranked[key])
        span = max(len(labels) - 1, 1)
        base = ranked[key].astype(str).map({v: i / span for i, v in enumerate(labels)})
        ticks = [(i / span, v) for i, v in enumerate(labels)]
    else:
        position = np.log10(numeric) if key != metric and _log_spaced(numeric) else numeric
        low, high = float(position.min()), float(position.max())
        base = (position - low) / ((high - low) or 1.0)
        distinct = sorted(numeric.unique())
        if key == metric:
            shown = list(np.linspace(distinct[0], distinct[-1], 5))
            return base, [(float((v - low) / ((high - low) or 1.0)), f"{v:.3f}") for v in shown]
        shown = distinct if len(distinct) <= MAX_LABELLED_VALUES else [distinct[0], distinct[-1]]
        where = dict(zip(numeric, base, strict=True))
        ticks = [(float(where[v]), f"{v:.4g}") for v in shown]
    base = base.astype(float)
    half = 0.36 * _min_gap(base.to_numpy()) if base.nunique() > 1 else 0.3
    rank = pd.Series(range(len(ranked)), index=ranked.index)  # ranked: the best first
    placed = base.copy()
    for _, group in base.groupby(base):
        if len(group) < 2:
            continue
        order = rank.loc[group.index].sort_values(ascending=False).index  # worst lowest
        placed.loc[order] = group.iloc[0] + np.linspace(-half, half, len(order))
    low, high = float(placed.min()), float(placed.max())  # the bands back inside 0-1
    extent = (high - low) or 1.0
    return (placed - low) / extent, [((y - low) / extent, label) for y, label in ticks]


def plot_parallel_coordinates(
    ranked: pd.DataFrame, params: list[str], metric: str, heading: str = ""
) -> plt.Figure:
    """Every child as a line across the swept params and the metric (coloured by the metric,
    the best on top in red); runs sharing a value are spread over a band around it."""
    columns = [*params, metric]
    scaled = pd.DataFrame(index=ranked.index)
    ticks: dict[str, list[tuple[float, str]]] = {}
    for key in columns:
        scaled[key], ticks[key] = _axis_positions(ranked, key, metric)
    fig, ax = plt.subplots(figsize=(max(6.5, 2.4 * len(columns)), 5.2))
    values = ranked[metric].astype(float)
    norm = plt.Normalize(values.min(), values.max())
    cmap = plt.get_cmap("viridis")
    xs = np.arange(len(columns))
    others = list(ranked.index[:0:-1])  # the worst drawn first, under the better
    lines = [np.column_stack([xs, scaled.loc[i].to_numpy()]) for i in others]
    ax.add_collection(LineCollection(lines, colors=cmap(norm(values.loc[others].to_numpy())),
                                     alpha=0.75, linewidths=1.2, zorder=2))  # fmt: skip
    best = scaled.loc[ranked.index[0]].to_numpy()
    ax.plot(xs, best, color=BEST_COLOR, linewidth=3.2, zorder=3, label="best")
    ax.plot(xs, best, color="white", linewidth=1, zorder=3)
    ax.set_xlim(-0.45, len(columns) - 0.55)
    ax.set_ylim(-0.08, 1.08)
    for i, key in enumerate(columns):
        ax.axvline(i, color="grey", linewidth=0.8, zorder=1)
        left = i == 0  # the first axis's labels in the margin, the others right of their axis
        for y, label in ticks[key]:
            ax.text(i - 0.04 if left else i + 0.04, y, label, fontsize="small", va="center",
                    ha="right" if left else "left", bbox=LABEL_BOX, zorder=5)  # fmt: skip
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks([])
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.08), fontsize="small", frameon=False)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=metric)
    _titled(fig, heading, f"Parallel coordinates of the {len(ranked):,} finished runs")
    fig.tight_layout()
    return fig


def plot_parameter_importance(
    importance: pd.DataFrame, metric: str, heading: str = ""
) -> plt.Figure:
    """Bars of η² per swept param, each labelled with its value (a dot marks a bar of 0)."""
    fig, ax = plt.subplots(figsize=(6.5, 1.6 + 0.55 * len(importance)))
    ordered = importance.iloc[::-1]
    eta = ordered["eta_squared"].astype(float).to_numpy()
    bars = ax.barh(ordered["param"], eta, color="tab:purple", height=0.6)
    ax.scatter(eta, range(len(eta)), color="tab:purple", s=25, zorder=3, clip_on=False)
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in eta], padding=6, fontsize="small")
    ax.set(xlim=(0, 1.08), xlabel=f"share of {metric} variance explained (η²)")
    _titled(fig, heading, "Parameter importance (one-way ANOVA per parameter)")
    fig.tight_layout()
    return fig


def _config_label(row: pd.Series, params: list[str]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={row[k]}" for k in params)


def plot_verdict(
    ranked: pd.DataFrame,
    params: list[str],
    metric: str,
    heading: str = "",
    also: Sequence[str] = (),
    top: int = FOREST_TOP,
) -> plt.Figure:
    """A forest plot: each shown configuration's mean fold difference to the best with its
    interval, a zero line, the indistinguishable ones in blue; the top `top` and `also`."""
    head = ranked.head(top)
    extra = ranked[ranked["run_id"].isin(also) & ~ranked["run_id"].isin(head["run_id"])]
    rows = pd.concat([head, extra])
    y = np.arange(len(rows), dtype=float)
    y[len(head) :] += 1  # a gap before the configurations from further down
    fig, ax = plt.subplots(figsize=(11, 2.2 + 0.34 * (len(rows) + bool(len(extra)))))
    labels = []
    for pos, (_, row) in zip(y, rows.iterrows(), strict=True):
        labels.append(f"#{row['rank']}  {_config_label(row, params)}   {row[metric]:.4f}")
        if row["run_id"] == ranked["run_id"].iloc[0]:
            ax.scatter([0], [pos], marker="D", s=45, color=BEST_COLOR, zorder=3)
            continue
        mean, low, high = (float(row[c]) for c in DIFF_COLUMNS)
        if np.isnan(mean):
            ax.text(0, pos, " not paired with the best", va="center", fontsize="small",
                    color="grey")  # fmt: skip
            continue
        equal = bool(row["equivalent_to_best"]) if pd.notna(row["equivalent_to_best"]) else False
        color = EQUAL_COLOR if equal else WORSE_COLOR
        whisker = [[mean - low], [high - mean]] if not np.isnan(low) else None
        ax.errorbar(mean, pos, xerr=whisker, fmt="o", color=color, ecolor=color,
                    elinewidth=1.6, capsize=3, markersize=5, zorder=3)  # fmt: skip
    ax.axvline(0, color="black", linewidth=0.9, zorder=1)
    if len(extra):
        ax.axhline(len(head), color="grey", linestyle=":", linewidth=0.8)
    ax.set_yticks(y, labels, fontsize="small")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(f"{metric}: configuration minus the best\n(mean over the folds, and interval)")
    ax.legend(
        handles=[
            Line2D([], [], marker="D", color=BEST_COLOR, linestyle="", label="the best"),
            Line2D([], [], marker="o", color=EQUAL_COLOR, label="indistinguishable (reaches 0)"),
            Line2D([], [], marker="o", color=WORSE_COLOR, label="significantly worse"),
        ],
        fontsize="small",
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        ncol=3,
        frameon=False,
    )
    shown = f"the top {len(head)}" + (f" and {len(extra)} further down" if len(extra) else "")
    _titled(fig, heading, f"Difference to the best, {shown} of {len(ranked):,} configurations")
    fig.tight_layout()
    return fig


# what each objective measures, for its axis (a cv_<score>_mean is a share of 0 to 1)
UNITS = {
    "cv_fit_time_mean": "seconds to fit a fold, mean over the CV folds",
    "predict_ms_per_row": "milliseconds per row, test split",
    "model_bytes": "bytes, pickled pipeline",
    "training_time_s": "seconds, fit on the training split",
}
MEANS_COLOR = "tab:orange"
SHOWN_COLOR = "tab:red"
INFEASIBLE_COLOR = "lightgrey"


def objective_label(metric: str, direction: str) -> str:
    """An axis label: the metric, its unit, and which way is better."""
    unit = UNITS.get(metric, "share, mean over the CV folds" if metric.startswith("cv_") else "")
    better = "higher is better" if direction == "maximize" else "lower is better"
    return f"{metric}\n({unit}; {better})" if unit else f"{metric} ({better})"


def plot_pareto_front(
    table: pd.DataFrame,
    objectives: Sequence[tuple[str, str]],
    chosen: str | None,
    heading: str = "",
) -> plt.Figure:
    """Each pair of the first three objectives: every finished child with finite values, the
    Pareto front of the means (orange line), the configurations not shown dominated (red
    rings), infeasible children grey, the chosen child a star."""
    shown = list(objectives)[:3]
    # the later objective across, the earlier up: the first (often a score) is read upwards
    pairs = [(shown[j], shown[i]) for i in range(len(shown)) for j in range(i + 1, len(shown))]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.6 * len(pairs), 5), squeeze=False)
    values = table[[m for m, _ in shown]].apply(pd.to_numeric, errors="coerce")
    rows = table[(table["status"] == "FINISHED") & np.isfinite(values).all(axis=1)]
    feasible = rows["feasible"].astype(bool) if "feasible" in rows else pd.Series(True, rows.index)
    on_means = rows["pareto_front"].fillna(False).astype(bool) if "pareto_front" in rows else None
    not_shown = rows["not_shown_dominated"].fillna(False).astype(bool)
    for ax, ((xm, xd), (ym, yd)) in zip(axes[0], pairs, strict=True):
        x, y = rows[xm].astype(float), rows[ym].astype(float)
        out = ~feasible
        if out.any():
            ax.scatter(x[out], y[out], s=30, marker="x", color=INFEASIBLE_COLOR,
                       label=f"infeasible ({int(out.sum())})", zorder=1)  # fmt: skip
        ax.scatter(x[feasible], y[feasible], s=28, color=EQUAL_COLOR, alpha=0.6,
                   edgecolors="white", linewidths=0.5,
                   label=f"feasible child ({int(feasible.sum())})", zorder=2)  # fmt: skip
        if on_means is not None and on_means.any():
            front = rows[on_means].assign(_x=x[on_means], _y=y[on_means]).sort_values("_x")
            style = "-" if len(shown) == 2 else ""  # a 2-D front is a staircase of points
            ax.plot(front["_x"], front["_y"], linestyle=style, drawstyle="steps-post",
                    marker="o", markersize=5, color=MEANS_COLOR, zorder=3,
                    label=f"Pareto front of the means ({int(on_means.sum())})")  # fmt: skip
        ax.scatter(x[not_shown], y[not_shown], s=150, facecolors="none", edgecolors=SHOWN_COLOR,
                   linewidths=1.6, zorder=4,
                   label=f"not shown dominated ({int(not_shown.sum())})")  # fmt: skip
        best = rows["run_id"] == chosen
        if best.any():
            ax.scatter(x[best], y[best], s=220, marker="*", color=BEST_COLOR, zorder=5,
                       label="chosen")  # fmt: skip
        for along, axis in ((x, ax.xaxis), (y, ax.yaxis)):
            if len(along) and along.min() > 0 and along.max() / along.min() >= 10:
                (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
                axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set(xlabel=objective_label(xm, xd), ylabel=objective_label(ym, yd))
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize="small",
               frameon=False)  # fmt: skip
    _titled(fig, heading, "Trade-offs: every finished child, and both fronts")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def save_pareto_plot(
    table: pd.DataFrame,
    objectives: Sequence[tuple[str, str]],
    chosen: str | None,
    out_dir: Path,
    heading: str = "",
) -> list[Path]:
    """pareto_front.png of a multi-objective sweep (none for one objective)."""
    if len(objectives) < 2 or "not_shown_dominated" not in table:
        return []
    path = out_dir / "pareto_front.png"
    fig = plot_pareto_front(table, objectives, chosen, heading)
    try:
        save_png(fig, path)
    finally:
        plt.close(fig)
    return [path]
