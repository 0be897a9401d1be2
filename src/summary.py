"""Summarise a sweep from MLflow: rank its children, write files and plots, tag the parent.

Also the CLI `python -m src.summary` that reads summaries of past sweeps.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import Metric, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from src import tracking

PAGE_SIZE = 5000
TOP_N = 10
TEST_METRICS = ("test_accuracy", "precision", "recall", "f1_score", "roc_auc")
CONFUSION = ("tn", "fp", "fn", "tp")


class SummaryError(RuntimeError):
    """No sweep to summarise: unknown run, a run that is not a sweep, or an empty experiment."""


@dataclass
class SweepSummary:
    """A ranked table of a sweep's children and what was concluded from it."""

    parent: Run
    table: pd.DataFrame  # one row per child, ranked best first; failed and unranked rows last
    swept: list[str]  # the swept param keys
    metric: str
    direction: str

    @property
    def ranked(self) -> pd.DataFrame:
        """The finished children with a finite selection metric, best first."""
        return self.table[self.table["rank"].notna()]

    @property
    def best(self) -> pd.Series | None:
        """The best child's row, or None when no child has a finite selection metric."""
        ranked = self.ranked
        return ranked.iloc[0] if len(ranked) else None

    @property
    def counts(self) -> dict[str, int]:
        """n_children, n_finished, n_failed (and other statuses) of the sweep."""
        status = self.table["status"] if len(self.table) else pd.Series(dtype=str)
        return {
            "n_children": len(self.table),
            "n_finished": int((status == "FINISHED").sum()),
            "n_failed": int((status == "FAILED").sum()),
            "n_killed": int((status == "KILLED").sum()),
        }


def search_all_runs(client: MlflowClient, experiment_ids: list[str], query: str) -> list[Run]:
    """Every run matching `query`, following MLflow's pages to the end."""
    runs: list[Run] = []
    token = None
    while True:
        page = tracking.with_retries(
            lambda token=token: client.search_runs(
                experiment_ids, query, max_results=PAGE_SIZE, page_token=token
            )
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def children_of(client: MlflowClient, parent: Run) -> list[Run]:
    """All child runs of a sweep parent."""
    query = f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    return search_all_runs(client, [parent.info.experiment_id], query)


def build_table(children: list[Run], swept: list[str], metric: str, direction: str) -> pd.DataFrame:
    """One row per child: ids, status, swept params, every metric; ranked by `metric`."""
    rows = []
    for run in children:
        row = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "start_time": run.info.start_time,
        }
        row |= {key: run.data.params.get(key) for key in swept}
        row |= run.data.metrics
        row["error"] = run.data.tags.get("error_message")
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=["rank", "run_id", "run_name", "status", *swept, metric])
    if metric not in table.columns:
        table[metric] = np.nan
    score = pd.to_numeric(table[metric], errors="coerce")
    finite = (table["status"] == "FINISHED") & np.isfinite(score)
    ascending = direction == "minimize"
    std = table["cv_accuracy_std"] if "cv_accuracy_std" in table else pd.Series(0.0, table.index)
    order = pd.DataFrame(
        {
            "finite": ~finite,
            "score": score if ascending else -score,
            "std": std.fillna(np.inf),
            "start": table["start_time"],
        }
    )
    table = table.loc[order.sort_values(["finite", "score", "std", "start"]).index]
    table.insert(0, "rank", np.where(finite.loc[table.index], np.arange(1, len(table) + 1), np.nan))
    return table.drop(columns=["start_time"]).reset_index(drop=True)


def swept_keys(parent: Run, children: list[Run]) -> list[str]:
    """The parent's `sweep.<key>` params, plus any param that varies among the children."""
    keys = [k.removeprefix("sweep.") for k in parent.data.params if k.startswith("sweep.")]
    if children:
        names = set().union(*(c.data.params for c in children))
        varying = [k for k in sorted(names) if len({c.data.params.get(k) for c in children}) > 1]
        keys += [k for k in varying if k not in keys]
    return list(dict.fromkeys(k for k in keys if any(k in c.data.params for c in children)))


def load_summary(client: MlflowClient, parent: Run) -> SweepSummary:
    """Read a sweep's children from MLflow and rank them by the parent's selection metric."""
    children = children_of(client, parent)
    metric = parent.data.tags.get("sweep_metric", "cv_accuracy_mean")
    direction = parent.data.tags.get("sweep_direction", "maximize")
    swept = swept_keys(parent, children)
    return SweepSummary(
        parent, build_table(children, swept, metric, direction), swept, metric, direction
    )


def parameter_importance(summary: SweepSummary) -> pd.DataFrame:
    """Share of the metric's variance each swept param explains on its own (one-way ANOVA η²)."""
    finished = summary.ranked
    y = pd.to_numeric(finished[summary.metric], errors="coerce")
    total = float(((y - y.mean()) ** 2).sum())
    rows = []
    for key in summary.swept:
        if key not in finished or finished[key].nunique() < 2:
            continue
        groups = y.groupby(finished[key].astype(str))
        between = float((groups.count() * (groups.mean() - y.mean()) ** 2).sum())
        rows.append(
            {
                "param": key,
                "eta_squared": between / total if total > 0 else 0.0,
                "n_values": int(finished[key].nunique()),
            }
        )
    table = pd.DataFrame(rows, columns=["param", "eta_squared", "n_values"])
    return table.sort_values("eta_squared", ascending=False).reset_index(drop=True)


def tie_note(summary: SweepSummary) -> str | None:
    """A sentence when the top configurations are within one CV std of the best (a tie)."""
    best = summary.best
    if best is None or "cv_accuracy_std" not in summary.table:
        return None
    ranked = summary.ranked
    std = float(best.get("cv_accuracy_std", np.nan))
    if not math.isfinite(std) or len(ranked) < 2:
        return None
    sign = -1 if summary.direction == "minimize" else 1
    close = ranked[sign * (float(best[summary.metric]) - ranked[summary.metric]) <= std]
    if len(close) < 2:
        return None
    return (
        f"{len(close)} configurations are within one CV standard deviation ({std:.4f}) of "
        f"the best {summary.metric}: treat them as a tie, not a winner."
    )


def nan_note(summary: SweepSummary) -> str | None:
    """Why finished children without a finite selection metric were not ranked."""
    table = summary.table
    unranked = table[(table["status"] == "FINISHED") & table["rank"].isna()]
    if unranked.empty:
        return None
    return (
        f"{len(unranked)} finished children have a non-finite {summary.metric} (NaN or "
        f"infinite) and are never chosen as best: {', '.join(unranked['run_name'])}."
    )


def spread(summary: SweepSummary) -> dict[str, float]:
    """mean_<m> and std_<m> across the ranked children: the noise floor of a seeds sweep."""
    ranked = summary.ranked
    out: dict[str, float] = {}
    if len(ranked) < 2:
        return out
    for name in dict.fromkeys((summary.metric, *TEST_METRICS)):
        if name in ranked:
            values = pd.to_numeric(ranked[name], errors="coerce").dropna()
            if len(values) >= 2:
                out[f"mean_{name}"] = float(values.mean())
                out[f"std_{name}"] = float(values.std(ddof=1))
    return out


def write_summary_files(summary: SweepSummary, out_dir: Path) -> list[Path]:
    """sweep_summary.csv, sweep_summary.md, parameter importance and the sweep plots."""
    from src.plots import save_sweep_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    importance = parameter_importance(summary)
    csv_path = out_dir / "sweep_summary.csv"
    summary.table.to_csv(csv_path, index=False)
    importance_path = out_dir / "parameter_importance.csv"
    importance.to_csv(importance_path, index=False)
    md_path = out_dir / "sweep_summary.md"
    md_path.write_text(render_markdown(summary, importance))
    plots = save_sweep_plots(summary, importance, out_dir)
    return [csv_path, md_path, importance_path, *plots]


def render_markdown(summary: SweepSummary, importance: pd.DataFrame) -> str:
    """The human-readable summary: best child, top 10, ties, failures, importance."""
    parent, metric = summary.parent, summary.metric
    counts = summary.counts
    lines = [
        f"# Sweep `{parent.info.run_name}`",
        "",
        f"Parent run `{parent.info.run_id}`: {counts['n_children']} children, "
        f"{counts['n_finished']} finished, {counts['n_failed']} failed. "
        f"Ranked by `{metric}` ({summary.direction}), a cross-validation score on the "
        f"training split, not the test score.",
        "",
    ]
    best = summary.best
    if best is None:
        lines += ["**No child finished with a finite selection metric: there is no best run.**"]
    else:
        lines += [
            "## Best child",
            "",
            f"- run: `{best['run_name']}` (`{best['run_id']}`)",
            f"- {metric}: **{best[metric]:.4f}**",
        ]
        if "cv_accuracy_std" in best and pd.notna(best["cv_accuracy_std"]):
            lines.append(f"- cv_accuracy_std: {best['cv_accuracy_std']:.4f}")
        lines += [f"- `{k}` = {best[k]}" for k in summary.swept if k in best]
        tests = [f"{m}={best[m]:.4f}" for m in TEST_METRICS if m in best and pd.notna(best[m])]
        lines.append("- test metrics: " + ", ".join(tests))
        confusion = [f"{m}={int(best[m])}" for m in CONFUSION if m in best and pd.notna(best[m])]
        if confusion:
            lines.append("- confusion counts (test): " + ", ".join(confusion))
    lines += [""]
    for note in (tie_note(summary), nan_note(summary)):
        if note:
            lines += [f"> {note}", ""]
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
            *(c for c in ("cv_accuracy_std", "test_accuracy", "roc_auc") if c != metric),
        ]
        lines += [f"## Top {len(ranked)}", "", _markdown_table(ranked, columns), ""]
    failed = summary.table[summary.table["status"] != "FINISHED"]
    if len(failed):
        lines += ["## Failed or interrupted jobs", ""]
        lines += [
            f"- `{r.run_name}` ({r.status}): {r.error or 'no error recorded'}"
            for r in failed.itertuples()
        ]
        lines += ["", "Tracebacks: the artifact `error/traceback.txt` of each failed child.", ""]
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


def _markdown_table(frame: pd.DataFrame, columns: list[str]) -> str:
    columns = [c for c in dict.fromkeys(columns) if c in frame.columns]

    def cell(column: str, value: object) -> str:
        if column in ("rank", "n_values") and isinstance(value, float):
            return str(int(value))
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = [
        "| " + " | ".join(cell(c, v) for c, v in zip(columns, row, strict=True)) + " |"
        for row in frame[columns].itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def record_on_parent(client: MlflowClient, summary: SweepSummary, files: list[Path]) -> None:
    """Tag the parent and the best child, log best_* metrics and counts, upload the files."""
    parent_id = summary.parent.info.run_id
    now = int(time.time() * 1000)
    metrics = dict(summary.counts)
    tags = [RunTag("n_children", str(metrics["n_children"]))]
    best = summary.best
    if best is not None:
        tags.append(RunTag("best_run_id", best["run_id"]))
        tags.append(RunTag("best_run_name", str(best["run_name"])[:5000]))
        for name in (summary.metric, "cv_accuracy_std", *TEST_METRICS):
            if name in best and pd.notna(best[name]):
                metrics[f"best_{name}"] = float(best[name])
        tracking.with_retries(lambda: client.set_tag(best["run_id"], "best_in_sweep", "true"))
    metrics |= spread(summary)
    tracking.with_retries(
        lambda: client.log_batch(
            parent_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()], tags=tags
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            (Path(tmp) / path.name).write_bytes(path.read_bytes())
        tracking.with_retries(lambda: client.log_artifacts(parent_id, tmp, "summary"))


def summarize_sweep(tracking_uri: str, parent_run_id: str, out_dir: Path) -> SweepSummary:
    """Summarise a sweep into `out_dir` and onto its parent run; return the summary."""
    client = MlflowClient(tracking_uri)
    summary = load_summary(client, client.get_run(parent_run_id))
    files = write_summary_files(summary, out_dir)
    record_on_parent(client, summary, files)
    return summary


def format_table(summary: SweepSummary, limit: int | None = None) -> str:
    """The ranked table as plain text, best first, with the swept params."""
    metrics = [summary.metric]
    metrics += [c for c in ("cv_accuracy_std", "test_accuracy", "roc_auc") if c != summary.metric]
    columns = ["rank", "run_name", "status", *summary.swept, *metrics]
    table = summary.table[[c for c in dict.fromkeys(columns) if c in summary.table.columns]]
    table = table.head(limit) if limit is not None else table.copy()
    table["rank"] = table["rank"].astype("Int64")
    options = ("display.max_rows", None, "display.width", 250, "display.max_colwidth", 60)
    with pd.option_context(*options, "display.float_format", "{:.4f}".format):
        return table.to_string(index=False)


def describe_best(summary: SweepSummary) -> str:
    """The best run's params and metrics, one per line."""
    best = summary.best
    if best is None:
        return f"No child of this sweep has a finite {summary.metric}."
    lines = [f"Best run: {best['run_name']} ({best['run_id']})"]
    lines += [f"  {k} = {best[k]}" for k in summary.swept if k in best]
    numeric = [
        c
        for c in summary.table.columns
        if c not in ("rank", "run_id", "run_name", "status", "error", *summary.swept)
    ]
    lines += [f"  {m} = {best[m]:.4f}" for m in numeric if pd.notna(best[m])]
    return "\n".join(lines)


def find_sweeps(client: MlflowClient, experiment_id: str) -> list[Run]:
    """The sweep parent runs of an experiment, newest first."""
    runs = search_all_runs(client, [experiment_id], "tags.sweep = 'true'")
    return sorted(runs, key=lambda r: r.info.start_time, reverse=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m src.summary [--sweep RUN_ID | --list] [--experiment NAME] [--csv PATH]`."""
    parser = argparse.ArgumentParser(prog="python -m src.summary", description=__doc__)
    parser.add_argument("--sweep", metavar="RUN_ID", help="the parent run (default: the latest)")
    parser.add_argument("--experiment", metavar="NAME", help="default: the configured one")
    parser.add_argument("--list", action="store_true", help="list the sweeps of the experiment")
    parser.add_argument("--csv", metavar="PATH", type=Path, help="write every child run to a CSV")
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI or the config's")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data=heart")
    args = parser.parse_args(argv)
    try:
        uri, experiment_name = configured_store(args.overrides, args.tracking_uri)
        experiment_name = args.experiment or experiment_name
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is not None:  # crashed workers left RUNNING runs: close them first
            from src.recovery import mark_stale_runs

            for run in mark_stale_runs(client, experiment.experiment_id):
                print(
                    f"Marked stale run {run.info.run_name!r} ({run.info.run_id}) FAILED: "
                    "its process is gone",
                    file=sys.stderr,
                )
        if args.list:
            print(list_sweeps(client, experiment_name, uri))
            return 0
        summary = load_summary(client, resolve_sweep(client, experiment_name, args.sweep, uri))
    except (SummaryError, MlflowException, tracking.TrackingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    counts = summary.counts
    print(
        f"Sweep {summary.parent.info.run_name} ({summary.parent.info.run_id}): "
        f"{counts['n_children']} children, {counts['n_finished']} finished, "
        f"{counts['n_failed']} failed; ranked by {summary.metric} ({summary.direction})\n"
    )
    print(format_table(summary))
    print()
    print(describe_best(summary))
    for note in (tie_note(summary), nan_note(summary)):
        if note:
            print(f"\nNote: {note}")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        children = children_of(client, summary.parent)
        every_param = sorted(set().union(*(c.data.params for c in children))) if children else []
        build_table(children, every_param, summary.metric, summary.direction).to_csv(
            args.csv, index=False
        )
        print(f"\nWrote {len(children)} child runs to {args.csv}")
    return 0


def configured_store(overrides: list[str], tracking_uri: str | None) -> tuple[str, str]:
    """The tracking URI and experiment name of the project's config (with overrides)."""
    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parent.parent / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    uri = tracking.resolve_tracking_uri(tracking_uri or cfg.mlflow.tracking_uri)
    return uri, str(cfg.mlflow.experiment_name)


def resolve_sweep(client: MlflowClient, experiment_name: str, run_id: str | None, uri: str) -> Run:
    """The named sweep parent, or the latest sweep of the experiment."""
    if run_id:
        try:
            run = client.get_run(run_id)
        except MlflowException as e:
            raise SummaryError(f"no run {run_id!r} in the tracking store {uri}") from e
        if run.data.tags.get("sweep") != "true":
            raise SummaryError(f"run {run_id!r} ({run.info.run_name}) is not a sweep parent run")
        return run
    return experiment_sweeps(client, experiment_name, uri)[0]


def experiment_sweeps(client: MlflowClient, experiment_name: str, uri: str) -> list[Run]:
    """The sweeps of a named experiment, newest first; an error if there is none."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise SummaryError(f"no experiment {experiment_name!r} in the tracking store {uri}")
    sweeps = find_sweeps(client, experiment.experiment_id)
    if not sweeps:
        raise SummaryError(f"experiment {experiment_name!r} has no sweeps yet ({uri})")
    return sweeps


def list_sweeps(client: MlflowClient, experiment_name: str, uri: str) -> str:
    """A table of the experiment's sweeps: name, start, children, best metric."""
    sweeps = experiment_sweeps(client, experiment_name, uri)
    rows = []
    for run in sweeps:
        metric = run.data.tags.get("sweep_metric", "cv_accuracy_mean")
        children = run.data.metrics.get("n_children")
        if children is None:  # not summarised (yet): count
            children = len(children_of(client, run))
        rows.append(
            {
                "run_id": run.info.run_id,
                "name": run.info.run_name,
                "status": run.info.status,
                "started": pd.Timestamp(run.info.start_time, unit="ms").strftime(
                    "%Y-%m-%d %H:%M:%S"
                ),
                "children": int(children),
                f"best {metric}": run.data.metrics.get(f"best_{metric}"),
            }
        )
    with pd.option_context("display.width", 200, "display.max_colwidth", 70):
        return pd.DataFrame(rows).to_string(index=False)


if __name__ == "__main__":
    sys.exit(main())
