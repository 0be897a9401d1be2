"""Paired comparison of CV fold scores: the corrected resampled t-test, its confidence interval
of the mean difference, and Holm's correction."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import t as student_t


def corrected_ttest(
    better: Sequence[float], other: Sequence[float], n_train: int, n_test: int
) -> tuple[float, float]:
    """(t, one-sided p) that `better` scores higher than `other` on the same folds.

    Nadeau & Bengio (2003): the variance of the fold differences is inflated by
    (1/n + n_test/n_train) because the folds' training sets overlap; n - 1 degrees of freedom.
    Identical scores on every fold give t = 0, p = 1; a constant positive difference p = 0.
    """
    if len(better) != len(other) or len(better) < 2:
        raise ValueError(
            f"need two equally long fold score lists of 2+ folds, got {len(better)} and "
            f"{len(other)}"
        )
    differences = np.asarray(better, dtype=float) - np.asarray(other, dtype=float)
    n = len(differences)
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"n_train and n_test must be > 0, got {n_train} and {n_test}")
    mean = float(differences.mean())
    variance = float(differences.var(ddof=1)) * (1 / n + n_test / n_train)
    if variance == 0:
        if mean == 0:
            return 0.0, 1.0
        return math.copysign(math.inf, mean), 0.0 if mean > 0 else 1.0
    t_stat = mean / math.sqrt(variance)
    return t_stat, float(student_t.sf(t_stat, n - 1))


def corrected_interval(
    other: Sequence[float], reference: Sequence[float], n_train: int, n_test: int, level: float
) -> tuple[float, float, float]:
    """(mean, low, high): the mean fold difference `other - reference` and its two-sided
    `level` confidence interval, from the same corrected variance and t with n - 1 degrees of
    freedom as `corrected_ttest` (identical differences on every fold: a zero-width interval)."""
    if len(other) != len(reference) or len(other) < 2:
        raise ValueError(
            f"need two equally long fold score lists of 2+ folds, got {len(other)} and "
            f"{len(reference)}"
        )
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"n_train and n_test must be > 0, got {n_train} and {n_test}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    differences = np.asarray(other, dtype=float) - np.asarray(reference, dtype=float)
    n = len(differences)
    mean = float(differences.mean())
    variance = float(differences.var(ddof=1)) * (1 / n + n_test / n_train)
    if variance == 0:
        return mean, mean, mean
    half = float(student_t.ppf((1 + level) / 2, n - 1)) * math.sqrt(variance)
    return mean, mean - half, mean + half


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()
