"""A job that fails, a sweep whose jobs all fail, max_failures, a summary that fails, odd values:
every failure is recorded and said, nothing is left RUNNING."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, _validate_param_name

from src.analysis.ranking import load_summary, nan_note
from src.tracking.child_run import flatten_config

from ..helpers import (
    DATASETS,
    HEART_CSV,
    MODELS,
    SWEEP_FILES,
    all_runs,
    compose_cfg,
    data_overrides,
    run,
    sweep_runs,
)


@pytest.mark.slow  # a sweep more; make test and CI run it
def test_max_failures_zero_stops_at_the_first_failure(tracking_uri, tmp_path) -> None:
    result = run(
        tracking_uri,
        tmp_path,
        "-m",
        "model=knn",
        "model.n_neighbors=3,500,5,7",
        "data=iris",
        "sweep.max_failures=0",
        "mlflow.log_model=false",
    )
    assert result.returncode == 1
    assert (
        "1 of 2 jobs failed; 2 of 4 jobs have no run (sweep.max_failures stopped the sweep)"
        in result.stderr
    )
    parent, children = sweep_runs(tracking_uri)
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED"]  # 5 and 7 never ran
    assert (
        parent.info.status == "FAILED" and "sweep.max_failures=0" in parent.data.tags["end_reason"]
    )
    failed = next(c for c in children if c.info.status == "FAILED")
    assert failed.data.tags["error_type"] == "ValueError"
    assert "n_neighbors = 500" in failed.data.tags["error_message"]
    client = MlflowClient(tracking_uri)
    assert [a.path for a in client.list_artifacts(failed.info.run_id, "error")] == [
        "error/traceback.txt"
    ]
    traceback = Path(
        client.download_artifacts(failed.info.run_id, "error/traceback.txt")
    ).read_text()
    assert "Traceback" in traceback and "ValueError" in traceback


def test_parent_fails_when_every_job_failed(tracking_uri, tmp_path) -> None:
    result = run(
        tracking_uri,
        tmp_path,
        "-m",
        "model=knn",
        "model.n_neighbors=500,600",
        "data=iris",
        "mlflow.log_model=false",
    )
    assert result.returncode == 1 and "2 of 2 jobs failed" in result.stderr
    parent, children = sweep_runs(tracking_uri)
    assert parent.info.status == "FAILED" and parent.data.metrics["n_failed"] == 2
    assert {c.info.status for c in children} == {"FAILED"}


@pytest.mark.parametrize(
    "launcher",
    [  # both with the slow tests (make test and CI run them)
        pytest.param([], marks=pytest.mark.slow),
        pytest.param(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], marks=pytest.mark.slow),
    ],
    ids=["basic", "joblib"],
)
def test_a_failed_summary_fails_the_parent_and_says_why(tracking_uri, tmp_path, launcher) -> None:
    blocked = tmp_path / "sweep" / "sweep_summary.md"
    blocked.mkdir(parents=True)  # a directory where the summary writes its file
    result = run(
        tracking_uri,
        tmp_path,
        "-m",
        "model=knn",
        "model.n_neighbors=3,5",
        "data=iris",
        "mlflow.log_plots=false",
        "mlflow.log_model=false",
        *launcher,
        sweep_dir=tmp_path / "sweep",
    )
    assert result.returncode != 0
    assert "Summarising sweep" in result.stderr and "IsADirectoryError" in result.stderr
    parent, children = sweep_runs(tracking_uri)
    assert parent.info.status == "FAILED" and parent.data.tags["error_type"] == "IsADirectoryError"
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]  # nothing lost
    client = MlflowClient(tracking_uri)
    traceback = Path(client.download_artifacts(parent.info.run_id, "error/traceback.txt"))
    assert "write_summary_files" in traceback.read_text()  # where it failed, even in a worker


def test_non_finite_metric_is_recorded_but_never_best(tracking_uri) -> None:
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("nan")
    parent = client.create_run(
        experiment_id, run_name="sweep", tags={"sweep": "true", "sweep_metric": "roc_auc"}
    )
    now = int(time.time() * 1000)
    for name, auc in (("degenerate", float("nan")), ("good", 0.9), ("ok", 0.8)):
        child = client.create_run(
            experiment_id, run_name=name, tags={"mlflow.parentRunId": parent.info.run_id}
        )
        client.log_batch(
            child.info.run_id,
            metrics=[Metric("roc_auc", auc, now, 0)],
            params=[Param("model.k", name)],
        )
        client.set_terminated(child.info.run_id, "FINISHED")
    summary = load_summary(client, client.get_run(parent.info.run_id))
    assert summary.best["run_name"] == "good"
    nan_row = summary.table[summary.table["run_name"] == "degenerate"].iloc[0]
    assert pd.isna(nan_row["rank"]) and pd.isna(nan_row["roc_auc"])  # recorded, not ranked
    assert "degenerate" in nan_note(summary) and "never chosen as best" in nan_note(summary)


@pytest.mark.slow  # a sweep more; make test and CI run it
def test_long_param_value_is_kept_in_full(tracking_uri, tmp_path) -> None:
    notes = "x" * (MAX_PARAM_VAL_LENGTH + 500)
    result = run(tracking_uri, tmp_path, "model=knn", f"+notes={notes}", "mlflow.log_model=false")
    assert result.returncode == 0, result.stderr
    (child,) = all_runs(tracking_uri)
    assert child.data.params["notes"] == notes[:MAX_PARAM_VAL_LENGTH]
    assert child.data.tags["param_truncated.notes"] == "true"
    full = Path(
        MlflowClient(tracking_uri).download_artifacts(child.info.run_id, "params/notes.txt")
    )
    assert full.read_text() == notes


@pytest.mark.parametrize(
    "extra",
    [[f"model={m}", *data_overrides(d, HEART_CSV)] for m in MODELS for d in DATASETS]
    + [[f"sweeps={name}"] for name in SWEEP_FILES],
)
def test_every_shipped_config_has_valid_mlflow_keys(extra) -> None:
    cfg = compose_cfg(*extra)
    for key, value in flatten_config(cfg).items():
        _validate_param_name(key)
        assert len(value) <= MAX_PARAM_VAL_LENGTH, key
