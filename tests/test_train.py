"""Every model x data option composes and trains; what a single run records in MLflow."""

from __future__ import annotations

import math
import os
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from src.ml.evaluate import FOLD_METRICS, PER_CLASS_METRIC, class_key
from src.ml.evaluate import METRICS as SELECTABLE
from src.sweep.job import train

from .helpers import (
    BINARY_METRICS,
    DATASETS,
    METRICS,
    MODELS,
    all_runs,
    compose_cfg,
    data_overrides,
)


def model_data_pairs() -> list:
    """Every model on every dataset; by default each model on heart (binary, one-hot columns)
    and wine (three classes), and each other dataset once; the rest with the slow tests."""
    default = {(m, d) for m in MODELS for d in ("heart", "wine")}
    default |= {(m, d) for m, d in zip(MODELS, ["breast_cancer", "iris", "csv"], strict=False)}
    return [
        pytest.param(m, d, id=f"{m}-{d}", marks=[] if (m, d) in default else [pytest.mark.slow])
        for m in MODELS
        for d in DATASETS
    ]


@pytest.mark.parametrize(("model", "data"), model_data_pairs())
def test_every_model_and_dataset_trains(model, data, heart_csv, tracking_uri) -> None:
    cfg = compose_cfg(
        f"model={model}",
        *data_overrides(data, heart_csv),
        f"mlflow.tracking_uri={tracking_uri}",
        "mlflow.log_model=false",
    )
    value = train(cfg)
    assert 0.0 <= value <= 1.0
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FINISHED"
    assert "mlflow.parentRunId" not in run.data.tags  # a single run is top-level
    metrics = run.data.metrics
    assert metrics["cv_accuracy_mean"] == pytest.approx(value)
    missing = [m for m in METRICS if m not in metrics]
    assert not missing
    n_classes = {"iris": 3, "wine": 3, "csv": 5}.get(data, 2)  # csv keeps num 0-4
    per_class = [k for k in metrics if k.startswith("class_") and k.endswith("_f1")]
    assert len(per_class) == n_classes
    # sweep.metric accepts exactly what a child records (src/settings.py checks against these)
    single = {k for k in metrics if not PER_CLASS_METRIC.fullmatch(k)} - set(FOLD_METRICS)
    assert single <= set(SELECTABLE) and set(FOLD_METRICS) <= set(metrics)
    if n_classes == 2:
        assert all(b in metrics for b in BINARY_METRICS)
        counts = sum(metrics[b] for b in BINARY_METRICS)
        assert counts == pytest.approx(
            metrics["tp"] + metrics["fp"] + metrics["tn"] + metrics["fn"]
        )
    assert not math.isnan(metrics["roc_auc"]) and metrics["roc_auc"] > 0.5
    assert run.data.params["model._target_"] == str(cfg.model._target_)
    expected_experiment = f"{cfg.data.name}-classification"
    experiment = MlflowClient(tracking_uri).get_experiment(run.info.experiment_id)
    assert experiment.name == expected_experiment


@pytest.mark.parametrize("model", MODELS)
def test_logged_model_loads_and_predicts(model, heart_csv, tracking_uri, monkeypatch) -> None:
    cfg = compose_cfg(
        f"model={model}",
        *data_overrides("heart", heart_csv),
        f"mlflow.tracking_uri={tracking_uri}",
        "mlflow.log_plots=false",
    )
    before = os.environ.get("MLFLOW_TRACKING_URI")
    train(cfg)
    assert os.environ.get("MLFLOW_TRACKING_URI") == before  # logging the model left it alone
    (run,) = all_runs(tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    loaded = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    from src.ml.data import load_dataset

    data = load_dataset(cfg.data)
    predictions = loaded.predict(data.X_test)  # includes rows with missing values
    assert len(predictions) == len(data.X_test)
    accuracy = float((predictions == data.y_test.to_numpy()).mean())
    assert accuracy == pytest.approx(run.data.metrics["test_accuracy"])
    files = set(
        Path(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/model")).iterdir()
    )
    names = {f.name for f in files}
    assert {"MLmodel", "conda.yaml", "requirements.txt", "input_example.json"} <= names
    assert loaded.metadata.signature is not None
    logged = MlflowClient(tracking_uri).search_logged_models([run.info.experiment_id])
    assert [m.source_run_id for m in logged] == [run.info.run_id]  # not in the default experiment
    # the model carries the run's params and metrics, as MLflow links them
    assert logged[0].params == run.data.params
    assert {m.key: m.value for m in logged[0].metrics} == run.data.metrics
    assert {m.run_id for m in logged[0].metrics} == {run.info.run_id}
    requirements = (Path(next(iter(files)).parent) / "requirements.txt").read_text()
    assert "scikit-learn==" in requirements and "mlflow==" in requirements


def test_a_model_logged_to_serve_probabilities(heart_csv, tracking_uri, monkeypatch) -> None:
    """mlflow.pyfunc_predict_fn=predict_proba: the pyfunc (what `mlflow models serve` runs)
    answers each class's probability instead of the class."""
    cfg = compose_cfg(
        "model=logistic_regression",
        *data_overrides("heart", heart_csv),
        f"mlflow.tracking_uri={tracking_uri}",
        "mlflow.log_plots=false",
        "mlflow.pyfunc_predict_fn=predict_proba",
    )
    train(cfg)
    (run,) = all_runs(tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    uri = f"runs:/{run.info.run_id}/model"
    from src.ml.data import load_dataset

    X = load_dataset(cfg.data).X_test
    served = np.asarray(mlflow.pyfunc.load_model(uri).predict(X))
    assert served.shape == (len(X), 2)
    np.testing.assert_allclose(served, mlflow.sklearn.load_model(uri).predict_proba(X))


def test_string_labels_are_metric_keys() -> None:
    assert class_key("no disease") == "no disease"
    assert class_key("a+b") == "a_b"


def test_bad_model_param_fails_before_any_run(tracking_uri) -> None:
    cfg = compose_cfg("model=knn", "model.n_neighbors=abc", f"mlflow.tracking_uri={tracking_uri}")
    with pytest.raises(ValueError, match="model.n_neighbors='abc'"):
        train(cfg)
    assert all_runs(tracking_uri) == []


def test_bad_nested_param_is_named_with_its_full_key(tracking_uri) -> None:
    cfg = compose_cfg("model=svm", "model.estimator.C=-1", f"mlflow.tracking_uri={tracking_uri}")
    with pytest.raises(ValueError, match=r"model.estimator.C=-1 is invalid"):
        train(cfg)
    assert all_runs(tracking_uri) == []


def test_every_fold_score_is_logged_by_step_and_repeats_repeat_the_folds(
    heart_csv, tracking_uri
) -> None:
    cfg = compose_cfg(
        "model=knn",
        *data_overrides("heart", heart_csv),
        f"mlflow.tracking_uri={tracking_uri}",
        "mlflow.log_model=false",
        "mlflow.log_plots=false",
        "cv.folds=3",
        "cv.repeats=2",
    )
    train(cfg)
    (run,) = all_runs(tracking_uri)
    client = MlflowClient(tracking_uri)
    for key in FOLD_METRICS:
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == list(range(6))
        values = [m.value for m in history]
        assert run.data.metrics[f"{key}_mean"] == pytest.approx(sum(values) / 6)
        assert all(0.0 <= v <= 1.0 for v in values) and len(set(values)) > 1
    assert run.data.params["cv.repeats"] == "2" and run.data.params["cv.folds"] == "3"
