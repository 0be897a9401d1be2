"""The child plots: rendered for every kind of data, and permutation importance computed right."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.inspection import permutation_importance

from src import plots
from src.data import load_dataset
from src.evaluate import evaluate
from src.pipeline import build_pipeline
from src.plots import feature_importance, save_child_plots

from .test_train import compose_cfg, data_overrides


def fitted(model: str, data: str, heart_csv):
    cfg = compose_cfg(f"model={model}", *data_overrides(data, heart_csv))
    dataset = load_dataset(cfg.data)
    pipeline = build_pipeline(cfg.model, dataset.X_train)
    return pipeline, dataset, evaluate(pipeline, dataset, folds=3, seed=0)


def test_permutation_shortcut_equals_permuting_through_the_pipeline(heart_csv) -> None:
    pipeline, data, _ = fitted("knn", "heart", heart_csv)
    assert data.X_test.isna().any().any() or data.X_train.isna().any().any()
    names, values, kind = feature_importance(pipeline, data)
    assert kind == "permutation importance" and names == list(data.X_test.columns)
    direct = permutation_importance(pipeline, data.X_test, data.y_test, n_repeats=5, random_state=0)
    np.testing.assert_allclose(values, direct.importances_mean)


@pytest.mark.parametrize(
    ("model", "data", "rows_per_call"),
    [("knn", "heart", 100_000), ("knn", "heart", 150), ("svm", "iris", 1), ("knn", "wine", 40)],
)
def test_stacked_permutation_importance_equals_sklearns(
    model, data, rows_per_call, heart_csv, monkeypatch
) -> None:
    """Same shuffles, same numbers, whether all permuted copies go in one predict call or in
    chunks (raw DataFrame through the pipeline, and a transformed array through the model)."""
    pipeline, dataset, _ = fitted(model, data, heart_csv)
    monkeypatch.setattr(plots, "PERMUTED_ROWS_PER_CALL", rows_per_call)
    X_array = pipeline[:-1].transform(dataset.X_test)
    for estimator, X in ((pipeline, dataset.X_test), (pipeline[-1], X_array)):
        ours = plots.permutation_importance_mean(estimator, X, dataset.y_test)
        sklearns = permutation_importance(estimator, X, dataset.y_test, n_repeats=5, random_state=0)
        np.testing.assert_array_equal(ours, sklearns.importances_mean)
        assert np.any(ours != 0)


@pytest.mark.parametrize(
    ("model", "data"),
    [
        ("knn", "heart"),
        ("random_forest", "iris"),
        ("logistic_regression", "wine"),
        ("svm", "breast_cancer"),
    ],
)
def test_child_plots_are_written(model, data, heart_csv, tmp_path) -> None:
    pipeline, dataset, result = fitted(model, data, heart_csv)
    save_child_plots(pipeline, dataset, result, tmp_path)
    for name in ("roc_curve", "confusion_matrix", "feature_importance"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
