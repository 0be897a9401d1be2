"""The paired fold-score test against scikit-learn's "Statistical comparison of models using grid
search" example (plot_grid_search_stats), and its edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t
from sklearn.datasets import make_moons
from sklearn.model_selection import GridSearchCV, RepeatedStratifiedKFold
from sklearn.svm import SVC

from src.ml.stats import corrected_ttest, holm

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
