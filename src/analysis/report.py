"""Write a sweep's summary: the files in the sweep folder, and the summary on its parent run."""

from __future__ import annotations

import html
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
from mlflow.entities import Metric, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from src.analysis.plots import save_pareto_plot, save_sweep_plots
from src.analysis.ranking import (
    CONFUSION,
    ELIMINATED,
    SweepSummary,
    eliminated,
    front_table,
    interval_example,
    interval_note,
    load_summary,
    nan_note,
    parameter_importance,
    pareto_note,
    race_counts,
    race_note,
    reading_notes,
    spread,
    verdict_note,
)
from src.analysis.text import body_text, header_text
from src.analysis.verdict import VERDICT_COLUMNS
from src.ml.evaluate import TEST_METRICS
from src.tracking.store import search_all_runs, ui_url, with_retries
from src.tracking.ui_view import SweepView, best_of, charts_note, store_view

TOP_N = 10
TEXT_FILE = "sweep_summary.txt"  # on the parent under summary/, as the CLI prints it
SUMMARIZED_AT_TAG = "summarized_at"  # on the parent: when its summary was last written (ms)


def write_summary_files(summary: SweepSummary, out_dir: Path, link: UiLink) -> list[Path]:
    """sweep_summary.csv, sweep_summary.md, parameter importance and the sweep plots."""
    out_dir.mkdir(parents=True, exist_ok=True)
    importance = parameter_importance(summary)
    csv_path = out_dir / "sweep_summary.csv"
    summary.table.to_csv(csv_path, index=False)
    importance_path = out_dir / "parameter_importance.csv"
    importance.to_csv(importance_path, index=False)
    md_path = out_dir / "sweep_summary.md"
    md_path.write_text(render_markdown(summary, importance, link))
    ranked = summary.ranked
    params = [k for k in summary.swept if k in ranked and ranked[k].nunique() > 1]
    also = interval_example(summary) or ()
    plots = save_sweep_plots(
        ranked, params, summary.metric, importance, out_dir, summary.heading, also
    )
    best = summary.best
    chosen = str(best["run_id"]) if best is not None else None
    plots += save_pareto_plot(summary.table, summary.objectives, chosen, out_dir, summary.heading)
    return [csv_path, md_path, importance_path, *plots]


def render_markdown(summary: SweepSummary, importance: pd.DataFrame, link: UiLink) -> str:
    """The human-readable summary: best child, top 10, ties, failures, importance."""
    parent, metric = summary.parent, summary.metric
    counts = summary.counts
    lines = [
        f"# Sweep {_code(parent.info.run_name)}",
        "",
        *([_code(note), ""] if (note := parent.data.tags.get("mlflow.note.content")) else []),
        f"Parent run `{parent.info.run_id}`: {counts['n_children']:,} children, "
        f"{counts['n_finished']:,} finished, {counts['n_failed']:,} failed. "
        f"Ranked by `{metric}` ({summary.direction}), a cross-validation score on the "
        f"training split, not the test score.",
        *(
            [f"Objectives: {', '.join(f'`{m}` ({d})' for m, d in summary.objectives)}."]
            if summary.objectives
            else []
        ),
        "",
        f"MLflow UI: <{link.url}>" + str(link).removeprefix(link.url),
        "",
    ]
    best = summary.best
    if best is None:
        lines += ["**No child finished with a finite selection metric: there is no best run.**"]
    else:
        lines += [
            "## Best child",
            "",
            f"- run: {_code(best['run_name'])} (`{best['run_id']}`), "
            f"chosen by {_text(summary.rule)}",
            f"- {metric}: **{best[metric]:.4f}**",
        ]
        if "cv_accuracy_std" in best and pd.notna(best["cv_accuracy_std"]):
            lines.append(f"- cv_accuracy_std: {best['cv_accuracy_std']:.4f}")
        lines += [
            f"- {_code(k)} = {_text(best[k])}" for k in summary.swept if pd.notna(best.get(k))
        ]
        tests = [f"{m}={best[m]:.4f}" for m in TEST_METRICS if m in best and pd.notna(best[m])]
        lines.append("- test metrics: " + ", ".join(tests))
        confusion = [f"{m}={int(best[m])}" for m in CONFUSION if m in best and pd.notna(best[m])]
        if confusion:
            lines.append("- confusion counts (test): " + ", ".join(confusion))
    lines += [""]
    for note in (
        *reading_notes(summary),
        verdict_note(summary),
        interval_note(summary),
        race_note(summary),
        nan_note(summary),
    ):
        if note:
            lines += [f"> {_text(note)}", ""]
    if (traded := pareto_note(summary)) is not None:
        lines += ["## Trade-offs", "", f"> {_text(traded)}", ""]
        fronts = front_table(summary)
        if len(fronts):
            lines += [_markdown_table(fronts, list(fronts.columns)), ""]
            lines += ["![Pareto fronts](pareto_front.png)", ""]
    spread_metrics = spread(summary)
    if spread_metrics:
        lines += [
            "## Spread across children",
            "",
            "Mean ± standard deviation over the ranked children (for a seeds sweep: the "
            "spread that noise alone gives).",
            "",
        ]
        lines += [
            f"- {name}: {spread_metrics[f'mean_{name}']:.4f} ± {spread_metrics[f'std_{name}']:.4f}"
            for name in dict.fromkeys((metric, *TEST_METRICS))
            if f"mean_{name}" in spread_metrics
        ]
        lines.append("")
    ranked = summary.ranked.head(TOP_N)
    if len(ranked):
        columns = [
            "rank",
            "run_name",
            *summary.swept,
            metric,
            *(m for m, _ in summary.objectives),
            *(c for c in ("cv_accuracy_std", "test_accuracy", "roc_auc") if c != metric),
            *VERDICT_COLUMNS,
            *(("pareto_front", "not_shown_dominated") if summary.fronts else ()),
        ]
        lines += [f"## Top {len(ranked)}", "", _markdown_table(ranked, columns), ""]
    out = summary.table[eliminated(summary.table)]
    if len(out):
        lines += ["## Eliminated by the race", ""]
        lines += [
            f"- {_code(r['run_name'])}: round {r[ELIMINATED]}, after "
            f"{_folds(r.get('race_folds'))} folds, {summary.metric}={r[summary.metric]:.4f}; "
            f"lost to {_code(r.get('race_leader', ''))} (race_p_value "
            f"{r.get('race_p_value', float('nan')):.4f})"
            for _, r in out.iterrows()
        ]
        lines.append("")
    failed = summary.table[summary.table["status"] != "FINISHED"]
    if len(failed):
        lines += ["## Failed or interrupted jobs", ""]
        lines += [
            f"- {_code(r.run_name)} ({r.status!s}): "
            f"{_code(r.error) if r.error else 'no error recorded'}"
            for r in failed.itertuples()
        ]
        lines += ["", "Tracebacks: the artifact `error/traceback.txt` of each failed child.", ""]
    if not len(importance) and len(summary.ranked) > 1 and summary.swept:
        lines += [
            "No parameter importance: no swept parameter has a value tried more than once, "
            "so each would explain all the variance by construction.",
            "",
        ]
    if len(importance):
        lines += [
            "## Parameter importance",
            "",
            f"Share of the variance of `{metric}` explained by each swept parameter on its "
            "own (one-way ANOVA, η²).",
            "",
            _markdown_table(importance, ["param", "eta_squared", "n_values"]),
            "",
        ]
    return "\n".join(lines)


def _folds(value: object) -> str:
    """A fold count as recorded (a float metric), as a whole number."""
    try:
        return str(int(float(str(value))))
    except ValueError:  # NaN: not recorded
        return "?"


def _text(value: object) -> str:
    """Text from the runs (labels, values, errors) for markdown: HTML in it is shown, not run
    (the MLflow UI and any markdown viewer render raw HTML), and it stays on its line."""
    return html.escape(str(value), quote=False).replace("\n", " ")


def _code(value: object) -> str:
    """A code span of `value` (HTML in a code span is shown as written); a backtick in it
    would end the span early, so it becomes a quote."""
    return "`" + str(value).replace("`", "'").replace("\n", " ") + "`"


def _markdown_table(frame: pd.DataFrame, columns: list[str]) -> str:
    columns = [c for c in dict.fromkeys(columns) if c in frame.columns]

    def cell(column: str, value: object) -> str:
        if value is pd.NA or (
            isinstance(value, float) and column in VERDICT_COLUMNS and pd.isna(value)
        ):
            return ""
        if column in ("rank", "n_values") and isinstance(value, float):
            return str(int(value))
        if isinstance(value, float):
            return f"{round(value, 4) + 0.0:.4f}"  # no -0.0000 from rounding noise
        return _text(value).replace("|", "\\|")

    header = "| " + " | ".join(_text(c).replace("|", "\\|") for c in columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = [
        "| " + " | ".join(cell(c, v) for c, v in zip(columns, row, strict=True)) + " |"
        for row in frame[columns].itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def record_on_parent(
    client: MlflowClient, summary: SweepSummary, files: list[Path], link: UiLink
) -> None:
    """Tag the parent (with its UI link) and the best child, log best_* metrics and counts,
    upload the files."""
    parent_id = summary.parent.info.run_id
    now = int(time.time() * 1000)
    metrics: dict[str, float] = dict(summary.counts)
    tags = [
        RunTag(SUMMARIZED_AT_TAG, str(now)),
        RunTag("n_children", str(metrics["n_children"])),
        RunTag("selection_rule", summary.rule),
        RunTag("ui_link_path", link.path),
    ]
    if summary.verdict.missing is None and summary.top is not None:
        metrics["n_equivalent_to_best"] = summary.verdict.n_equivalent
    best = summary.best
    best_id = best["run_id"] if best is not None else None
    marked = f"tags.mlflow.parentRunId = '{parent_id}' and tags.best_in_sweep = 'true'"
    for child in search_all_runs(client, [summary.parent.info.experiment_id], marked):
        if child.info.run_id != best_id:  # the best of an earlier attempt of this sweep
            with_retries(partial(client.delete_tag, child.info.run_id, "best_in_sweep"))
    if best is not None:
        tags.append(RunTag("best_run_id", best["run_id"]))
        tags.append(RunTag("best_run_name", str(best["run_name"])[:5000]))
        for name in (summary.metric, "cv_accuracy_std", *TEST_METRICS):
            if name in best and pd.notna(best[name]):
                metrics[f"best_{name}"] = float(best[name])
        with_retries(lambda: client.set_tag(best["run_id"], "best_in_sweep", "true"))
    metrics |= spread(summary)
    metrics |= race_counts(summary)
    if summary.fronts is not None:
        metrics["n_pareto_front"] = len(summary.fronts.on_means)
        metrics["n_not_shown_dominated"] = len(summary.fronts.not_shown)
    with_retries(
        lambda: client.log_batch(
            parent_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()], tags=tags
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            (Path(tmp) / path.name).write_bytes(path.read_bytes())
        with_retries(lambda: client.log_artifacts(parent_id, tmp, "summary"))


@dataclass(frozen=True)
class UiLink:
    """Where the MLflow UI shows a sweep."""

    url: str
    path: str  # the part after the host
    note: str | None  # why it is the experiment's plain chart view, not the sweep's own
    shown: str | None = None  # which children the view charts, when not all of them

    def __str__(self) -> str:
        if self.note:
            return f"{self.url} (the experiment's charts: {self.note})"
        return self.url + (f" ({self.shown})" if self.shown else "")


def sweep_view(client: MlflowClient, tracking_uri: str, summary: SweepSummary) -> UiLink:
    """Store the sweep's view for the MLflow UI (src/ui_view.py); its link."""
    parent = summary.parent
    logged = summary.logged
    ranked = summary.ranked
    numeric = tuple(
        k
        for k in summary.swept
        if k in ranked and len(ranked) and pd.to_numeric(ranked[k], errors="coerce").notna().all()
    )
    folds = summary.metric.removesuffix("_mean")
    scores = pd.to_numeric(ranked[summary.metric], errors="coerce").tolist() if len(ranked) else []
    cutoff, reach = best_of(scores, summary.direction)
    view = SweepView(
        experiment_id=parent.info.experiment_id,
        parent_run_id=parent.info.run_id,
        name=parent.info.run_name,
        metric=summary.metric,
        direction=summary.direction,
        swept=tuple(summary.swept),
        numeric=numeric,
        tests=tuple(m for m in TEST_METRICS if m in logged and m != summary.metric),
        folds=folds if folds != summary.metric and folds in logged else None,
        logged=logged,
        cutoff=cutoff,
        objectives=tuple(m for m, _ in summary.objectives),
    )
    path, note = store_view(client, view)
    base = parent.data.tags.get("ui_url") or ui_url(tracking_uri)
    shown = None if cutoff is None else charts_note(reach, len(summary.table), summary.metric)
    return UiLink(f"{base.rstrip('/')}/{path}", path, note, shown)


def summarize_sweep(
    tracking_uri: str, parent_run_id: str, out_dir: Path
) -> tuple[SweepSummary, UiLink]:
    """Summarise a sweep into `out_dir` and onto its parent run, with its view in the MLflow
    UI; the summary and the view's link."""
    client = MlflowClient(tracking_uri)
    summary = load_summary(client, client.get_run(parent_run_id))
    link = sweep_view(client, tracking_uri, summary)
    files = write_summary_files(summary, out_dir, link)
    experiment = client.get_experiment(summary.parent.info.experiment_id).name
    text = out_dir / TEXT_FILE  # what `python -m src.summary` prints of it, kept
    text.write_text(header_text(summary, experiment) + "\n" + body_text(summary) + "\n")
    record_on_parent(client, summary, [*files, text], link)
    return summary, link


def recorded_text(client: MlflowClient, parent: Run) -> str | None:
    """The summary text the sweep recorded at its end, when it still holds: the sweep is not
    running and no child started after it was written; else None (read the children again)."""
    written = parent.data.tags.get(SUMMARIZED_AT_TAG)
    if parent.info.status == "RUNNING" or written is None:
        return None
    later = (
        f"tags.mlflow.parentRunId = '{parent.info.run_id}' and attributes.start_time > {written}"
    )
    experiments = [parent.info.experiment_id]
    if with_retries(lambda: client.search_runs(experiments, later, max_results=1)):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(parent.info.run_id, f"summary/{TEXT_FILE}", tmp)
        except (MlflowException, OSError):
            return None  # a sweep of an older version, or its artifacts are gone
        text = Path(path).read_text()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(written) / 1000))
    return (
        f"{text}\n(As the sweep recorded it at its end, {when}; --fresh reads its children again.)"
    )
