"""The plain-text summary of a sweep: what `python -m src.summary` prints, and what the sweep
records at its end (`sweep_summary.txt`), so that the command can print it again without reading
every child."""

from __future__ import annotations

import pandas as pd

from src.analysis.ranking import (
    CONFUSION,
    SweepSummary,
    interval_note,
    nan_note,
    pareto_note,
    race_note,
    reading_notes,
    verdict_note,
)
from src.analysis.verdict import VERDICT_COLUMNS


def header_text(summary: SweepSummary, experiment: str) -> str:
    """The sweep, its experiment, its counts and what ranks it; its note."""
    counts = summary.counts
    objectives = ", ".join(f"{m} ({d})" for m, d in summary.objectives)
    return (
        f"Sweep {summary.parent.info.run_name} ({summary.parent.info.run_id}) in experiment "
        f"{experiment!r}: {counts['n_children']:,} children, {counts['n_finished']:,} finished, "
        f"{counts['n_failed']} failed; ranked by {summary.metric} ({summary.direction})"
        + (f"; objectives {objectives}" if objectives else "")
        + f"\n  {summary.parent.data.tags.get('mlflow.note.content', '')}\n"
    )


def body_text(summary: SweepSummary) -> str:
    """The ranked table (its first `SHOWN` rows), the best run, and the notes."""
    parts = [format_table(summary, limit=SHOWN), "", describe_best(summary)]
    notes = (
        *reading_notes(summary),
        verdict_note(summary),
        interval_note(summary),
        race_note(summary),
        nan_note(summary),
        pareto_note(summary),
    )
    parts += [f"\nNote: {note}" for note in notes if note]
    return "\n".join(parts)


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
    table = blank_untested(table)
    options = ("display.max_rows", None, "display.width", 250, "display.max_colwidth", 60)
    with pd.option_context(*options, "display.float_format", "{:.4f}".format):
        text = table.to_string(index=False)
    more = len(summary.table) - len(table)
    return text + (f"\n... and {more:,} more children (every one: --csv PATH)" if more else "")


def blank_untested(table: pd.DataFrame) -> pd.DataFrame:
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
