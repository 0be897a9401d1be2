"""Read the summaries of past sweeps: `python -m src.summary [--sweep RUN_ID | --list]`
(default: the latest sweep of the store, whichever experiment)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from src.analysis.families import family_note, family_table, write_family_files
from src.analysis.ranking import (
    CONFUSION,
    SweepSummary,
    build_table,
    interval_note,
    load_summary,
    nan_note,
    pareto_note,
    race_note,
    reading_notes,
    verdict_note,
)
from src.analysis.report import sweep_view
from src.analysis.verdict import VERDICT_COLUMNS
from src.ml.evaluate import TEST_METRICS
from src.options import add_sweep_arguments, chosen_store
from src.sweep.recovery import mark_stale_runs
from src.tracking.store import (
    NoSweepError,
    TrackingError,
    children_of,
    experiment_sweeps,
    named_experiment,
    resolve_sweep,
    search_all_runs,
)


def main(argv: list[str] | None = None) -> int:
    """`python -m src.summary [--sweep RUN_ID | --list] [--experiment NAME] [--csv PATH]`."""
    parser = argparse.ArgumentParser(prog="python -m src.summary", description=__doc__)
    add_sweep_arguments(parser)
    parser.add_argument("--list", action="store_true", help="list the sweeps")
    parser.add_argument(
        "--csv", metavar="PATH", type=Path, help="write the sweep's children to a CSV"
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="with --csv: every run of the sweep's experiment (sweeps, children, single runs)",
    )
    parser.add_argument("--metric", help="rank by this metric (default: the sweep's own)")
    parser.add_argument("--direction", choices=("maximize", "minimize"), help="with --metric")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="each model family's best across the experiment's runs, with a paired test",
    )
    parser.add_argument(
        "--out", type=Path, help="with --compare: where to write (default outputs/compare/<exp>)"
    )
    parser.add_argument(
        "--ui", action="store_true", help="store the sweep's view in the MLflow UI, print its link"
    )
    args = parser.parse_args(argv)
    try:
        uri, experiment_name = chosen_store(args)
        client = MlflowClient(uri)
        for run in mark_stale(client, experiment_name):
            print(
                f"Marked stale run {run.info.run_name!r} ({run.info.run_id}) FAILED: "
                "its process is gone",
                file=sys.stderr,
            )
        if args.list:
            print(list_sweeps(client, experiment_name, uri))
            return 0
        if args.compare:
            return compare_families(client, experiment_name, uri, args)
        parent = resolve_sweep(client, experiment_name, args.sweep, uri)
        summary = load_summary(client, parent, args.metric, args.direction)
    except (NoSweepError, MlflowException, TrackingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    counts = summary.counts
    experiment = client.get_experiment(summary.parent.info.experiment_id).name
    print(
        f"Sweep {summary.parent.info.run_name} ({summary.parent.info.run_id}) in experiment "
        f"{experiment!r}: {counts['n_children']} children, {counts['n_finished']} finished, "
        f"{counts['n_failed']} failed; ranked by {summary.metric} ({summary.direction})"
        + (
            "; objectives " + ", ".join(f"{m} ({d})" for m, d in summary.objectives)
            if summary.objectives
            else ""
        )
    )
    print(f"  {summary.parent.data.tags.get('mlflow.note.content', '')}\n")
    if args.ui:
        print(f"MLflow UI: {sweep_view(client, uri, summary)}\n")
    print(format_table(summary, limit=SHOWN))
    print()
    print(describe_best(summary))
    for note in (
        *reading_notes(summary),
        verdict_note(summary),
        interval_note(summary),
        race_note(summary),
        nan_note(summary),
        pareto_note(summary),
    ):
        if note:
            print(f"\nNote: {note}")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        if args.all:
            runs = search_all_runs(client, [summary.parent.info.experiment_id], "")
            what = f"every run of experiment {experiment!r}"
            every_param = sorted(set().union(*(r.data.params for r in runs))) if runs else []
            table = build_table(runs, every_param, summary.metric, summary.direction)
        else:  # the sweep's own table, as sweep_summary.csv has it (verdict columns included)
            runs = children_of(client, summary.parent)
            what = "the sweep's child runs, with the verdict columns"
            every_param = sorted(set().union(*(r.data.params for r in runs))) if runs else []
            extra = [p for p in every_param if p not in summary.table.columns]
            params = pd.DataFrame(
                [{"run_id": r.info.run_id} | {p: r.data.params.get(p) for p in extra} for r in runs]
            )
            table = summary.table.merge(params, on="run_id", how="left") if extra else summary.table
        table.to_csv(args.csv, index=False)
        print(f"\nWrote {len(table)} runs ({what}) to {args.csv}")
    return 0


def compare_families(
    client: MlflowClient, experiment_name: str | None, uri: str, args: argparse.Namespace
) -> int:
    """Print and write the model-family comparison of the experiment (default: the latest
    sweep's)."""
    if experiment_name is None:
        experiment_id = experiment_sweeps(client, None, uri)[0].info.experiment_id
        experiment_name = client.get_experiment(experiment_id).name
    else:
        experiment_id = named_experiment(client, experiment_name, uri).experiment_id
    metric = args.metric or "cv_accuracy_mean"
    direction = args.direction or "maximize"
    table, verdict = family_table(client, experiment_id, metric, direction)
    out = args.out or Path("outputs") / "compare" / experiment_name.replace("/", "_")
    files = write_family_files(table, verdict, metric, experiment_name, out)
    print(f"Model families of experiment {experiment_name!r}, by {metric} ({direction})\n")
    columns = ["model", "n_configs", "run_name", metric, metric.removesuffix("_mean") + "_std"]
    columns += [*TEST_METRICS, "diff_vs_best", "diff_ci_low", "diff_ci_high", "p_value_holm"]
    columns += ["equivalent_to_best"]
    shown = _blank_untested(table[[c for c in columns if c in table]].copy())
    options = ("display.width", 250, "display.max_colwidth", 40)
    with pd.option_context(*options, "display.float_format", "{:.4f}".format):
        print(shown.to_string(index=False))
    print(f"\nNote: {family_note(table, verdict)}")
    print(f"\nWrote {', '.join(str(f) for f in files)}")
    return 0


def mark_stale(client: MlflowClient, experiment_name: str | None) -> list:
    """End the RUNNING runs whose process is gone (crashed workers), in the experiment or in
    every experiment of the store."""
    if experiment_name is None:
        ids = [e.experiment_id for e in client.search_experiments()]
    else:
        experiment = client.get_experiment_by_name(experiment_name)
        ids = [experiment.experiment_id] if experiment is not None else []
    return [run for experiment_id in ids for run in mark_stale_runs(client, experiment_id)]


SHOWN = 50  # the rows printed of a larger sweep (--csv writes every one)


def format_table(summary: SweepSummary, limit: int | None = None) -> str:
    """The ranked table as plain text, best first, with the swept params; the first `limit`
    rows and how many more there are."""
    metrics = [summary.metric]
    metrics += [c for c in ("cv_accuracy_std", "test_accuracy", "roc_auc") if c != summary.metric]
    metrics += [m for m, _ in summary.objectives]
    metrics += [*VERDICT_COLUMNS, "race_folds", "race_eliminated_round"]
    metrics += ["feasible", "infeasible", "pareto_front", "not_shown_dominated"]
    columns = ["rank", "run_name", "status", *summary.swept, *metrics]
    table = summary.table[[c for c in dict.fromkeys(columns) if c in summary.table.columns]]
    table = table.head(limit) if limit is not None else table.copy()
    table["rank"] = table["rank"].astype("Int64")
    table = _blank_untested(table)
    options = ("display.max_rows", None, "display.width", 250, "display.max_colwidth", 60)
    with pd.option_context(*options, "display.float_format", "{:.4f}".format):
        text = table.to_string(index=False)
    more = len(summary.table) - len(table)
    return text + (f"\n... and {more:,} more children (every one: --csv PATH)" if more else "")


def _blank_untested(table: pd.DataFrame) -> pd.DataFrame:
    """The verdict columns as text, blank where there was no comparison (the best itself,
    unpaired children)."""
    for column in VERDICT_COLUMNS:
        if column in table:
            table[column] = table[column].map(_cell)
    for column in ("feasible", "pareto_front", "not_shown_dominated"):  # blank: not judged
        if column in table:
            table[column] = table[column].map(lambda v: "" if v is None or v is pd.NA else str(v))
    for column in ("race_folds", "race_eliminated_round"):  # counts, blank when not raced out
        if column in table:
            table[column] = table[column].map(lambda v: "" if pd.isna(v) else str(int(float(v))))
    return table


def _cell(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{round(value, 4) + 0.0:.4f}"  # no -0.0000 from rounding noise
    return str(value)


def describe_best(summary: SweepSummary) -> str:
    """The best run's params and metrics, one per line."""
    best = summary.best
    if best is None:
        return f"No child of this sweep has a finite {summary.metric}."
    lines = [f"Best run: {best['run_name']} ({best['run_id']}), chosen by {summary.rule}"]
    lines += [f"  {k} = {best[k]}" for k in summary.swept if pd.notna(best.get(k))]
    numeric = [
        c
        for c in summary.table.columns
        if c not in ("rank", "run_id", "run_name", "status", "error", *summary.swept)
        and c not in VERDICT_COLUMNS
    ]
    lines += [
        f"  {m} = {best[m]:.0f}" if m in (*CONFUSION, "model_bytes") else f"  {m} = {best[m]:.4f}"
        for m in numeric
        if isinstance(best[m], (int, float)) and not isinstance(best[m], bool) and pd.notna(best[m])
    ]
    return "\n".join(lines)


def list_sweeps(client: MlflowClient, experiment_name: str | None, uri: str) -> str:
    """A table of the sweeps (of the experiment, or of the store): name, start, children, best
    metric."""
    sweeps = experiment_sweeps(client, experiment_name, uri)
    names = {e.experiment_id: e.name for e in client.search_experiments()}
    rows = []
    for run in sweeps:
        metric = run.data.tags.get("sweep_metric", "cv_accuracy_mean")
        children = run.data.metrics.get("n_children")
        if children is None:  # not summarised (yet): count
            children = len(children_of(client, run))
        rows.append(
            {
                "run_id": run.info.run_id,
                "experiment": names.get(run.info.experiment_id, run.info.experiment_id),
                "name": run.info.run_name,
                "status": run.info.status,
                "started": pd.Timestamp(run.info.start_time, unit="ms").strftime(
                    "%Y-%m-%d %H:%M:%S"
                ),
                "children": int(children),
                "metric": metric,
                "best": run.data.metrics.get(f"best_{metric}"),
            }
        )
    with pd.option_context("display.width", 200, "display.max_colwidth", 70):
        return pd.DataFrame(rows).to_string(index=False)


if __name__ == "__main__":
    sys.exit(main())
