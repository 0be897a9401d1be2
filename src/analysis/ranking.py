"""Rank a sweep's children read from MLflow, and what can be concluded from the ranking."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from src.analysis.pareto import FRONT_COLUMNS, Fronts, find_fronts, front_columns, fronts_note
from src.analysis.verdict import DEFAULT_ALPHA, Verdict, compare_with_best, verdict_columns
from src.ml.evaluate import FOLD_METRICS, TEST_METRICS
from src.ml.objectives import Constraint, broken, parse_constraints, sweep_objectives
from src.tracking.store import children_of

# what a race recorded on an eliminated child: the round, the leader it lost to (name, run id)
ELIMINATED = "race_eliminated_round"
RACE_TAGS = (ELIMINATED, "race_leader", "race_leader_run_id")
SEED_KEYS = ("seed", "random_state")  # a sweep over only these measures noise
MAX_LISTED = 10  # the verdict names the equivalent configurations up to this many

CONFUSION = ("tn", "fp", "fn", "tp")


@dataclass
class SweepSummary:
    """A ranked table of a sweep's children and what was concluded from it."""

    parent: Run
    table: pd.DataFrame  # one row per child, ranked best first; failed and unranked rows last
    swept: list[str]  # the swept param keys
    metric: str
    direction: str
    verdict: Verdict = field(default_factory=lambda: Verdict(None, DEFAULT_ALPHA))
    prefer: str | None = None  # sweep.prefer, e.g. model.n_neighbors:max
    chosen_id: str | None = None  # the child sweep.prefer chose (None: the top score)
    rule: str = "the best score"  # what chose `best`, for the reader
    logged: tuple[str, ...] = ()  # every metric key the children logged, per-fold ones included
    dataset: str = ""  # the children's data.name
    objectives: list[tuple[str, str]] = field(default_factory=list)  # (metric, direction), 2+
    constraints: list[Constraint] = field(default_factory=list)  # sweep.constraints
    fronts: Fronts | None = None  # a multi-objective sweep's two fronts
    choose_by: str | None = None  # the objective that picks among the not shown dominated

    @property
    def heading(self) -> str:
        """What the sweep's figures are of: dataset, sweep and metric."""
        parts = [self.dataset, self.parent.info.run_name, self.metric]
        return " · ".join(p for p in parts if p)

    @property
    def ranked(self) -> pd.DataFrame:
        """The finished children with a finite selection metric, best first."""
        return self.table[self.table["rank"].notna()]

    @property
    def top(self) -> pd.Series | None:
        """The row with the best selection metric, or None when no child has a finite one."""
        ranked = self.ranked
        return ranked.iloc[0] if len(ranked) else None

    @property
    def best(self) -> pd.Series | None:
        """The chosen child's row: the top score, or what sweep.prefer chose among its equals."""
        if self.chosen_id is not None:
            return self.ranked[self.ranked["run_id"] == self.chosen_id].iloc[0]
        return self.top

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


def build_table(
    children: list[Run],
    swept: list[str],
    metric: str,
    direction: str,
    constraints: list[Constraint] | None = None,
) -> pd.DataFrame:
    """One row per child: ids, status, swept params, every metric; ranked by `metric`. With
    `constraints`, `feasible` and `infeasible` (the constraints it breaks) too: an infeasible
    child is never ranked."""
    rows = []
    for run in children:
        row = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "start_time": run.info.start_time,
        }
        row |= {key: run.data.params.get(key) for key in swept}
        # a per-fold metric's latest value is one fold's score, not the run's: left out
        row |= {k: v for k, v in run.data.metrics.items() if k not in FOLD_METRICS}
        row["error"] = run.data.tags.get("error_message")
        row |= {k: run.data.tags[k] for k in RACE_TAGS if k in run.data.tags}
        if constraints:
            breaks = broken(constraints, run.data.metrics)
            row |= {"feasible": not breaks, "infeasible": ", ".join(breaks)}
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=["rank", "run_id", "run_name", "status", *swept, metric])
    if metric not in table.columns:
        table[metric] = np.nan
    score = pd.to_numeric(table[metric], errors="coerce")
    finite = (table["status"] == "FINISHED") & np.isfinite(score) & ~eliminated(table)
    if constraints:
        finite &= table["feasible"].astype(bool)
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
    ranks = np.where(finite.loc[table.index], np.arange(1, len(table) + 1), np.nan)
    table.insert(0, "rank", pd.Series(ranks, index=table.index, dtype="Int64"))  # 1, not 1.0
    return table.drop(columns=["start_time"]).reset_index(drop=True)


def eliminated(table: pd.DataFrame) -> pd.Series:
    """The rows of children a race eliminated (they ran fewer folds: never ranked)."""
    if ELIMINATED not in table:
        return pd.Series(False, index=table.index)
    return table[ELIMINATED].notna()


def swept_keys(parent: Run, children: list[Run]) -> list[str]:
    """The keys the sweep was given, as the user typed them (the parent's `sweep.<key>`
    params: `lr_penalty`, not the `model.solver` it sets); for a parent made elsewhere (no
    such params), the params that vary among its children."""
    typed = [k.removeprefix("sweep.") for k in parent.data.params if k.startswith("sweep.")]
    typed = [k for k in typed if any(k in c.data.params for c in children)]
    if typed or not children:
        return typed
    names = set().union(*(c.data.params for c in children))
    return [k for k in sorted(names) if len({c.data.params.get(k) for c in children}) > 1]


def load_summary(
    client: MlflowClient, parent: Run, metric: str | None = None, direction: str | None = None
) -> SweepSummary:
    """Read a sweep's children from MLflow, rank them by `metric` (default: the parent's
    selection metric, else cv_accuracy_mean), and compare each with the best on their paired
    CV folds."""
    children = children_of(client, parent)
    tags = parent.data.tags
    pairs = sweep_objectives(tags) if metric is None else []  # --metric: that one alone
    metric = metric or tags.get("sweep_metric", "cv_accuracy_mean")
    direction = direction or tags.get("sweep_direction", "maximize")
    constraints = parse_constraints(json.loads(tags.get("sweep_constraints", "[]")))
    alpha = float(tags.get("sweep_alpha", DEFAULT_ALPHA))
    prefer = tags.get("sweep_prefer") or None
    swept = swept_keys(parent, children)
    key = prefer.partition(":")[0] if prefer else None
    columns = [*swept, key] if key and key not in swept else swept
    table = build_table(children, columns, metric, direction, constraints)
    runs = {c.info.run_id: c for c in children}
    ranked = table[table["rank"].notna()]
    verdict = compare_with_best(client, runs, ranked, metric, direction, alpha)
    fronts = None
    if len(pairs) > 1:
        metrics = [m for m, _ in pairs]
        for m in metrics:
            if m not in table:
                table[m] = np.nan
        values = ranked[metrics].apply(pd.to_numeric, errors="coerce")
        candidates = ranked[np.isfinite(values).all(axis=1)]
        fronts = find_fronts(client, runs, candidates, pairs, alpha)
    logged = tuple(sorted({key for child in children for key in child.data.metrics}))
    names = (str(c.data.params["data.name"]) for c in children if "data.name" in c.data.params)
    summary = SweepSummary(
        parent, front_columns(verdict_columns(table, verdict), fronts), swept, metric,
        direction, verdict, prefer, logged=logged, dataset=next(names, ""),
        objectives=pairs if len(pairs) > 1 else [], constraints=constraints, fronts=fronts,
        choose_by=tags.get("sweep_choose_by") if fronts is not None else None,
    )  # fmt: skip
    summary.chosen_id, summary.rule = choose_on_fronts(summary) if fronts else choose(summary)
    if constraints and summary.chosen_id is None and summary.top is not None:
        summary.rule += f" among the feasible children ({', '.join(map(str, constraints))})"
    return summary


def choose_on_fronts(summary: SweepSummary) -> tuple[str | None, str]:
    """A multi-objective sweep's one child: among the feasible children not shown dominated,
    the best sweep.choose_by objective (with sweep.prefer: the most preferred, then that)."""
    fronts = summary.fronts
    assert fronts is not None
    by = summary.choose_by or summary.objectives[0][0]
    direction = dict(summary.objectives)[by]
    table = summary.table
    pool = table[table["run_id"].isin(fronts.not_shown)]
    feasible = (
        f" feasible ({', '.join(map(str, summary.constraints))})" if summary.constraints else ""
    )
    if pool.empty:
        return None, "none: no feasible child has a finite value of every objective"
    score = pd.to_numeric(pool[by], errors="coerce")
    order = score if direction == "minimize" else -score
    rule = (
        f"the {'smallest' if direction == 'minimize' else 'largest'} {by} among the "
        f"{len(pool)}{feasible} configurations not shown dominated"
    )
    if summary.prefer:
        key, _, way = summary.prefer.partition(":")
        values = pd.to_numeric(pool[key], errors="coerce") if key in pool else None
        if values is not None and values.notna().any():
            ranked = pd.DataFrame({"v": values if way == "min" else -values, "o": order})
            chosen = ranked.sort_values(["v", "o"]).index[0]
            extreme = "largest" if way == "max" else "smallest"
            return str(pool.loc[chosen, "run_id"]), (
                f"sweep.prefer={summary.prefer}: the {extreme} {key} among the "
                f"{len(pool)}{feasible} configurations not shown dominated (then the best {by})"
            )
    return str(pool.loc[order.sort_values(kind="stable").index[0], "run_id"]), rule


def choose(summary: SweepSummary) -> tuple[str | None, str]:
    """The child sweep.prefer picks among those not significantly worse than the top score (the
    one-standard-error rule, with a real test), and the rule as a reader should see it."""
    top, prefer = summary.top, summary.prefer
    if top is None or prefer is None:
        return None, "the best score"
    key, _, way = prefer.partition(":")
    if summary.verdict.missing is not None:
        return (
            None,
            f"the best score (sweep.prefer={prefer} needs paired folds: {summary.verdict.missing})",
        )
    ranked = summary.ranked
    equals = ranked[ranked["equivalent_to_best"].fillna(False).astype(bool)]
    values = pd.to_numeric(equals[key], errors="coerce") if key in equals else pd.Series()
    values = values.dropna()
    if values.empty:
        return None, f"the best score (sweep.prefer={prefer}: no child records a numeric {key})"
    target = values.max() if way == "max" else values.min()
    chosen = equals.loc[values[values == target].index].iloc[0]  # ranked: the best of those
    extreme = "largest" if way == "max" else "smallest"
    return str(chosen["run_id"]), (
        f"sweep.prefer={prefer}: the {extreme} {key} among the {len(equals)} configurations "
        f"not significantly worse than the best score"
    )


def parameter_importance(summary: SweepSummary) -> pd.DataFrame:
    """Share of the metric's variance each swept param explains on its own (one-way ANOVA η²)."""
    finished = summary.ranked
    y = pd.to_numeric(finished[summary.metric], errors="coerce")
    total = float(((y - y.mean()) ** 2).sum())
    rows = []
    for key in summary.swept:
        # one run per value explains all the variance by construction (a seeds sweep): no η²
        if key not in finished or not 2 <= finished[key].nunique() < len(finished):
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


def more_folds_hint(n_folds: int, raced: bool = False) -> str:
    """What to add after "these folds cannot tell them apart" when the test has few folds (a
    race already repeats its CV: one repeat a round)."""
    if n_folds >= 20:
        return ""
    if raced:
        return (
            "; a race of more rounds (a larger cv.repeats) gives the configurations still in "
            "it more folds"
        )
    return "; repeated CV (cv.repeats=10) gives the test more folds"


def listed(names: list[str]) -> str:
    """The names, the first `MAX_LISTED` of them when there are more (a sweep of thousands)."""
    if len(names) <= MAX_LISTED:
        return ", ".join(names)
    return f"{', '.join(names[:MAX_LISTED])} and {len(names) - MAX_LISTED:,} more"


def verdict_note(summary: SweepSummary) -> str | None:
    """One sentence: how many configurations are statistically indistinguishable from the best,
    which, and which could not be compared."""
    top, verdict = summary.top, summary.verdict
    if top is None or len(summary.ranked) < 2:
        return None
    if verdict.missing is not None:
        return f"No paired comparison with the best: {verdict.missing}."
    names = dict(zip(summary.table["run_id"], summary.table["run_name"].astype(str), strict=True))
    test = (
        f"one-sided corrected resampled t-test on {verdict.n_folds} paired CV folds of "
        f"{verdict.fold_metric}, Holm-adjusted, alpha {verdict.alpha:g}"
    )
    equal = [i for i in verdict.adjusted if verdict.equivalent(i)]
    more = more_folds_hint(verdict.n_folds, bool(race_counts(summary)))
    sentences = []
    if verdict.adjusted and not equal:
        sentences.append(
            f"The best is significantly better than each of the {len(verdict.adjusted)} other "
            f"configurations compared ({test})."
        )
    elif len(equal) == len(verdict.adjusted):
        compared = " compared" if verdict.unpaired else ""  # the unpaired: a sentence below
        sentences.append(
            f"All {len(equal) + 1:,} configurations{compared} are statistically indistinguishable "
            f"from the best ({test}): none is significantly worse than the best{more}."
        )
    elif len(equal) > MAX_LISTED:  # name the fewer: the significantly worse ones
        worse = [names[i] for i in verdict.adjusted if not verdict.equivalent(i)]
        sentences.append(
            f"{len(equal) + 1:,} of {len(verdict.adjusted) + 1:,} configurations are statistically "
            f"indistinguishable from the best ({test}): all but the {len(worse)} significantly "
            f"worse, {listed(worse)} (equivalent_to_best in the table). These folds cannot "
            f"tell them apart{more}."
        )
    elif equal:
        sentences.append(
            f"{len(equal) + 1:,} of {len(verdict.adjusted) + 1:,} configurations are statistically "
            f"indistinguishable from the best ({test}): {top['run_name']} (the best), "
            f"{', '.join(names[i] for i in equal)}. These folds cannot tell them apart{more}."
        )
    reasons: dict[str, list[str]] = {}
    for run_id, why in verdict.unpaired.items():
        reasons.setdefault(why, []).append(names[run_id])
    sentences += [
        f"{len(runs):,} cannot be paired with the best, {why}: {listed(runs)}."
        for why, runs in reasons.items()
    ]
    return " ".join(sentences)


def interval_example(summary: SweepSummary) -> tuple[str, str] | None:
    """(far, close): the run ids of an indistinguishable child further from the best than a
    significantly worse one (the farthest such, and the closest worse), or None."""
    verdict = summary.verdict
    if verdict.missing is not None:
        return None
    gap = {i: abs(d[0]) for i, d in verdict.differences.items()}
    worse = [i for i in gap if not verdict.equivalent(i)]
    close = min(worse, key=gap.__getitem__, default=None)
    if close is None:
        return None
    farther = [i for i in gap if verdict.equivalent(i) and gap[i] > gap[close]]
    return (max(farther, key=gap.__getitem__), close) if farther else None


def interval_note(summary: SweepSummary) -> str | None:
    """One sentence on why a lower score can be indistinguishable from the best and a closer
    one not: the width of the interval of its fold differences (an example from this sweep
    when it has one)."""
    verdict = summary.verdict
    if verdict.missing is not None or not verdict.differences:
        return None
    example = interval_example(summary)
    if example is None:
        return (
            "A configuration is indistinguishable from the best when the interval of its "
            "difference (diff_ci_low to diff_ci_high) reaches zero: fold differences that vary "
            "give a wide interval that reaches zero from a lower mean, steady ones a narrow "
            "interval that may not reach it from a closer one."
        )
    names = dict(zip(summary.table["run_id"], summary.table["run_name"].astype(str), strict=True))

    def said(run_id: str) -> str:
        mean, low, high = verdict.differences[run_id]
        return f"{names[run_id]} ({mean:+.4f}, interval {low:+.4f} to {high:+.4f})"

    far, close = example
    return (
        f"Why a lower score can still be indistinguishable from the best and a closer one not: "
        f"{said(far)} differs from the best by folds that vary, so its wide interval reaches "
        f"zero, while {said(close)} trails it by folds that agree, so its narrow interval stays "
        f"clear of zero."
    )


def only_seeds(summary: SweepSummary) -> list[str]:
    """The swept keys, if every one of them is a seed (`seed`, `cv.seed`, `*.random_state`):
    such a sweep measures noise and has no winner; else []."""
    seeds = [k for k in summary.swept if k.rsplit(".", 1)[-1] in SEED_KEYS]
    return seeds if seeds and len(seeds) == len(summary.swept) else []


def reading_notes(summary: SweepSummary) -> list[str]:
    """What a careful reader would say of the ranking: a seeds sweep has no winner; a best
    value at the edge of its grid may not be the best there is."""
    seeds = only_seeds(summary)
    if seeds:
        return [
            f"This sweep varies only seeds ({', '.join(seeds)}): its best is the "
            f"luckiest seed, not a better configuration. Read the spread: it is the noise "
            f"any comparison on this data must beat."
        ]
    # the top score's value, not sweep.prefer's pick (which sits at an edge by its own rule)
    best, ranked = summary.top, summary.ranked
    if best is None:
        return []
    notes = []
    for key in summary.swept:
        values = pd.to_numeric(ranked[key], errors="coerce") if key in ranked else pd.Series()
        value = pd.to_numeric(pd.Series([best.get(key)]), errors="coerce").iloc[0]
        if values.isna().any() or values.nunique() < 3 or pd.isna(value):
            continue
        edge = "largest" if value == values.max() else "smallest" if value == values.min() else ""
        if edge:
            notes.append(
                f"The best {key} ({best[key]}) is the {edge} value tried: the best may lie "
                f"beyond the grid; extend it to see."
            )
    return notes


def race_counts(summary: SweepSummary) -> dict[str, int]:
    """A race's counts (empty for a sweep that did not race): n_eliminated, the fold-fits
    done (race_fold_fits: every child's folds run) and those a full run would have done
    (race_full_fold_fits: every child on every fold)."""
    if summary.parent.data.tags.get("sweep_race") != "true":
        return {}
    table = summary.table
    folds = int(summary.parent.data.tags.get("sweep_race_folds", 0))  # cv.folds x cv.repeats
    done = pd.to_numeric(table.get("race_folds", pd.Series(dtype=float)), errors="coerce")
    return {
        "n_eliminated": int(eliminated(table).sum()),
        "race_fold_fits": int(done.fillna(0).sum()),
        "race_full_fold_fits": folds * len(table),
    }


def race_note(summary: SweepSummary) -> str | None:
    """What racing did: how many configurations it eliminated, in which rounds, and the
    fold-fits it saved against a full run of every configuration on every fold."""
    counts = race_counts(summary)
    if not counts:
        return None
    table = summary.table
    out = table[eliminated(table)]
    tags = summary.parent.data.tags
    alpha, level = tags.get("sweep_race_alpha", ""), tags.get("sweep_race_level")
    bound = f"below {level} a round: " if level else ""
    done, full = counts["race_fold_fits"], counts["race_full_fold_fits"]
    unfinished = len(table) - summary.counts["n_finished"]  # failed or stopped: not racing's
    why = f"; {unfinished} that did not finish ran fewer, not for racing" if unfinished else ""
    share = f" ({done / full:.0%}{why})" if full else ""
    saved = f"{done} of the {full} fold-fits a full run does{share}"
    if out.empty:
        return f"Racing eliminated none of the {len(table)} configurations: {saved}."
    rounds = pd.to_numeric(out[ELIMINATED]).astype(int).value_counts().sort_index()
    when = ", ".join(f"{n} after round {r}" for r, n in rounds.items())
    search = "Optuna" in tags.get("sweeper", "")  # a search: each trial against the best one
    leader, holm = (
        ("the best trial", "")
        if search
        else (
            "the leader",
            "its fold variance moderated over the round's comparisons, Holm-adjusted, ",
        )
    )
    return (
        f"Racing eliminated {len(out)} of {len(table)} configurations ({when}), each "
        f"significantly worse than {leader} on the folds run so far (one-sided corrected "
        f"resampled t-test, {holm}{bound}Pocock's boundary for race alpha {alpha} over the "
        f"rounds); they are never ranked (race_eliminated_round, race_leader, race_p_value). "
        f"The sweep did {saved}."
    )


def nan_note(summary: SweepSummary) -> str | None:
    """Why finished children without a finite selection metric were not ranked."""
    table = summary.table
    unranked = table[(table["status"] == "FINISHED") & table["rank"].isna() & ~eliminated(table)]
    if "feasible" in unranked:  # an infeasible child is unranked for that (pareto_note says)
        unranked = unranked[unranked["feasible"].astype(bool)]
    if unranked.empty:
        return None
    return (
        f"{len(unranked)} finished children have a non-finite {summary.metric} (NaN or "
        f"infinite) and are never chosen as best: {listed(list(unranked['run_name']))}."
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


def pareto_note(summary: SweepSummary) -> str | None:
    """A multi-objective sweep's fronts: how many on each, why they differ; and the children
    its constraints made infeasible."""
    sentences = []
    if summary.fronts is not None:
        names = dict(
            zip(summary.table["run_id"], summary.table["run_name"].astype(str), strict=True)
        )
        sentences.append(fronts_note(summary.fronts, names))
    if summary.constraints:
        table = summary.table
        out = table[(table["status"] == "FINISHED") & ~table["feasible"].astype(bool)]
        rules = ", ".join(map(str, summary.constraints))
        sentences.append(
            f"{len(out)} of {int((table['status'] == 'FINISHED').sum())} finished children "
            f"break the constraints ({rules}): infeasible, never ranked, chosen or on a front"
            + (f" ({', '.join(out['run_name'].astype(str))})." if len(out) else ".")
        )
    return " ".join(sentences) or None


def front_table(summary: SweepSummary) -> pd.DataFrame:
    """The children that could be on a front, with their objectives and the front columns,
    ordered by the first objective (empty for a single-objective sweep)."""
    if summary.fronts is None:
        return pd.DataFrame()
    table = summary.table
    rows = table[table["run_id"].isin(summary.fronts.dominated_by)]
    columns = ["run_name", *summary.swept, *(m for m, _ in summary.objectives), *FRONT_COLUMNS]
    return rows[[c for c in dict.fromkeys(columns) if c in rows]]
