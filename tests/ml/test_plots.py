"""The child plots: rendered for every kind of data, and permutation importance computed right."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.inspection import permutation_importance

from src.ml import plots
from src.ml.data import load_dataset
from src.ml.evaluate import evaluate
from src.ml.pipeline import build_pipeline
from src.ml.plots import feature_importance, save_child_plots

from ..helpers import compose_cfg, data_overrides


def fitted(model: str, data: str, heart_csv):
    cfg = compose_cfg(f"model={model}", *data_overrides(data, heart_csv))
    dataset = load_dataset(cfg.data)
    pipeline = build_pipeline(cfg.model, dataset.X_train, dataset.categorical)
    return pipeline, dataset, evaluate(pipeline, dataset, folds=3, seed=0)


def test_permutation_shortcut_equals_permuting_through_the_pipeline(heart_csv, monkeypatch) -> None:
    monkeypatch.setattr(plots, "PERMUTATION_REPEATS", 6)  # scikit-learn's own is the slow side
    pipeline, data, _ = fitted("knn", "heart", heart_csv)
    assert data.X_test.isna().any().any() or data.X_train.isna().any().any()
    importance = feature_importance(pipeline, data)
    assert importance.kind.startswith("permutation importance") and "6 shuffles" in importance.kind
    assert importance.names == list(data.X_test.columns)
    direct = permutation_importance(
        pipeline, data.X_test, data.y_test, n_repeats=plots.PERMUTATION_REPEATS, random_state=0
    )
    np.testing.assert_allclose(importance.values, direct.importances_mean)
    np.testing.assert_allclose(importance.spread, direct.importances_std)


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
        mean, std = plots.permutation_importances(estimator, X, dataset.y_test)
        sklearns = permutation_importance(estimator, X, dataset.y_test, n_repeats=5, random_state=0)
        np.testing.assert_array_equal(mean, sklearns.importances_mean)
        np.testing.assert_allclose(std, sklearns.importances_std)
        assert np.any(mean != 0) and np.any(std != 0)


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


def test_child_plots_read_as_a_report_needs(heart_csv, tmp_path) -> None:
    """Heart, logistic regression: classes by name, signed coefficients (direction matters to
    a clinician), the run in every title, 150 dpi."""
    from PIL import Image

    pipeline, dataset, result = fitted("logistic_regression", "heart", heart_csv)
    child = plots.child_plots(pipeline, dataset, result, "logistic_regression (heart, run ab12)")
    assert child.class_names == ("no disease", "disease")
    confusion = plots.child_figure("confusion_matrix", child)
    ticks = [t.get_text() for t in confusion.axes[0].get_xticklabels()]
    assert ticks == ["no disease", "disease"]
    assert confusion.texts[0].get_text() == "logistic_regression (heart, run ab12)"
    roc = plots.child_figure("roc_curve", child)
    legend = [t.get_text() for t in roc.axes[0].get_legend().get_texts()]
    assert legend == [f"disease (AUC = {result.metrics['roc_auc']:.3f})"]
    importance = plots.child_figure("feature_importance", child)
    ax = importance.axes[0]
    assert "> 0 pushes towards disease" in ax.get_xlabel()
    names = [t.get_text() for t in ax.get_yticklabels()]  # one-hot columns named as codes mean
    assert "thal = 7 (reversible defect)" in names and "cp = 4 (asymptomatic)" in names
    assert not [n for n in names if "_" in n], names  # no raw thal_7.0
    assert child.importance.signed and (child.importance.values < 0).any()
    widths = [bar.get_width() for bar in ax.patches]
    assert min(widths) < 0 < max(widths)
    for fig in (confusion, roc, importance):
        plots.plt.close(fig)
    save_child_plots(pipeline, dataset, result, tmp_path, "title")
    with Image.open(tmp_path / "feature_importance.png") as image:
        assert image.info["dpi"][0] == pytest.approx(plots.DPI, abs=1) and plots.DPI >= 150


def test_permutation_importance_has_error_bars(heart_csv) -> None:
    pipeline, dataset, result = fitted("knn", "heart", heart_csv)
    child = plots.child_plots(pipeline, dataset, result)
    fig = plots.child_figure("feature_importance", child)
    ax = fig.axes[0]
    assert "± std over 30 shuffles" in ax.get_xlabel()
    assert any(type(c).__name__ == "ErrorbarContainer" for c in ax.containers)  # xerr drawn
    plots.plt.close(fig)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("thal_7.0", "thal = 7 (reversible defect)"),
        ("ca_0.0", "ca = 0 (0 vessels)"),
        ("cp_2", "cp = 2 (atypical angina)"),
        ("slope_9.0", "slope = 9"),  # a code the config does not name
        ("thalach", "thalach"),  # numeric: as it is
        ("restecg_nan", "restecg = nan"),
    ],
)
def test_one_hot_columns_are_named_by_the_data_config(name, expected) -> None:
    names = {"thal": {7: "reversible defect"}, "ca": {0: "0 vessels"}, "cp": {2: "atypical angina"}}
    categorical = ["cp", "restecg", "slope", "thal", "ca"]
    assert plots.feature_label(name, categorical, names) == expected
