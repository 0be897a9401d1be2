"""Passwords in URIs stay out of every file Hydra and the sweep write (multirun.yaml, every
job's .hydra/, a cluster launcher's pickles, the store), wherever the URI is given (typed, a
conf file, the environment), while the stores they open still work."""

from __future__ import annotations

import pickle
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from src.sweep.credentials import CredentialsError, keep_credentials_out
from src.tracking.store import RunTarget

from ..helpers import (
    HEART_CSV,
    REPO,
    cli,
    compose_cfg,
    mlflow_process,
    running_postgres,
    train_in_process,
)

SECRET = "S3CRETPW"
LEAN = ["data=heart", f"data.path={HEART_CSV}", "mlflow.log_model=false", "mlflow.log_plots=false"]


def leaks(folder: Path) -> list[Path]:
    """The files under `folder` holding SECRET, read as bytes (pickles and databases too), but
    the user's own conf folder that holds it."""
    found = [p for p in folder.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    return [p for p in found if not p.is_relative_to(folder / "conf")]


def conf_with_password(tmp_path: Path, uri: str) -> list[str]:
    """A conf folder of the user's with `mlflow=secret`: the project's sqlite settings with a
    tracking URI holding a password; the overrides that select it."""
    folder = tmp_path / "conf" / "mlflow"
    folder.mkdir(parents=True)
    text = (REPO / "conf" / "mlflow" / "sqlite.yaml").read_text()
    lines = [
        f"tracking_uri: {uri}" if line.startswith("tracking_uri:") else line
        for line in text.splitlines()
    ]
    assert f"tracking_uri: {uri}" in lines
    (folder / "secret.yaml").write_text("\n".join(lines) + "\n")
    return [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "mlflow=secret"]


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no_cache"])
def test_password_in_a_conf_file_reaches_no_job_file(
    cache: bool, tracking_uri: str, tmp_path: Path
) -> None:
    """A tracking URI with a password written in a conf file (MLFLOW_TRACKING_URI, set here,
    wins over it): no job's .hydra/ file, no output, no run holds it, with or without the
    composition cache (Hydra's own composition)."""
    uri = f"postgresql+psycopg2://u:{SECRET}@db.invalid/mlflow"
    args = ["-m", "model=knn", "model.n_neighbors=3,5", *LEAN, *conf_with_password(tmp_path, uri)]
    args += [f"hydra.sweep.dir={tmp_path}/sweep", f"sweep.compose_cache={str(cache).lower()}"]
    result = train_in_process(tracking_uri, *args)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert SECRET not in output
    assert not leaks(tmp_path)  # the sweep folder, the store and its artifacts
    job = (tmp_path / "sweep" / "0" / ".hydra" / "config.yaml").read_text()
    assert "u:***@db.invalid" in job


@pytest.mark.parametrize(
    "override",
    [
        "+data.url_note=https://u:{secret}@host.invalid/x.csv",
        "+hydra.job.env_set.TOKEN=https://u:{secret}@host.invalid/",
    ],
    ids=["data", "hydra"],
)
def test_a_password_elsewhere_is_refused_in_one_line(override: str, tracking_uri: str) -> None:
    """A URI with a password in any other value would be saved by Hydra as it is: refused,
    naming the key, before any run, without the password."""
    result = train_in_process(tracking_uri, "-m", *LEAN, override.format(secret=SECRET))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    key = override.lstrip("+").partition("=")[0]
    assert f"Sweep not started: {key}=" in output, output
    assert "holds a password" in output and "${oc.env:VARIABLE}" in output
    assert SECRET not in output
    assert "Traceback" not in output


def test_the_check_names_the_key_and_hides_the_value() -> None:
    """keep_credentials_out on a composed config: the refusal names the key, not the secret."""
    cfg = compose_cfg(f"+model.endpoint=http://{SECRET}@example.invalid/")
    with pytest.raises(CredentialsError) as refused:
        keep_credentials_out(cfg)
    assert "model.endpoint='http://***@example.invalid/'" in str(refused.value)
    assert SECRET not in str(refused.value)


def test_a_pickled_target_leaves_the_password_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a launcher pickles of the sweep's target (to a worker, a job folder) holds no
    password; loaded where MLFLOW_TRACKING_URI holds the URI, it is the real one again."""
    uri = f"http://u:{SECRET}@127.0.0.1:5000"
    data = pickle.dumps(RunTarget(uri, "1", "parent"))
    assert SECRET.encode() not in data
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert pickle.loads(data).tracking_uri == uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://other:5000")
    assert pickle.loads(data).tracking_uri == "http://u:***@127.0.0.1:5000"


@pytest.mark.slow
def test_postgresql_store_and_optuna_storage_with_passwords(tmp_path: Path) -> None:
    """A real PostgreSQL (on loopback; it trusts the loopback, so any password opens it) as the
    MLflow store and the Optuna storage, both typed with a password, as a user's process: the
    search runs its trials into both, and the password is in no output and no file
    (Hydra's override lists, every job's .hydra/, the runs in the database)."""
    with running_postgres() as mlflow_db:
        store = mlflow_db.replace("postgres@", f"postgres:{SECRET}@")
        storage = store.removesuffix("/mlflow") + "/optuna"
        args = ["sweeps=knn_optuna", *LEAN, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2"]
        args += [f"mlflow.tracking_uri={store}", f"hydra.sweeper.storage={storage}"]
        args += ["hydra.sweeper.study_name=secret", f"hydra.sweep.dir={tmp_path}/sweep"]
        result = cli("", "src.train", *args, env={"MLFLOW_TRACKING_URI": ""})
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert SECRET not in output
        assert not leaks(tmp_path)
        saved = (tmp_path / "sweep" / "0" / ".hydra" / "hydra.yaml").read_text()
        assert "hydra.sweeper.storage=postgresql+psycopg2://postgres:***@" in saved
        study = optuna.load_study(study_name="secret", storage=storage)
        assert len(study.trials) == 2
        runs = MlflowClient(store).search_runs(
            [MlflowClient(store).get_experiment_by_name("heart-classification").experiment_id]
        )
        assert len(runs) == 3  # the parent and two children
        for run in runs:
            assert SECRET not in repr(run.data)


@pytest.mark.slow
def test_submitit_jobs_get_the_password_from_the_environment(tmp_path: Path) -> None:
    """A tracking server's URI with a password, written in a conf file, on the submitit
    launcher: its jobs (separate processes, sent as pickles in the job folder) reach the
    server, and the password is in no file: the pickles, the job configs, the job logs."""
    server = ["server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db"]
    server += ["--serve-artifacts", "--artifacts-destination", (tmp_path / "served").as_uri()]
    with mlflow_process(server, tmp_path / "server.log") as url:
        uri = url.replace("http://", f"http://u:{SECRET}@")
        args = ["-m", "model=knn", "model.n_neighbors=3,5", *LEAN]
        args += conf_with_password(tmp_path, uri)
        args += ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]
        args += [f"hydra.sweep.dir={tmp_path}/sweep"]
        result = cli("", "src.train", *args, env={"MLFLOW_TRACKING_URI": ""})
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        runs = MlflowClient(url).search_runs(
            [MlflowClient(url).get_experiment_by_name("heart-classification").experiment_id]
        )
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3, output
    assert SECRET not in output
    assert list((tmp_path / "sweep" / ".submitit").rglob("*.pkl"))
    assert not leaks(tmp_path)
