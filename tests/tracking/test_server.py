"""Team setup: sweeps against a real `mlflow server` (PostgreSQL or sqlite backend, served
artifacts) with 4 joblib workers; on PostgreSQL, the UI, the registry, the doctor and an Optuna
study too."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from src.tracking.ui_view import VIEW_TAG_PREFIX

from ..helpers import browse, cli, in_process, mlflow_process, running_postgres

pytestmark = pytest.mark.slow  # run by `make test` / CI via `pytest -m slow`

SWEEP = [
    "-m",
    "model=knn",
    "model.n_neighbors=3,5,7,9",
    "data=wine",
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=4",
]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A real PostgreSQL server on a loopback port, in a temporary data directory."""
    with running_postgres() as uri:
        yield uri


@contextmanager
def running_server(backend: str, tmp: Path, workers: int) -> Iterator[str]:
    """`mlflow server` on loopback against `backend` with `workers` server processes, serving
    artifacts itself; yields its URL."""
    args = [
        "server",
        "--backend-store-uri",
        backend,
        "--serve-artifacts",
        "--artifacts-destination",
        (tmp / "served-artifacts").as_uri(),
        "--workers",
        str(workers),
    ]
    with mlflow_process(args, tmp / f"server{time.time_ns()}.log") as url:
        yield url


def check_sweep_through_server(url: str, tmp: Path, everything: bool) -> None:
    """A sweep on 4 workers through the server: one parent, its children, their artifacts
    served; with `everything`, also its view in a browser, the best model loaded through the
    server and registered (the same calls whatever the server's backend)."""
    lean = [] if everything else ["mlflow.log_model=false"]
    result = cli(url, "src.train", *SWEEP, *lean, f"hydra.sweep.dir={tmp}/sweep")
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("wine-classification")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # served by the server
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4 == len(runs) - 1
    assert {c.info.status for c in children} == {"FINISHED"} and parent.info.status == "FINISHED"
    assert len({c.data.tags["pid"] for c in children} - {parent.data.tags["pid"]}) >= 2  # workers
    assert {c.data.tags["host"] for c in children} == {os.uname().nodename}
    assert parent.data.metrics["n_children"] == 4 and "best_run_id" in parent.data.tags
    plots = {a.path for a in client.list_artifacts(children[0].info.run_id, "plots")}
    assert "plots/roc_curve.png" in plots
    assert "summary/sweep_summary.md" in {
        a.path for a in client.list_artifacts(parent.info.run_id, "summary")
    }
    # the sweep's own view in the UI, linked on the server itself
    key = parent.info.run_id
    link = f"{url}/#/experiments/{experiment.experiment_id}/runs?viewStateShareKey={key}"
    assert f"MLflow UI: {link}&compareRunsMode=CHART" in result.stdout
    assert f"{VIEW_TAG_PREFIX}{key}" in client.get_experiment(experiment.experiment_id).tags

    if not everything:
        return

    def visit(page) -> None:
        page.goto(f"{link}&compareRunsMode=CHART")
        page.get_by_text("You're viewing a shared view").first.wait_for(timeout=90_000)
        page.get_by_text("4 matching runs").first.wait_for(timeout=60_000)  # its children

    assert browse(url, visit) == []
    os.environ["MLFLOW_TRACKING_URI"] = url
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{parent.data.tags['best_run_id']}/model")
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
    from sklearn.datasets import load_wine

    assert len(model.predict(load_wine(as_frame=True).data.head(7))) == 7
    registered = in_process(url, "src.register", "data=wine")  # python -m: test_registry
    assert registered.returncode == 0, registered.stderr
    assert str(client.get_model_version_by_alias("wine-classifier", "champion").version) == "1"


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_sweep_through_a_tracking_server(backend, request, tmp_path) -> None:
    """A team's server on PostgreSQL (everything: the sweep, the UI, the model, the registry,
    the doctor, an Optuna study) or on sqlite (the sweep's 4 workers writing through it)."""
    store = (
        request.getfixturevalue("postgres")
        if backend == "postgresql"
        else f"sqlite:///{tmp_path}/server.db"
    )
    # sqlite: two server processes writing one file, as a small team's server would; one is
    # enough for PostgreSQL, which takes the concurrent writes itself
    workers = 1 if backend == "postgresql" else 2
    with running_server(store, tmp_path, workers) as url:
        # what goes through the server's API whatever its backend is checked once, on PostgreSQL
        check_sweep_through_server(url, tmp_path, everything=backend == "postgresql")
        if backend == "postgresql":  # and the team's study in the same PostgreSQL server
            check_doctor(url)
            check_optuna_study(url, store.replace("/mlflow", "/optuna"), tmp_path)


def check_optuna_study(url: str, storage: str, tmp: Path) -> None:
    """An Optuna search through the server on 2 workers, its study in PostgreSQL: every trial
    names its child, every child its trial."""
    search = [
        "-m",
        "sweeps=knn_optuna",
        "data=wine",
        "hydra.sweeper.n_trials=4",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=team",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "mlflow.log_model=false",
        f"hydra.sweep.dir={tmp}/optuna",
    ]
    result = cli(url, "src.train", *search)
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="team", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    client = MlflowClient(url)
    for trial in study.trials:
        child = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert child.data.tags["optuna.trial_number"] == str(trial.number)
        assert child.data.tags["optuna.storage"] == storage  # no password in this URL to hide
    parent = client.get_run(child.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["search_best_run_id"] == study.best_trial.user_attrs["mlflow_run_id"]


def check_doctor(url: str) -> None:
    """`src.doctor` twice through the server: every check passes; it cannot purge its probe
    run there, so it says so, and the second check reuses the first one's."""
    for _ in range(2):
        result = in_process(url, "src.doctor", "data=wine")
        assert result.returncode == 0, result.stdout
        assert "runs and artifacts: writable" in result.stdout
        assert "probe run kept in the trash (`mlflow gc --run-ids" in result.stdout
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("wine-classification")
    deleted = client.search_runs([experiment.experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_name for r in deleted] == ["doctor probe"]
