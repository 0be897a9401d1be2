"""The paired fold-score test against scikit-learn's "Statistical comparison of models using grid
search" example (plot_grid_search_stats), the moderated variances against R's limma, and their
edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t
from sklearn.datasets import make_moons
from sklearn.model_selection import GridSearchCV, RepeatedStratifiedKFold
from sklearn.svm import SVC

from src.ml.stats import (
    corrected_ttest,
    holm,
    moderated_ttests,
    squeeze_variances,
    variance_prior,
)

pytestmark = pytest.mark.xdist_group("compare")  # its module fixtures, set up once


@pytest.fixture(scope="module")
def example() -> dict:
    """The example's data, models and 10 x 10 folds, computed as the example does."""
    X, y = make_moons(noise=0.352, random_state=1, n_samples=100)
    param_grid = [
        {"kernel": ["linear"]},
        {"kernel": ["poly"], "degree": [2, 3]},
        {"kernel": ["rbf"]},
    ]
    cv = RepeatedStratifiedKFold(n_splits=10, n_repeats=10, random_state=0)
    search = GridSearchCV(SVC(random_state=0), param_grid, scoring="roc_auc", cv=cv)
    search.fit(X, y)
    results = pd.DataFrame(search.cv_results_).sort_values("rank_test_score")
    scores = results.filter(regex=r"split\d*_test_score").to_numpy()
    train, test = next(iter(cv.split(X, y)))
    return {"scores": scores, "n_train": len(train), "n_test": len(test)}


def example_ttest(differences, df, n_train, n_test):
    """The example's own `compute_corrected_ttest` (right-tailed on |t|)."""
    kr = len(differences)
    corrected_var = np.var(differences, ddof=1) * (1 / kr + n_test / n_train)
    t_stat = np.mean(differences) / np.sqrt(corrected_var)
    return t_stat, t.sf(np.abs(t_stat), df)


def test_the_examples_best_against_the_second_gives_its_published_numbers(example) -> None:
    best, second = example["scores"][0], example["scores"][1]
    t_stat, p_value = corrected_ttest(best, second, example["n_train"], example["n_test"])
    # printed by the example: "Corrected t-value: 0.750", "Corrected p-value: 0.227"
    assert (round(t_stat, 3), round(p_value, 3)) == (0.750, 0.227)


def test_every_pair_of_the_example_matches_its_formula(example) -> None:
    scores, n_train, n_test = example["scores"], example["n_train"], example["n_test"]
    for i in range(len(scores)):
        for j in range(i + 1, len(scores)):
            ours = corrected_ttest(scores[i], scores[j], n_train, n_test)
            theirs = example_ttest(scores[i] - scores[j], len(scores[i]) - 1, n_train, n_test)
            assert ours == pytest.approx(theirs, rel=1e-12)  # the better model is listed first


def test_identical_scores_are_not_different_and_a_far_worse_child_is() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.8, 0.9, 25)
    assert corrected_ttest(scores, scores, 80, 20) == (0.0, 1.0)
    worse = scores - 0.2 + rng.normal(0, 0.01, 25)
    t_stat, p_value = corrected_ttest(scores, worse, 80, 20)
    assert t_stat > 10 and p_value < 1e-9
    assert corrected_ttest(scores, scores - 0.05, 80, 20) == (np.inf, 0.0)  # better every fold
    # one-sided: the "better" one scoring lower is no evidence
    assert corrected_ttest(worse, scores, 80, 20)[1] > 0.999


def test_holm_adjusts_in_the_order_given() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_unpaired_folds_are_refused() -> None:
    with pytest.raises(ValueError, match="equally long"):
        corrected_ttest([0.9, 0.8, 0.7], [0.9, 0.8], 80, 20)


def test_squeezed_variances_are_limmas() -> None:
    """R's limma 3.x: `squeezeVar(c(0.5, 1.3, 7.8), df=3)` gives df.prior 2.830777, var.prior
    1.676927 and var.post 1.071385 1.482994 4.827317 (the figures inmoose's port of limma
    checks itself against, tests/limma/test_squeezeVar.py)."""
    prior, prior_df = variance_prior([0.5, 1.3, 7.8], 3)
    assert prior_df == pytest.approx(2.830777, abs=1e-6)
    assert prior == pytest.approx(1.676927, abs=1e-6)
    posterior = squeeze_variances([0.5, 1.3, 7.8], 3, prior, prior_df)
    assert posterior == pytest.approx([1.071385, 1.482994, 4.827317], abs=1e-6)
    # variances no more spread than sampling spreads them: limma's pooled variance, infinite df
    prior, prior_df = variance_prior([1.0, 1.1, 0.9], 3)
    assert prior_df == np.inf and prior == pytest.approx(1.0)
    assert squeeze_variances([1.0, 1.1, 0.9], 3, prior, prior_df) == pytest.approx([1.0] * 3)
    # on fewer degrees of freedom: the same prior variance, weighed less
    posterior = squeeze_variances([0.5, 1.3, 7.8], 3, 1.676927, 1.0)
    assert posterior == pytest.approx([(1.676927 + 3 * v) / 4 for v in (0.5, 1.3, 7.8)], abs=1e-6)


def test_moderated_tests_borrow_the_others_variance() -> None:
    rng = np.random.default_rng(5)
    reference = rng.uniform(0.75, 0.85, 5)
    others = [reference - gap + rng.normal(0, 0.02, 5) for gap in (0.01, 0.03, 0.05, 0.07)]
    n_train, n_test = 193, 49
    # two comparisons: nothing to moderate with, the plain test
    plain = [corrected_ttest(reference, o, n_train, n_test)[1] for o in others]
    assert moderated_ttests(reference, others[:2], n_train, n_test) == pytest.approx(plain[:2])
    # four: each variance squeezed (limma's), on 4 + the prior's degrees of freedom (at most
    # one comparison's 4), scipy's t
    d = reference[None, :] - np.array(others)
    variances = d.var(axis=1, ddof=1)
    prior, fitted_df = variance_prior(variances, 4)
    prior_df = min(fitted_df, 4)
    posterior = squeeze_variances(variances, 4, prior, prior_df)
    t_stat = d.mean(axis=1) / np.sqrt(posterior * (1 / 5 + n_test / n_train))
    expected = t.sf(t_stat, 4 + prior_df)
    assert moderated_ttests(reference, others, n_train, n_test) == pytest.approx(expected, rel=1e-9)
    # a configuration the same on every fold as the reference does not set the prior (t = 0)
    got = moderated_ttests(reference, [reference, *others], n_train, n_test)
    assert got[0] == 0.5 and got[1:] == pytest.approx(expected, rel=1e-9)
    # a constant gap is no longer p = 0 once the others' spread is known to it
    gap = moderated_ttests(reference, [reference - 0.02, *others], n_train, n_test)[0]
    assert 0 < gap < 0.5  # the plain test says 0: its folds alone show no spread
