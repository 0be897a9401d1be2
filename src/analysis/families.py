"""Compare model families across an experiment's runs: each family's best configuration, its
CV and test metrics, and a paired test against the best family's best (as CSV, markdown, PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from src.analysis.plots import BEST_COLOR, EQUAL_COLOR, WORSE_COLOR  # noqa: E402
from src.analysis.ranking import build_table  # noqa: E402
from src.analysis.verdict import (  # noqa: E402
    DEFAULT_ALPHA,
    DIFF_COLUMNS,
    VERDICT_COLUMNS,
    Verdict,
    compare_with_best,
    verdict_columns,
)
from src.ml.evaluate import TEST_METRICS  # noqa: E402
from src.tracking.store import search_all_runs  # noqa: E402

REPORT_DPI = 150
NOT_CONFIGURATION = ("sweep.", "sweeps", "mlflow", "registry.", "hydra")
COLUMNS = ("model", "n_configs", "run_name", "sweep", "run_id")


def family_table(
    client: MlflowClient,
    experiment_id: str,
    metric: str = "cv_accuracy_mean",
    direction: str = "maximize",
    alpha: float = DEFAULT_ALPHA,
) -> tuple[pd.DataFrame, Verdict]:
    """One row per model family (the `model` param) of the experiment's finished runs (sweep
    children and single runs alike): its best run by `metric`, how many configurations it
    had, and the paired test of that run's folds against the best family's best."""
    runs = [
        r
        for r in search_all_runs(client, [experiment_id], "attributes.status = 'FINISHED'")
        if r.data.tags.get("sweep") != "true" and "model" in r.data.params
    ]
    table = build_table(runs, ["model"], metric, direction)
    ranked = table[table["rank"].notna()]
    parents = {
        str(r.data.tags["mlflow.parentRunId"])
        for r in runs
        if r.data.tags.get("mlflow.parentRunId")
    }
    names = {p: client.get_run(p).info.run_name for p in parents}
    by_run = {r.info.run_id: r for r in runs}
    sweep = {
        r.info.run_id: names.get(r.data.tags.get("mlflow.parentRunId", ""), "(single run)")
        for r in runs
    }
    best = ranked.drop_duplicates("model").copy()  # ranked: each family's first is its best
    # distinct configurations: a default config run twice is one, and so is the same config
    # run alone and in a sweep (what a run records about its sweep, store or registry aside)
    configs = {
        run_id: frozenset(
            (k, v)
            for k, v in by_run[run_id].data.params.items()
            if not k.startswith(NOT_CONFIGURATION)
        )
        for run_id in ranked["run_id"]
    }
    models = {config: dict(config)["model"] for config in configs.values()}
    best["n_configs"] = best["model"].map(pd.Series(list(models.values())).value_counts())
    best["sweep"] = best["run_id"].map(sweep)
    best["rank"] = np.arange(1, len(best) + 1)
    verdict = compare_with_best(client, by_run, best, metric, direction, alpha)
    return verdict_columns(best.reset_index(drop=True), verdict), verdict


def write_family_files(
    table: pd.DataFrame, verdict: Verdict, metric: str, experiment: str, out_dir: Path
) -> list[Path]:
    """model_comparison.csv, .md and .png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    std = metric.removesuffix("_mean") + "_std"
    shown = [*COLUMNS, metric, std, *TEST_METRICS, *VERDICT_COLUMNS]
    columns = [c for c in shown if c in table]
    csv_path, md_path, png_path = (out_dir / f"model_comparison.{e}" for e in ("csv", "md", "png"))
    table[columns].to_csv(csv_path, index=False)
    md_path.write_text(render_families(table, verdict, metric, experiment, columns))
    fig = plot_families(table, metric, experiment)
    try:
        fig.savefig(png_path, dpi=REPORT_DPI)
    finally:
        plt.close(fig)
    return [csv_path, md_path, png_path]


def family_note(table: pd.DataFrame, verdict: Verdict) -> str:
    """One sentence: which families' best are statistically indistinguishable from the best."""
    if table.empty:
        return "No finished run with the metric: nothing to compare."
    top = table.iloc[0]
    if verdict.missing is not None:
        return f"{top['model']} scores best; no paired comparison: {verdict.missing}."
    names = dict(zip(table["run_id"], table["model"], strict=True))
    equal = [names[i] for i in verdict.adjusted if verdict.equivalent(i)]
    worse = [names[i] for i in verdict.adjusted if not verdict.equivalent(i)]
    test = (
        f"one-sided corrected resampled t-test on {verdict.n_folds} paired CV folds, "
        f"Holm-adjusted, alpha {verdict.alpha:g}"
    )
    parts = [f"{top['model']} scores best."]
    if equal:
        parts.append(
            f"Not significantly worse ({test}): {', '.join(equal)}: on this data the best "
            f"family is not shown to beat them."
        )
    if worse:
        parts.append(f"Significantly worse: {', '.join(worse)}.")
    unpaired = [f"{names[i]} ({why})" for i, why in verdict.unpaired.items()]
    if unpaired:
        parts.append(f"Not comparable fold by fold: {', '.join(unpaired)}.")
    return " ".join(parts)


def render_families(
    table: pd.DataFrame, verdict: Verdict, metric: str, experiment: str, columns: list[str]
) -> str:
    """The comparison as markdown: the table and what it says."""
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "---|" * len(columns)

    def cell(value: object) -> str:
        if value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            return ""
        if isinstance(value, float) and not float(value).is_integer():
            return f"{value:.4f}"
        return str(value).replace("|", "\\|")

    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table[columns].values]
    return "\n".join(
        [
            f"# Model families of `{experiment}`, by `{metric}`",
            "",
            "Each family's best configuration over every finished run of the experiment (sweep "
            "children and single runs). That best was itself picked on these CV folds, so its "
            "score is optimistic; the test below says whether the families' best differ by "
            "more than the folds' noise.",
            "",
            header,
            rule,
            *body,
            "",
            f"> {family_note(table, verdict)}",
            "",
        ]
    )


def plot_families(table: pd.DataFrame, metric: str, experiment: str) -> plt.Figure:
    """Dot-and-whisker per family's best: its `metric` ± CV standard deviation on an axis fitted
    to the scores (left), and its fold difference to the best family's best with the verdict's
    interval (right); colours say which are not significantly worse."""
    std = metric.removesuffix("_mean") + "_std"
    n = len(table)
    fig, (ax, dx) = plt.subplots(1, 2, sharey=True, figsize=(10, 0.55 * max(n, 2) + 2.2),
                                 gridspec_kw={"width_ratios": (1.1, 1)})  # fmt: skip
    y = np.arange(n)
    means = table[metric].astype(float).to_numpy()
    errors = table[std].astype(float).fillna(0).to_numpy() if std in table else np.zeros(n)
    equivalent = table["equivalent_to_best"]
    colors = [
        BEST_COLOR if i == 0 else "tab:grey" if pd.isna(e) else EQUAL_COLOR if e else WORSE_COLOR
        for i, e in enumerate(equivalent)
    ]
    for pos, mean, err, color in zip(y, means, errors, colors, strict=True):
        ax.errorbar(mean, pos, xerr=err, fmt="o", color=color, capsize=4, markersize=6)
        ax.annotate(f"{mean:.3f}", (mean, pos), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize="small")  # fmt: skip
    low, high = float((means - errors).min()), float((means + errors).max())
    pad = 0.08 * ((high - low) or 0.1)
    ax.set_xlim(low - pad, high + pad)  # fitted to the scores: the differences show
    ax.set_yticks(y, table["model"].astype(str))
    ax.set_ylim(n - 0.5, -0.8)  # the best on top, room for its label
    ax.grid(axis="x", alpha=0.3)
    ax.set(xlabel=f"{metric} ± CV std of each family's best",
           title="best configuration per model")  # fmt: skip
    for pos, (_, row), color in zip(y, table.iterrows(), colors, strict=True):
        if pos == 0:
            dx.scatter([0], [pos], marker="D", s=45, color=BEST_COLOR, zorder=3)
            continue
        diff, lo, hi = (float(row.get(c, np.nan)) for c in DIFF_COLUMNS)
        if np.isnan(diff):
            dx.text(0, pos, " not paired with the best", va="center", fontsize="small",
                    color="grey")  # fmt: skip
            continue
        whisker = [[diff - lo], [hi - diff]] if not np.isnan(lo) else None
        dx.errorbar(diff, pos, xerr=whisker, fmt="o", color=color, capsize=4, markersize=6)
    dx.axvline(0, color="black", linewidth=0.9, zorder=1)
    dx.grid(axis="x", alpha=0.3)
    dx.xaxis.set_major_locator(MaxNLocator(nbins=5))
    dx.set(xlabel="family's best minus the best, over the paired folds",
           title="difference to the best, with its interval")  # fmt: skip
    fig.legend(
        handles=[
            Line2D([], [], marker="D", color=BEST_COLOR, linestyle="", label="the best"),
            Line2D([], [], marker="o", color=EQUAL_COLOR, label="not significantly worse"),
            Line2D([], [], marker="o", color=WORSE_COLOR, label="significantly worse"),
            Line2D([], [], marker="o", color="tab:grey", label="not paired (other folds)"),
        ],
        fontsize="small",
        loc="lower center",
        ncol=4,
        frameon=False,
    )
    fig.suptitle(f"{experiment} · model comparison · {metric}", fontsize="medium")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig
