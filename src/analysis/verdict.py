"""Compare each ranked child of a sweep with the best on their paired CV folds: which ones are
not significantly worse, and which ones cannot be paired."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from src.ml.stats import corrected_interval, corrected_ttest, holm
from src.tracking.store import FOLD_SCORES_TAG, with_retries

# what makes two children's folds the same folds: the split's params and the training data
SPLIT_PARAMS = ("cv.seed", "cv.folds", "cv.repeats")
FINGERPRINT_TAG = "data.train_fingerprint"
FOLD_SIZE_TAGS = ("cv.n_train", "cv.n_test")
DEFAULT_ALPHA = 0.05
DIFF_COLUMNS = ("diff_vs_best", "diff_ci_low", "diff_ci_high")
VERDICT_COLUMNS = (*DIFF_COLUMNS, "p_value_vs_best", "p_value_holm", "equivalent_to_best")


@dataclass
class Verdict:
    """The paired comparisons with the best child (`p_values` by run id; the best has none)."""

    fold_metric: str | None  # cv_<score>: the selection metric's per-fold scores
    alpha: float
    n_folds: int = 0
    p_values: dict[str, float] = field(default_factory=dict)  # one-sided, unadjusted
    adjusted: dict[str, float] = field(default_factory=dict)  # Holm over the comparisons
    unpaired: dict[str, str] = field(default_factory=dict)  # run id -> why it cannot be paired
    missing: str | None = None  # why nothing could be compared, if so
    # run id -> (mean, low, high) of its fold scores minus the best's: `interval_level`
    differences: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def interval_level(self, run_id: str) -> float:
        """The confidence of the run's difference interval: 1 - 2 alpha, widened as Holm widens
        its p-value (alpha x p / p_holm), so the interval clears zero exactly when
        p_value_holm < alpha, i.e. when it is not equivalent_to_best."""
        p, adjusted = self.p_values[run_id], self.adjusted[run_id]
        return 1 - 2 * (self.alpha * p / adjusted if adjusted > 0 else self.alpha)

    def equivalent(self, run_id: str) -> bool:
        """Not significantly worse than the best (Holm-adjusted p >= alpha)."""
        return self.adjusted.get(run_id, 0.0) >= self.alpha

    @property
    def n_equivalent(self) -> int:
        """How many configurations are not significantly worse than the best, the best included."""
        return 1 + sum(map(self.equivalent, self.adjusted))


def fold_metric(metric: str) -> str | None:
    """`cv_f1_mean` -> `cv_f1`, the metric that holds its per-fold scores; None for the others."""
    if metric.startswith("cv_") and metric.endswith("_mean"):
        return metric.removesuffix("_mean")
    return None


def split_record(run: Run) -> dict[str, str] | None:
    """The run's CV split (seed, folds, repeats, training-data fingerprint), None if unrecorded."""
    record = {k: run.data.params.get(k) for k in SPLIT_PARAMS}
    record[FINGERPRINT_TAG] = run.data.tags.get(FINGERPRINT_TAG)
    if any(v is None for v in record.values()):
        return None
    return {k: str(v) for k, v in record.items()}


def split_differences(
    reference: dict[str, str], other: Mapping[str, str | None], values: bool = True
) -> str:
    """How `other`'s CV split differs from `reference`'s: `cv.seed=9, the training data` (with
    `values=False`: `cv.seed, the training data`); empty when they are the same folds."""
    return ", ".join(
        "the training data" if k == FINGERPRINT_TAG else (f"{k}={other.get(k)}" if values else k)
        for k in reference
        if other.get(k) != reference[k]
    )


def fold_sizes(run: Run) -> tuple[int, int]:
    """The training and test rows of the run's first CV fold (0, 0 when unrecorded)."""
    n_train, n_test = (_int(run.data.tags.get(t)) for t in FOLD_SIZE_TAGS)
    return n_train, n_test


def p_value_better(
    reference: list[float], other: list[float], sizes: tuple[int, int], direction: str
) -> float:
    """One-sided p that `reference` scores better than `other` on the same folds, in the
    sweep's direction (the corrected resampled t-test)."""
    better, worse = (reference, other) if direction != "minimize" else (other, reference)
    return corrected_ttest(better, worse, *sizes)[1]


def difference_to_best(
    best: list[float], other: list[float], sizes: tuple[int, int], level: float
) -> tuple[float, float, float]:
    """(mean, low, high) of `other - best` over the folds, with its corrected interval at
    `level` (NaN ends when an alpha of 0.5 or more leaves no level to give it)."""
    if not 0 < level < 1:
        mean = sum(o - b for o, b in zip(other, best, strict=True)) / len(best)
        return mean, float("nan"), float("nan")
    return corrected_interval(other, best, *sizes, level)


def fold_scores(client: MlflowClient, run: Run, key: str) -> list[float] | None:
    """The run's `key` by step (0..n-1, as many as its folds x repeats), or None if incomplete:
    from the run's `cv_fold_scores` tag when it holds them all, else from the metric's
    history."""
    if key not in run.data.metrics:
        return None
    expected = _int(run.data.params.get("cv.folds")) * _int(run.data.params.get("cv.repeats"))
    if expected < 2:
        return None
    tagged = json.loads(run.data.tags.get(FOLD_SCORES_TAG) or "{}").get(key)
    if tagged is not None and len(tagged) == expected:
        return [float(v) for v in tagged]
    history = with_retries(partial(client.get_metric_history, run.info.run_id, key))
    by_step = {m.step: m.value for m in sorted(history, key=lambda m: m.timestamp)}
    if sorted(by_step) != list(range(expected)):
        return None
    return [float(by_step[step]) for step in range(expected)]


def unfinished_race(run: Run) -> str | None:
    """Why a raced child has fewer folds than its CV split: its race was interrupted (or its
    later round failed) before every round ran; None for any other run."""
    ran = run.data.metrics.get("race_folds")
    expected = _int(run.data.params.get("cv.folds")) * _int(run.data.params.get("cv.repeats"))
    if ran is None or ran >= expected:
        return None
    return f"its race stopped after {ran:.0f} of {expected} folds: sweep.resume runs the rest"


def compare_with_best(
    client: MlflowClient,
    runs: dict[str, Run],
    ranked: pd.DataFrame,
    metric: str,
    direction: str,
    alpha: float,
) -> Verdict:
    """The corrected resampled t-test of every ranked child's folds against the best's, one-sided
    in the sweep's direction, with Holm's correction over the comparisons."""
    key = fold_metric(metric)
    verdict = Verdict(key, alpha)
    if key is None:
        verdict.missing = f"{metric} is not cross-validated, so there are no folds to pair"
        return verdict
    if ranked.empty:
        verdict.missing = "no child was ranked"
        return verdict
    best = runs[ranked.iloc[0]["run_id"]]
    best_split, best_folds = split_record(best), fold_scores(client, best, key)
    sizes = fold_sizes(best)
    if best_split is None or best_folds is None or not all(sizes):
        verdict.missing = (
            f"the best child has no per-fold {key} scores with a record of its CV splits "
            f"(a sweep from an older version)"
        )
        if (why := unfinished_race(best)) is not None:
            verdict.missing = f"the best child has not run every fold: {why}"
        return verdict
    verdict.n_folds = len(best_folds)
    paired: dict[str, list[float]] = {}
    for run_id in ranked["run_id"].iloc[1:]:
        run = runs[run_id]
        split = split_record(run)
        folds = fold_scores(client, run, key) if split is not None else None
        if split is None or folds is None:
            why = unfinished_race(run) or "an older version"
            verdict.unpaired[run_id] = f"no per-fold {key} scores ({why})"
            continue
        differs = split_differences(best_split, split, values=False)
        if differs:  # said once for all the children that differ the same way
            verdict.unpaired[run_id] = f"scored on other CV folds (another {differs})"
            continue
        verdict.p_values[run_id] = p_value_better(best_folds, folds, sizes, direction)
        paired[run_id] = folds
    ids = list(verdict.p_values)
    verdict.adjusted = dict(zip(ids, holm([verdict.p_values[i] for i in ids]), strict=True))
    verdict.differences = {
        i: difference_to_best(best_folds, paired[i], sizes, verdict.interval_level(i)) for i in ids
    }
    return verdict


def verdict_columns(table: pd.DataFrame, verdict: Verdict) -> pd.DataFrame:
    """`table` with diff_vs_best, diff_ci_low, diff_ci_high, p_value_vs_best, p_value_holm and
    equivalent_to_best (blank where untested; the best itself: equivalent, no difference or
    p-value)."""
    table = table.copy()
    ids = table["run_id"] if len(table) else pd.Series(dtype=str)
    for i, column in enumerate(DIFF_COLUMNS):
        table[column] = ids.map({k: v[i] for k, v in verdict.differences.items()}).astype(float)
    table["p_value_vs_best"] = ids.map(verdict.p_values).astype(float)
    table["p_value_holm"] = ids.map(verdict.adjusted).astype(float)
    equivalent = pd.Series(pd.NA, index=table.index, dtype="boolean")
    tested = ids.isin(verdict.adjusted)
    equivalent[tested] = [verdict.equivalent(i) for i in ids[tested]]
    if verdict.missing is None and len(table) and pd.notna(table["rank"].iloc[0]):
        equivalent.iloc[0] = True
    table["equivalent_to_best"] = equivalent
    return table


def _int(value: str | None) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
