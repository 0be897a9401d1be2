"""Compare model families across an experiment's runs: each family's best configuration, its
CV and test metrics, and a paired test against the best family's best (as CSV, markdown, PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from src.analysis.ranking import build_table  # noqa: E402
from src.analysis.verdict import (
    DEFAULT_ALPHA,
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
        fig.savefig(png_path, dpi=REPORT_DPI, bbox_inches="tight")
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
    """Bars of each family's best `metric` with its CV standard deviation as error bars."""
    std = metric.removesuffix("_mean") + "_std"
    fig, ax = plt.subplots(figsize=(6, 0.6 * max(len(table), 2) + 1.2))
    ordered = table.iloc[::-1]
    errors = ordered[std].astype(float) if std in ordered else None
    equivalent = ordered["equivalent_to_best"].fillna(False).astype(bool)
    colors = ["tab:blue" if e else "tab:grey" for e in equivalent]
    ax.barh(ordered["model"].astype(str), ordered[metric].astype(float), xerr=errors,
            color=colors, capsize=4)  # fmt: skip
    spread = errors.fillna(0).to_numpy() if errors is not None else np.zeros(len(ordered))
    for y, (value, err) in enumerate(zip(ordered[metric].astype(float), spread, strict=True)):
        ax.text(float(value + err), y, f"  {value:.3f}", va="center", ha="left", fontsize="small")
    top = float((ordered[metric].astype(float) + spread).max())
    ax.set_xlim(0.0, max(1.0, top * 1.12) if top > 1 else 1.12)  # bars from 0: honest lengths
    ax.set(xlabel=f"{metric} (± CV std) of each family's best",
           title=f"{experiment}: best configuration per model")  # fmt: skip
    ax.legend(
        handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in ("tab:blue", "tab:grey")],
        labels=["not significantly worse than the best", "significantly worse, or unpaired"],
        fontsize="small",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.22),
    )
    return fig
