"""The two fronts of a multi-objective sweep: the Pareto front on the mean scores, and the
configurations not shown dominated by the paired test on their CV folds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from src.analysis.verdict import fold_metric, fold_scores, fold_sizes, p_value_better, split_record
from src.ml.stats import holm

# an objective measured once per child without noise: two children differ exactly when their
# values do (the pickled model's size); any other objective without folds cannot be tested
EXACT = ("model_bytes",)
FRONT_COLUMNS = ("pareto_front", "not_shown_dominated", "dominated_by")
MAX_NAMED = 5  # dominated_by names this many dominating configurations, then counts the rest


@dataclass
class Objective:
    """One objective of the sweep and what its children recorded of it."""

    metric: str
    direction: str  # maximize | minimize
    means: dict[str, float]  # run id -> the child's value (the mean over folds, if folded)
    folds: dict[str, list[float]] = field(default_factory=dict)  # run id -> per-fold values

    @property
    def kind(self) -> str:
        """`folds` (a paired test), `exact` (compared as measured) or `untested`."""
        if fold_metric(self.metric) is not None:
            return "folds"
        return "exact" if self.metric in EXACT else "untested"

    def better(self, a: float, b: float) -> bool:
        """Whether value `a` is strictly better than `b` in this objective's direction."""
        return a > b if self.direction == "maximize" else a < b


@dataclass
class Fronts:
    """Which children are on each front, and who shows each of the others dominated."""

    objectives: list[Objective]
    alpha: float
    on_means: list[str]  # run ids on the Pareto front of the mean scores
    not_shown: list[str]  # run ids no other is significantly better than and not worse
    dominated_by: dict[str, list[str]]  # run id -> the run ids that show it dominated
    mean_dominated_by: dict[str, list[str]]  # run id -> the run ids that dominate its means
    unpaired: list[str] = field(default_factory=list)  # run ids without folds to test

    @property
    def untested(self) -> list[str]:
        """The objectives without folds or an exact value: no test can show a difference."""
        return [o.metric for o in self.objectives if o.kind == "untested"]


def dominates_on_means(a: Sequence[float], b: Sequence[float], maximize: Sequence[bool]) -> bool:
    """`a` is at least as good as `b` on every objective and better on one."""
    signed = [(x, y) if up else (-x, -y) for x, y, up in zip(a, b, maximize, strict=True)]
    return all(x >= y for x, y in signed) and any(x > y for x, y in signed)


def mean_front(values: Mapping[str, Sequence[float]], maximize: Sequence[bool]) -> list[str]:
    """The keys of `values` (one value per objective) that no other dominates."""
    return [
        b
        for b, vb in values.items()
        if not any(dominates_on_means(va, vb, maximize) for a, va in values.items() if a != b)
    ]


def shown_dominating(
    objectives: Sequence[Objective],
    ids: Sequence[str],
    groups: Mapping[str, object],
    sizes: Mapping[str, tuple[int, int]],
    alpha: float,
) -> dict[str, list[str]]:
    """For each child B of `ids`: the children A that show it dominated. A does when it is
    significantly better than B on at least one objective and not significantly worse on any:
    the one-sided corrected resampled t-test on their paired folds (children of one `groups`
    key share their folds), Holm-adjusted over every comparison made for B (each other child,
    each folded objective, both directions), at `alpha`; an exact objective compares values."""
    shown: dict[str, list[str]] = {}
    for b in ids:
        tests: list[tuple[str, bool]] = []  # (a, True: a better than b | False: a worse)
        p_values: list[float] = []
        better = {a: False for a in ids if a != b}
        worse = dict(better)
        for a in better:
            for objective in objectives:
                if objective.kind == "exact":
                    va, vb = objective.means[a], objective.means[b]
                    better[a] |= objective.better(va, vb)
                    worse[a] |= objective.better(vb, va)
                    continue
                fa, fb = objective.folds.get(a), objective.folds.get(b)
                if objective.kind != "folds" or fa is None or fb is None or groups[a] != groups[b]:
                    continue
                size, way = sizes[b], objective.direction
                tests += [(a, True), (a, False)]
                p_values += [p_value_better(fa, fb, size, way), p_value_better(fb, fa, size, way)]
        for (a, a_better), adjusted in zip(tests, holm(p_values), strict=True):
            if adjusted < alpha:
                (better if a_better else worse)[a] = True
        shown[b] = [a for a in better if better[a] and not worse[a]]
    return shown


def find_fronts(
    client: MlflowClient,
    runs: Mapping[str, Run],
    candidates: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    alpha: float,
) -> Fronts:
    """Both fronts among `candidates` (the finished, feasible children with a finite value of
    every objective), each objective (metric, direction) of `pairs` read from their runs."""
    ids = [str(i) for i in candidates["run_id"]]
    objectives = []
    for metric, direction in pairs:
        means = dict(zip(ids, pd.to_numeric(candidates[metric]).astype(float), strict=True))
        objective = Objective(metric, direction, means)
        if (key := fold_metric(metric)) is not None:
            for run_id in ids:
                folds = fold_scores(client, runs[run_id], key)
                if folds is not None:
                    objective.folds[run_id] = folds
        objectives.append(objective)
    groups = {i: str(split_record(runs[i])) for i in ids}
    sizes = {i: fold_sizes(runs[i]) for i in ids}
    folded = [o for o in objectives if o.kind == "folds"]
    unpaired = [i for i in ids if any(i not in o.folds for o in folded) or not all(sizes[i])]
    for objective in folded:  # a child without folds or fold sizes is tested on nothing
        for run_id in unpaired:
            objective.folds.pop(run_id, None)
    maximize = [direction == "maximize" for _, direction in pairs]
    values = {i: [o.means[i] for o in objectives] for i in ids}
    shown = shown_dominating(objectives, ids, groups, sizes, alpha)
    return Fronts(
        objectives,
        alpha,
        on_means=mean_front(values, maximize),
        not_shown=[i for i in ids if not shown[i]],
        dominated_by=shown,
        mean_dominated_by={
            b: [a for a in ids if a != b and dominates_on_means(values[a], values[b], maximize)]
            for b in ids
        },
        unpaired=unpaired,
    )


def front_columns(table: pd.DataFrame, fronts: Fronts | None) -> pd.DataFrame:
    """`table` with pareto_front, not_shown_dominated (true or false for the children that
    could be on a front, blank for the others) and dominated_by (the run names that show a
    child dominated)."""
    table = table.copy()
    if fronts is None:
        return table
    names = dict(zip(table["run_id"], table["run_name"].astype(str), strict=True))
    ids = table["run_id"]
    candidates = ids.isin(fronts.dominated_by)
    for column, members in (
        ("pareto_front", fronts.on_means),
        ("not_shown_dominated", fronts.not_shown),
    ):
        flags = pd.Series(pd.NA, index=table.index, dtype="boolean")
        flags[candidates] = ids[candidates].isin(members)
        table[column] = flags
    table["dominated_by"] = ids.map(
        lambda i: named([names[a] for a in fronts.dominated_by.get(i, [])])
    )
    return table


def named(names: Sequence[str]) -> str:
    """Up to MAX_NAMED names, then how many more."""
    if len(names) <= MAX_NAMED:
        return ", ".join(names)
    return f"{', '.join(names[:MAX_NAMED])} and {len(names) - MAX_NAMED} more"


def first_of(names: Sequence[str]) -> str:
    """The first name, and how many others: `a (and 3 more)`."""
    return names[0] + (f" (and {len(names) - 1} more)" if len(names) > 1 else "")


def fronts_note(fronts: Fronts, names: Mapping[str, str]) -> str:
    """How many children are on each front, and why the fronts differ, child by child."""
    n = len(fronts.dominated_by)
    objectives = ", ".join(f"{o.metric} ({o.direction})" for o in fronts.objectives)
    test = (
        f"one-sided corrected resampled t-test on the paired CV folds, Holm-adjusted over each "
        f"configuration's comparisons, alpha {fronts.alpha:g}"
    )
    sentences = [
        f"Objectives {objectives}: {len(fronts.on_means)} of {n} feasible configurations are on "
        f"the Pareto front of the mean scores (pareto_front), {len(fronts.not_shown)} are not "
        f"shown dominated (not_shown_dominated: no other is significantly better on one "
        f"objective and not significantly worse on any; {test})."
    ]
    only_means = [i for i in fronts.on_means if i not in fronts.not_shown]
    only_shown = [i for i in fronts.not_shown if i not in fronts.on_means]
    if not only_means and not only_shown:
        sentences.append("The two fronts hold the same configurations.")
    for run_id in only_means[:MAX_NAMED]:
        sentences.append(
            f"{names[run_id]} is on the front of the means, but "
            f"{first_of([names[a] for a in fronts.dominated_by[run_id]])} is significantly "
            f"better on an objective and not significantly worse on any: its edge is within the "
            f"noise."
        )
    for run_id in only_shown[:MAX_NAMED]:
        sentences.append(
            f"{names[run_id]} is off the front of the means (dominated by "
            f"{first_of([names[a] for a in fronts.mean_dominated_by[run_id]])}), but none of "
            f"those is significantly better on an objective and not significantly worse on any: "
            f"the folds cannot tell it is dominated."
        )
    if len(only_means) > MAX_NAMED or len(only_shown) > MAX_NAMED:
        sentences.append(
            f"({len(only_means)} are on the front of the means only, {len(only_shown)} not "
            f"shown dominated only: the first {MAX_NAMED} of each are told here; every child's "
            f"dominated_by is in sweep_summary.csv.)"
        )
    if fronts.untested:
        sentences.append(
            f"{', '.join(fronts.untested)} has one value per child and no folds: no test can "
            f"show a difference on it, so it neither shows a configuration dominated nor "
            f"keeps one from being shown dominated."
        )
    if fronts.unpaired:
        sentences.append(
            f"{len(fronts.unpaired)} configurations have no paired folds to test "
            f"({named([names[i] for i in fronts.unpaired])}): the test shows them neither "
            f"dominated nor dominating."
        )
    return " ".join(sentences)
