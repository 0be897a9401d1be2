"""python -m src.doctor: its checks, --fix of stale runs, and nothing created before the first
sweep."""

from __future__ import annotations

import socket

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from .helpers import (
    in_process,
)


def test_doctor_fix_ends_stale_runs_and_leaves_no_probe_run(tracking_uri, tmp_path) -> None:
    client = MlflowClient(tracking_uri)
    artifacts = tmp_path / "artifacts"
    experiment_id = client.create_experiment("heart-classification", artifacts.as_uri())
    gone = f"{socket.gethostname()}:{2**22 + 1}:1"  # above Linux's pid_max: never alive
    stale = client.create_run(experiment_id, run_name="crashed", tags={"process": gone})
    first = in_process(tracking_uri, "src.doctor", "data=heart")
    assert first.returncode == 1 and "STALE: its process is gone" in first.stdout
    fixed = in_process(tracking_uri, "src.doctor", "--fix", "data=heart")
    assert fixed.returncode == 0, fixed.stdout
    assert "ended FAILED (--fix)" in fixed.stdout and "%|" not in fixed.stderr  # no progress bar
    assert "runs and artifacts: writable" in fixed.stdout and "probe run removed" in fixed.stdout
    assert client.get_run(stale.info.run_id).info.status == "FAILED"
    runs = client.search_runs([experiment_id], run_view_type=ViewType.ALL)
    assert [r.info.run_name for r in runs] == ["crashed"]  # no probe, not even in the trash
    assert {p.name for p in artifacts.glob("*")} <= {stale.info.run_id}  # nor its folder


def test_doctor_creates_no_experiment_and_no_store(tmp_path, tracking_uri) -> None:
    new = f"sqlite:///{tmp_path}/new/mlflow.db"
    before = in_process(new, "src.doctor", "data=heart")
    assert before.returncode == 0, before.stdout
    assert "not created yet (the first sweep will)" in before.stdout
    assert not (tmp_path / "new").exists()
    result = in_process(tracking_uri, "src.doctor", "data=heart")
    assert result.returncode == 0, result.stdout
    assert "experiment 'heart-classification': not created yet" in result.stdout
    assert f"artifact folder writable ({tmp_path}/artifacts/heart-classification)" in result.stdout
    client = MlflowClient(tracking_uri)
    assert [e.name for e in client.search_experiments(view_type=ViewType.ALL)] == ["Default"]
    assert client.search_runs(["0"], run_view_type=ViewType.ALL) == []
