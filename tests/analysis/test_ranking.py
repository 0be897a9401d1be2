"""The pure functions of the ranking: the table of a sweep's children and the rule that chooses
one (runs made in memory as MLflow's entities, no store)."""

from __future__ import annotations

import math

import pandas as pd
from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag

from src.analysis.ranking import SweepSummary, build_table, choose
from src.analysis.verdict import Verdict


def child(run_id: str, status: str, score: float, k: str, start: int, std: float = 0.01) -> Run:
    """A child run as MLflow returns it: its status, cv_accuracy_mean/std and model.n_neighbors."""
    info = RunInfo(run_id, "1", "me", status, start, start + 1, "active", run_name=f"knn k={k}")
    metrics = [
        Metric("cv_accuracy_mean", score, start, 0),
        Metric("cv_accuracy_std", std, start, 0),
    ]
    data = RunData(metrics=metrics, params=[Param("model.n_neighbors", k)], tags=[RunTag("a", "b")])
    return Run(info, data)


RUNS = [
    child("slow", "FINISHED", 0.80, "3", 1),
    child("best", "FINISHED", 0.90, "5", 2),
    child("tie_wider", "FINISHED", 0.90, "7", 3, std=0.05),  # same score, larger spread
    child("failed", "FAILED", 0.99, "9", 4),  # never ranked, whatever it logged
    child("nan", "FINISHED", math.nan, "11", 5),  # recorded, never ranked
]


def test_build_table_ranks_finished_finite_children_best_first_with_integer_ranks() -> None:
    table = build_table(RUNS, ["model.n_neighbors"], "cv_accuracy_mean", "maximize")
    assert list(table["run_id"]) == ["best", "tie_wider", "slow", "failed", "nan"]
    assert list(table["rank"].iloc[:3]) == [1, 2, 3] and table["rank"].iloc[3:].isna().all()
    assert str(table["rank"].dtype) == "Int64"  # written 1, not 1.0
    lowest = build_table(RUNS, ["model.n_neighbors"], "cv_accuracy_mean", "minimize")
    assert list(lowest["run_id"].iloc[:3]) == ["slow", "best", "tie_wider"]


def test_build_table_of_no_children_has_the_columns() -> None:
    empty = build_table([], ["model.n_neighbors"], "cv_accuracy_mean", "maximize")
    assert empty.empty and {"rank", "run_id", "model.n_neighbors"} <= set(empty.columns)


def summary(prefer: str | None, equivalent: list[bool | None]) -> SweepSummary:
    table = build_table(RUNS[:3], ["model.n_neighbors"], "cv_accuracy_mean", "maximize")
    table["equivalent_to_best"] = pd.Series(equivalent, dtype=object)
    return SweepSummary(RUNS[0], table, ["model.n_neighbors"], "cv_accuracy_mean", "maximize",
                        Verdict(None, 0.05), prefer)  # fmt: skip


def test_choose_takes_the_preferred_among_the_equivalent_only() -> None:
    # ranked: best (k=5), tie_wider (k=7), slow (k=3, significantly worse)
    chosen, rule = choose(summary("model.n_neighbors:max", [True, True, False]))
    assert chosen == "tie_wider" and "largest model.n_neighbors among the 2" in rule
    chosen, _ = choose(summary("model.n_neighbors:min", [True, True, False]))
    assert chosen == "best"  # k=3 is smaller, but significantly worse: not a candidate
    assert choose(summary(None, [True, True, False])) == (None, "the best score")
