"""Many writers on one store: two sweeps creating one new store, four workers through a locked
database, an unreachable server."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from ..helpers import (
    HEART_CSV,
    LEAN,
    run,
    start,
    sweep_runs,
    wait_for,
)


@pytest.mark.slow  # two sweeps at once on 2 cores; make test and CI run it
def test_two_sweeps_creating_one_new_store_at_once_both_work(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path}/new/mlflow.db"  # neither the folder nor the database exists
    sweep = ["-m", "model=knn", "model.n_neighbors=3,5", "data=heart", f"data.path={HEART_CSV}",
             *LEAN]  # fmt: skip
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    started = [start(uri, tmp_path / name, *sweep) for name in ("a", "b")]
    for process, out in started:
        assert process.wait(timeout=300) == 0, out.read_text()[-3000:]
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "heart-classification"]
    runs = client.search_runs([experiment.experiment_id])
    assert sum(r.data.tags.get("sweep") == "true" for r in runs) == 2 and len(runs) == 6


@pytest.mark.slow
def test_jobs_on_four_workers_all_finish_through_a_locked_database(tracking_uri, tmp_path) -> None:
    db = tracking_uri.removeprefix("sqlite:///")
    process, out = start(
        tracking_uri,
        tmp_path,
        "-m",
        "model=knn",
        "model.n_neighbors=range(1,17)",  # 4 at once, then 4 blocked by the lock, then more
        "data=iris",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        "mlflow.log_model=false",
        "mlflow.log_plots=false",
    )
    wait_for(out, "[3/16]", process)
    held = threading.Event()

    def hold_write_lock() -> None:  # another process-like writer holding the lock for 8 s
        connection = sqlite3.connect(db, timeout=30, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        held.set()
        time.sleep(8)
        connection.execute("COMMIT")
        connection.close()

    locker = threading.Thread(target=hold_write_lock)
    locker.start()
    assert held.wait(30)
    locker.join()
    process.wait(timeout=300)
    assert process.returncode == 0, out.read_text()[-3000:]
    parent, children = sweep_runs(tracking_uri)
    assert len(children) == 16 and {c.info.status for c in children} == {"FINISHED"}
    assert sorted(int(c.data.params["model.n_neighbors"]) for c in children) == list(range(1, 17))
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_children"] == 16


@pytest.mark.parametrize(
    "launcher",
    [
        [],
        pytest.param(  # with the slow tests (make test and CI run them)
            ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], marks=pytest.mark.slow
        ),
    ],
    ids=["basic", "joblib"],
)
def test_unreachable_tracking_server_fails_fast_naming_it(tmp_path, launcher) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    uri = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    result = run(uri, tmp_path, "-m", "model=knn", "model.n_neighbors=3,5", *launcher)
    assert time.monotonic() - started < 60
    assert result.returncode != 0 and uri in result.stderr
    assert "Sweep not started" in result.stderr and "Traceback" not in result.stderr
    assert "[1/" not in result.stdout  # no job was launched


def test_unreachable_database_server_fails_fast_naming_it_without_its_password(tmp_path) -> None:
    # MLflow's own client retried for two minutes, then printed three lines of SQLAlchemy
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    uri = f"postgresql://user:s3cret@127.0.0.1:{port}/mlflow"
    started = time.monotonic()
    result = run(uri, tmp_path, "-m", "model=knn", "model.n_neighbors=3,5")
    assert time.monotonic() - started < 60
    assert result.returncode != 0 and "s3cret" not in result.stdout + result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "Sweep not started" in line]
    assert f"127.0.0.1:{port}/mlflow is unreachable" in line, result.stderr[-2000:]
    assert "[1/" not in result.stdout  # no job was launched
