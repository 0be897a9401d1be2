"""The two fronts: the Pareto front on means, and the configurations not shown dominated, checked
against a written-out corrected t-test (scipy's t distribution) and Holm, and their error under
the null measured by simulation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from src.analysis.pareto import (
    Fronts,
    Objective,
    front_columns,
    fronts_note,
    mean_front,
    shown_dominating,
)

SIZES = (200, 50)  # training and test rows of a fold


def corrected_p(better: list[float], other: list[float], n_train: int, n_test: int) -> float:
    """Nadeau & Bengio's corrected resampled t-test, one-sided, written out."""
    d = [b - o for b, o in zip(better, other, strict=True)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1) * (1 / n + n_test / n_train)
    if var == 0:
        return 1.0 if mean <= 0 else 0.0
    return float(student_t.sf(mean / math.sqrt(var), n - 1))


def holm_written_out(p: list[float]) -> list[float]:
    """Holm (1979): the i-th smallest times (m - i), made monotone, capped at 1."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


def reference(objectives, ids, alpha, sizes=SIZES) -> dict[str, list[str]]:
    """Who shows whom dominated, by the definition, with the written-out test and Holm."""
    result = {}
    for b in ids:
        labels, p = [], []
        for a in ids:
            if a == b:
                continue
            for o in objectives:
                fa, fb = o.folds[a], o.folds[b]
                if o.direction == "minimize":
                    fa, fb = [-x for x in fa], [-x for x in fb]
                labels += [(a, "better"), (a, "worse")]
                p += [corrected_p(fa, fb, *sizes), corrected_p(fb, fa, *sizes)]
        significant = {lab for lab, q in zip(labels, holm_written_out(p), strict=True) if q < alpha}
        result[b] = [
            a
            for a in ids
            if a != b and (a, "better") in significant and (a, "worse") not in significant
        ]
    return result


def objectives_of(accuracy: dict, seconds: dict) -> list[Objective]:
    mean = {k: float(np.mean(v)) for k, v in accuracy.items()}
    secs = {k: float(np.mean(v)) for k, v in seconds.items()}
    return [
        Objective("cv_accuracy_mean", "maximize", mean, {k: list(v) for k, v in accuracy.items()}),
        Objective("cv_fit_time_mean", "minimize", secs, {k: list(v) for k, v in seconds.items()}),
    ]


def test_a_mean_edge_within_the_noise_is_shown_dominated() -> None:
    # slow: the best mean accuracy by a hair that the folds do not bear out, 5x the fit time;
    # fast: as accurate within the noise, far faster; tiny: fastest, consistently less accurate
    accuracy = {
        "slow": [0.86, 0.82, 0.88, 0.83, 0.86],
        "fast": [0.84, 0.85, 0.85, 0.84, 0.85],
        "tiny": [0.70, 0.71, 0.69, 0.70, 0.72],
    }
    seconds = {
        "slow": [1.00, 1.02, 0.98, 1.01, 0.99],
        "fast": [0.20, 0.21, 0.19, 0.20, 0.22],
        "tiny": [0.10, 0.11, 0.10, 0.09, 0.10],
    }
    objectives = objectives_of(accuracy, seconds)
    ids = list(accuracy)
    groups = dict.fromkeys(ids, "same folds")
    shown = shown_dominating(objectives, ids, groups, dict.fromkeys(ids, SIZES), 0.05)
    assert shown == reference(objectives, ids, 0.05)
    assert shown == {"slow": ["fast"], "fast": [], "tiny": []}
    values = {i: [objectives[0].means[i], objectives[1].means[i]] for i in ids}
    assert mean_front(values, [True, False]) == ["slow", "fast", "tiny"]
    # on other folds nothing can be paired: nothing is shown dominated
    apart = {"slow": "a", "fast": "b", "tiny": "c"}
    assert shown_dominating(objectives, ids, apart, dict.fromkeys(ids, SIZES), 0.05) == {
        i: [] for i in ids
    }


@pytest.mark.parametrize("seed", range(6))
def test_shown_dominated_equals_the_written_out_definition(seed) -> None:
    rng = np.random.default_rng(seed)
    ids = [f"c{i}" for i in range(5)]
    level = rng.uniform(0.7, 0.9, len(ids))
    cost = rng.uniform(0.1, 1.0, len(ids))
    accuracy = {i: level[k] + rng.normal(0, 0.02, 10) for k, i in enumerate(ids)}
    seconds = {i: cost[k] + rng.normal(0, 0.02, 10) for k, i in enumerate(ids)}
    objectives = objectives_of(accuracy, seconds)
    groups = dict.fromkeys(ids, 0)
    shown = shown_dominating(objectives, ids, groups, dict.fromkeys(ids, SIZES), 0.05)
    assert shown == reference(objectives, ids, 0.05)


def test_an_exact_objective_compares_values_and_an_untested_one_nothing() -> None:
    ids = ["a", "b"]
    same = {"a": [0.8, 0.81, 0.79, 0.8, 0.8], "b": [0.8, 0.79, 0.81, 0.8, 0.8]}
    accuracy = Objective("cv_accuracy_mean", "maximize", {"a": 0.8, "b": 0.8}, same)
    size = Objective("model_bytes", "minimize", {"a": 1000.0, "b": 5000.0})
    latency = Objective("predict_ms_per_row", "minimize", {"a": 9.0, "b": 0.1})
    sizes = dict.fromkeys(ids, SIZES)
    shown = shown_dominating([accuracy, size, latency], ids, dict.fromkeys(ids, 0), sizes, 0.05)
    assert shown == {"a": [], "b": ["a"]}  # smaller, as accurate; the latency is not tested
    assert [o.kind for o in (accuracy, size, latency)] == ["folds", "exact", "untested"]


def test_the_error_under_the_null_is_at_most_alpha() -> None:
    """Configurations that differ in nothing: how often is one shown dominated? Holm over its
    comparisons bounds it by alpha; measured on normal fold scores with an uncorrected variance
    (n_test/n_train ~ 0: the plain paired t-test, exact for independent folds)."""
    rng = np.random.default_rng(0)
    ids = [f"c{i}" for i in range(4)]
    sizes = dict.fromkeys(ids, (10**9, 1))
    shown_any, trials = 0, 300
    for _ in range(trials):
        accuracy = {i: rng.normal(0.8, 0.02, 10) for i in ids}
        seconds = {i: rng.normal(0.5, 0.05, 10) for i in ids}
        shown = shown_dominating(
            objectives_of(accuracy, seconds), ids, dict.fromkeys(ids, 0), sizes, 0.05
        )
        shown_any += sum(bool(v) for v in shown.values())
    rate = shown_any / (trials * len(ids))
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / (trials * len(ids)))


def test_front_columns_and_the_note_say_why_the_fronts_differ() -> None:
    table = pd.DataFrame(
        {
            "run_id": ["s", "f", "t", "x"],
            "run_name": ["slow", "fast", "tiny", "failed"],
        }
    )
    objectives = [
        Objective("cv_accuracy_mean", "maximize", {}),
        Objective("cv_fit_time_mean", "minimize", {}),
    ]
    fronts = Fronts(
        objectives,
        0.05,
        on_means=["s", "f", "t"],
        not_shown=["f", "t"],
        dominated_by={"s": ["f"], "f": [], "t": []},
        mean_dominated_by={"s": [], "f": [], "t": []},
    )
    out = front_columns(table, fronts)
    assert out["pareto_front"].tolist() == [True, True, True, pd.NA]
    assert out["not_shown_dominated"].tolist() == [False, True, True, pd.NA]
    assert out["dominated_by"].tolist() == ["fast", "", "", ""]
    note = fronts_note(fronts, dict(zip(table["run_id"], table["run_name"], strict=True)))
    assert "3 of 3 feasible configurations are on the Pareto front" in note
    assert "2 are not shown dominated" in note
    assert "slow is on the front of the means, but fast is significantly better" in note


def test_the_note_tells_the_first_few_differences_and_counts_the_rest() -> None:
    ids = [f"c{i}" for i in range(8)]
    objectives = [
        Objective("cv_accuracy_mean", "maximize", {}),
        Objective("model_bytes", "minimize", {}),
    ]
    fronts = Fronts(
        objectives,
        0.05,
        on_means=ids,
        not_shown=["c0"],
        dominated_by={i: ([] if i == "c0" else ["c0"]) for i in ids},
        mean_dominated_by={i: [] for i in ids},
    )
    note = fronts_note(fronts, {i: i for i in ids})
    assert note.count("is on the front of the means, but c0 is significantly better") == 5
    assert "(7 are on the front of the means only, 0 not shown dominated only" in note
