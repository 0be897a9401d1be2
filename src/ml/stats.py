"""Paired comparison of CV fold scores: the corrected resampled t-test (alone, or one reference
against several with their fold variances moderated), its confidence interval of the mean
difference, and Holm's correction."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import optimize, special
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
    fold_variance = float(differences.var(ddof=1))
    return _corrected_t(float(differences.mean()), fold_variance, n, n - 1, n_test / n_train)


def _corrected_t(
    mean: float, fold_variance: float, n: int, df: float, ratio: float
) -> tuple[float, float]:
    """(t, one-sided p) of a mean fold difference whose folds vary by `fold_variance` (on `df`
    degrees of freedom), the variance inflated by 1/n + n_test/n_train (`ratio`)."""
    variance = fold_variance * (1 / n + ratio)
    if variance == 0:
        if mean == 0:
            return 0.0, 1.0
        return math.copysign(math.inf, mean), 0.0 if mean > 0 else 1.0
    t_stat = mean / math.sqrt(variance)
    return t_stat, float(student_t.sf(t_stat, df))


def variance_prior(variances: Sequence[float], df: float) -> tuple[float, float]:
    """The scaled inverse chi-square prior of sample variances on `df` degrees of freedom each,
    fitted by the moments of their logs (Smyth 2004, as limma's `fitFDist`): (its variance, its
    degrees of freedom: infinite when the variances spread no more than sampling alone spreads
    them)."""
    given = np.asarray(variances, dtype=float)
    middle = float(np.median(given))
    x = np.maximum(given, 1e-5 * (middle if middle > 0 else 1.0))  # limma: zeros offset away
    e = np.log(x) - special.digamma(df / 2) + math.log(df / 2)
    spread = float(e.var(ddof=1)) - float(special.polygamma(1, df / 2))
    if spread <= 0:
        return float(x.mean()), math.inf  # limma since 2017: the pooled variance
    prior_df = 2 * _trigamma_inverse(spread)
    prior = math.exp(float(e.mean()) + special.digamma(prior_df / 2) - math.log(prior_df / 2))
    return prior, prior_df


def squeeze_variances(
    variances: npt.ArrayLike, df: float, prior: float, prior_df: float
) -> np.ndarray:
    """Empirical Bayes posterior variances (as limma's `squeezeVar`): each sample variance on
    `df` degrees of freedom shrunk toward the prior's variance, weighed by the prior's degrees
    of freedom (infinite: the prior's variance itself)."""
    given = np.asarray(variances, dtype=float)
    if math.isinf(prior_df):
        return np.full(len(given), prior)
    return (prior_df * prior + df * given) / (prior_df + df)


def _trigamma_inverse(value: float) -> float:
    """The y > 0 with trigamma(y) = value (trigamma falls from infinity to 0 on y > 0)."""
    low, high = 1e-8, 1 / value + 1.0
    while special.polygamma(1, high) > value:
        high *= 2
    return float(optimize.brentq(lambda y: special.polygamma(1, y) - value, low, high))


def moderated_ttests(
    reference: npt.ArrayLike, others: npt.ArrayLike, n_train: int, n_test: int
) -> list[float]:
    """One-sided p that `reference` scores higher than each of `others` on the same folds: the
    corrected resampled t-test with each comparison's fold variance moderated by the others'
    (`squeeze_variances`, the prior fitted to the comparisons whose differences vary at all:
    a constant difference, often identical configurations, says nothing of the others' spread,
    and limma's offset of a zero variance would swamp the moments of the logs). Every
    comparison shares the reference's folds, so together they know that part of the spread no
    better than one of them does: the prior counts for at most one comparison's degrees of
    freedom (a round's are at most doubled). Fewer than 3 comparisons that vary: the plain
    test."""
    differences = np.asarray(reference, dtype=float)[None, :] - np.asarray(others, dtype=float)
    n = differences.shape[1]
    variances, df = differences.var(axis=1, ddof=1), n - 1
    extra, varies = 0.0, variances > 0
    if varies.sum() >= 3:
        prior, prior_df = variance_prior(variances[varies], df)
        extra = min(prior_df, df)
        variances = squeeze_variances(variances, df, prior, extra)
    means = differences.mean(axis=1)
    ratio = n_test / n_train
    return [
        _corrected_t(float(d), float(v), n, df + extra, ratio)[1]
        for d, v in zip(means, variances, strict=True)
    ]


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
