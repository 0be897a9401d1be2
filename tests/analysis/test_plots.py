"""The sweep's figures read as a report needs: titled with dataset, sweep and metric; runs that
share a value kept apart; the best drawn on top; values written on the bars; the verdict's
intervals around a zero line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection

from src.analysis import plots as sweep_plots
from src.analysis.plots import plt

HEADING = "heart · knn_grid #1 · cv_accuracy_mean"
PARAMS = ["model.n_neighbors", "model.weights"]


@pytest.fixture
def ranked() -> pd.DataFrame:
    """Six runs per k (3 and 15): pairs with equal scores, as uniform and distance weights give;
    the verdict's columns as the summary makes them, the best first."""
    rows = []
    for k, base in ((15, 0.83), (3, 0.80)):
        for weights in ("uniform", "distance"):
            for step in range(3):
                rows.append({"model.n_neighbors": str(k), "model.weights": weights,
                             "cv_accuracy_mean": base - 0.01 * step})  # fmt: skip
    table = pd.DataFrame(rows).sort_values("cv_accuracy_mean", ascending=False, kind="stable")
    table = table.reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    table.insert(1, "run_id", [f"r{i}" for i in range(len(table))])
    diff = table["cv_accuracy_mean"] - table["cv_accuracy_mean"].iloc[0]
    width = np.where(table["model.n_neighbors"] == "3", 0.005, 0.05)
    table["diff_vs_best"] = diff
    table["diff_ci_low"], table["diff_ci_high"] = diff - width, diff + width
    table["equivalent_to_best"] = table["diff_ci_high"] >= 0
    table.loc[0, ["diff_vs_best", "diff_ci_low", "diff_ci_high"]] = np.nan  # the best itself
    return table


def test_every_sweep_png_is_titled_and_written(ranked, tmp_path) -> None:
    importance = pd.DataFrame(
        {"param": PARAMS, "eta_squared": [0.9, 0.0], "n_values": [2, 2]}
    )  # fmt: skip
    paths = sweep_plots.save_sweep_plots(
        ranked, PARAMS, "cv_accuracy_mean", importance, tmp_path, HEADING, ("r11",)
    )
    names = [p.name for p in paths]
    assert names == ["metric_vs_params.png", "parallel_coordinates.png",
                     "parameter_importance.png", "verdict.png"]  # fmt: skip
    for path in paths:
        assert path.read_bytes()[:4] == b"\x89PNG"
    for make in (
        lambda: sweep_plots.plot_metric_vs_params(ranked, PARAMS, "cv_accuracy_mean", HEADING),
        lambda: sweep_plots.plot_parallel_coordinates(ranked, PARAMS, "cv_accuracy_mean", HEADING),
        lambda: sweep_plots.plot_parameter_importance(importance, "cv_accuracy_mean", HEADING),
        lambda: sweep_plots.plot_verdict(ranked, PARAMS, "cv_accuracy_mean", HEADING),
    ):
        fig = make()
        assert fig.get_suptitle().startswith(HEADING + "\n")
        plt.close(fig)


def test_strip_plot_shows_every_run_of_a_value_as_its_own_dot(ranked) -> None:
    fig = sweep_plots.plot_metric_vs_params(ranked, PARAMS, "cv_accuracy_mean", HEADING)
    for ax in fig.axes:
        runs = ax.collections[0].get_offsets()
        assert len(runs) == len(ranked)
        assert len({(round(x, 9), round(y, 9)) for x, y in runs}) == len(ranked)  # none hidden
    plt.close(fig)


def test_parallel_coordinates_keep_runs_apart_and_the_best_on_top(ranked) -> None:
    fig = sweep_plots.plot_parallel_coordinates(ranked, PARAMS, "cv_accuracy_mean", HEADING)
    ax = fig.axes[0]
    (others,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    segments = others.get_segments()
    assert len(segments) == len(ranked) - 1
    best = ax.lines[0]
    assert best.get_color() == sweep_plots.BEST_COLOR and best.get_zorder() > others.get_zorder()
    for axis in range(len(PARAMS)):  # 12 runs on 2 values of each: 12 places, not 2
        places = {round(float(s[axis][1]), 9) for s in segments}
        places.add(round(float(best.get_ydata()[axis]), 9))
        assert len(places) == len(ranked)
    # drawn worst first; the best is the highest of the runs sharing its value, on every axis
    order = list(ranked.index[:0:-1])
    for axis, key in enumerate(PARAMS):
        same = [s[axis][1] for s, i in zip(segments, order, strict=True)
                if ranked.loc[i, key] == ranked.loc[0, key]]  # fmt: skip
        assert len(same) == 5 and best.get_ydata()[axis] > max(same)
    labels = [t for t in ax.texts if t.get_text() in ("3", "15", "uniform", "distance")]
    assert len(labels) == 4 and all(t.get_bbox_patch() is not None for t in labels)
    assert all(t.get_zorder() > best.get_zorder() for t in labels)  # no line over a label
    plt.close(fig)


def test_importance_bars_say_their_value_zero_included() -> None:
    importance = pd.DataFrame({"param": PARAMS, "eta_squared": [0.93, 0.0], "n_values": [2, 2]})
    fig = sweep_plots.plot_parameter_importance(importance, "cv_accuracy_mean", HEADING)
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["0.00", "0.93"]
    markers = ax.collections[0].get_offsets()
    assert sorted(float(x) for x, _ in markers) == [0.0, 0.93]  # a dot where the bar is empty
    plt.close(fig)


def test_verdict_forest_plot_draws_each_interval_around_zero(ranked) -> None:
    fig = sweep_plots.plot_verdict(ranked, PARAMS, "cv_accuracy_mean", HEADING, ("r11",), top=5)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 5  # the top 5 but the best, and r11 from further down
    for bar, (_, row) in zip(bars, ranked.iloc[[1, 2, 3, 4, 11]].iterrows(), strict=True):
        x, _ = bar.lines[0].get_data()
        assert x[0] == pytest.approx(row["diff_vs_best"])
        (whisker,) = bar.lines[2]
        ends = whisker.get_segments()[0][:, 0]
        assert sorted(ends) == pytest.approx([row["diff_ci_low"], row["diff_ci_high"]])
        color = sweep_plots.EQUAL_COLOR if row["equivalent_to_best"] else sweep_plots.WORSE_COLOR
        assert bar.lines[0].get_color() == color
    assert any(line.get_xdata()[0] == 0 for line in ax.lines)  # the zero line
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0].startswith("#1  n_neighbors=15, weights=") and labels[-1].startswith("#12")
    plt.close(fig)
