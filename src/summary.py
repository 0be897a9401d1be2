"""Read the summaries of past sweeps: `python -m src.summary [--sweep RUN_ID | --list]`
(default: the latest sweep of the store, whichever experiment)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from src.analysis.families import family_note, family_table, write_family_files
from src.analysis.ranking import build_table, load_summary
from src.analysis.report import recorded_text, sweep_view
from src.analysis.text import blank_untested, body_text, header_text
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
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="read the children again, not the summary the sweep recorded at its end",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the recorded text
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
        plain = not (args.metric or args.direction or args.csv or args.ui or args.fresh)
        if plain and (recorded := recorded_text(client, parent)) is not None:
            print(recorded)  # a sweep of 10,000 children is not read again to say the same
            return 0
        summary = load_summary(client, parent, args.metric, args.direction)
    except (NoSweepError, MlflowException, TrackingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    experiment = client.get_experiment(summary.parent.info.experiment_id).name
    print(header_text(summary, experiment))
    if args.ui:
        print(f"MLflow UI: {sweep_view(client, uri, summary)}\n")
    print(body_text(summary))
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
    shown = blank_untested(table[[c for c in columns if c in table]].copy())
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
