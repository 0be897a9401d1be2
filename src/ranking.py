"""Rank a sweep's children read from MLflow, and what can be concluded from the ranking."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from src.store import children_of

TEST_METRICS = ("test_accuracy", "precision", "recall", "f1_score", "roc_auc")
CONFUSION = ("tn", "fp", "fn", "tp")


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
