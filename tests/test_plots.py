"""The child plots: rendered for every kind of data, and permutation importance computed right."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from sklearn.inspection import permutation_importance

from src import plots
from src.data import load_dataset
from src.evaluate import evaluate
from src.pipeline import build_pipeline
from src.plots import feature_importance, save_child_plots

from .conftest import REPO
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


def test_renderer_process_writes_the_same_pngs_and_survives_its_death(heart_csv, tmp_path) -> None:
    pipeline, dataset, result = fitted("knn", "heart", heart_csv)
    plots.save_child_plots(pipeline, dataset, result, tmp_path / "here")
    plots.start_renderer()
    try:
        pending = plots.start_child_plots(pipeline, dataset, result, tmp_path / "renderer")
        assert pending.future is not None  # rendered in the other process
        pending.wait()
        renderer_pid = plots._renderer.submit(os.getpid).result()
        assert renderer_pid != os.getpid()
        os.kill(renderer_pid, signal.SIGKILL)
        pending = plots.start_child_plots(pipeline, dataset, result, tmp_path / "after")
        pending.wait()  # the dead renderer's child is rendered here instead
        assert plots._renderer is None
    finally:
        plots.stop_renderer()
    for name in ("roc_curve", "confusion_matrix", "feature_importance"):
        here = (tmp_path / "here" / f"{name}.png").read_bytes()
        assert (tmp_path / "renderer" / f"{name}.png").read_bytes() == here
        assert (tmp_path / "after" / f"{name}.png").read_bytes() == here


@pytest.mark.parametrize(
    ("overrides", "n_jobs", "expected"),
    [
        ([], 144, True),
        ([], None, True),  # a sweeper that decides later (Optuna)
        ([], 4, False),  # too few jobs to repay the process's start
        (["mlflow.plot_process=true"], 4, "forced"),
        (["mlflow.log_plots=false"], 144, False),
        (["mlflow.plot_process=false"], 144, False),
        (["hydra/launcher=joblib"], 144, False),  # jobs run in worker processes
        (["hydra/launcher=joblib", "mlflow.plot_process=true"], 144, False),
    ],
)
def test_plot_process_only_when_jobs_run_here_and_a_core_is_free(overrides, n_jobs, expected):
    from hydra import compose, initialize_config_dir

    from src.sweep import uses_plot_process

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        bad = compose(
            "config", overrides=["mlflow.plot_process=sometimes"], return_hydra_config=True
        )
    cores = (os.cpu_count() or 1) >= 2
    assert uses_plot_process(cfg, n_jobs) is (expected == "forced" or (expected and cores))
    with pytest.raises(ValueError, match="mlflow.plot_process='sometimes'"):
        uses_plot_process(bad, 144)
