"""Real sweeps: one parent run, a nested child per job, under any launcher (in this process on
the basic launcher, in subprocesses with joblib workers)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from ..helpers import BINARY_METRICS, METRICS, REPO, all_runs, sweep_runs

KNN_SWEEP = ["-m", "model=knn", "model.n_neighbors=3,5,7", "model.weights=uniform,distance"]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
PLOTS = {"plots/roc_curve.png", "plots/confusion_matrix.png", "plots/feature_importance.png"}


def assert_knn_sweep(tracking_uri: str, stdout: str) -> tuple:
    parent, children = sweep_runs(tracking_uri)
    assert parent.info.status == "FINISHED"
    assert len(children) == 6
    assert {c.info.status for c in children} == {"FINISHED"}
    assert {c.info.experiment_id for c in children} == {parent.info.experiment_id}
    combos = {
        (c.data.params["model.n_neighbors"], c.data.params["model.weights"]) for c in children
    }
    assert combos == {(k, w) for k in ("3", "5", "7") for w in ("uniform", "distance")}
    assert {c.data.params["model"] for c in children} == {"knn"}
    assert {c.data.params["data"] for c in children} == {"breast_cancer"}
    assert sorted(int(c.data.tags["job_number"]) for c in children) == list(range(6))
    assert len({c.data.tags["sweep_attempt"] for c in children}) == 1  # one attempt made them
    for child in children:
        missing = [m for m in METRICS + BINARY_METRICS if m not in child.data.metrics]
        assert not missing, f"{child.info.run_name} lacks {missing}"
        assert {"class_0_precision", "class_1_recall", "class_1_f1"} <= set(child.data.metrics)
        name = child.info.run_name
        assert re.fullmatch(r"knn n_neighbors=\d weights=(uniform|distance)", name), name
        assert (
            f"model.n_neighbors={child.data.params['model.n_neighbors']}"
            in (child.data.tags["hydra_overrides"])
        )
    client = MlflowClient(tracking_uri)
    for child in children:
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id, "plots")}
        assert artifacts == PLOTS
    child = children[0]
    configs = {a.path for a in client.list_artifacts(child.info.run_id, "config")}
    assert configs == {"config/config.yaml", "config/overrides.yaml"}
    local = Path(client.download_artifacts(child.info.run_id, "plots/roc_curve.png"))
    assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and local.stat().st_size > 5000
    progress = [line for line in stdout.splitlines() if re.match(r"\[\d+/6\] knn ", line)]
    assert len(progress) == 6, stdout
    assert all("cv_accuracy_mean=" in p and "elapsed" in p for p in progress)
    assert "left)" in progress[0] and "left" not in progress[-1]
    return parent, children


def test_knn_sweep_is_one_parent_with_six_children(run_train, tracking_uri, monkeypatch) -> None:
    result = run_train(*KNN_SWEEP, "sweep.heartbeat_s=0.5")
    assert result.returncode == 0, result.stderr
    parent, children = assert_knn_sweep(tracking_uri, result.stdout)
    for run in [parent, *children]:  # every run beats while its process lives
        assert run.data.tags["heartbeat_s"] == "0.5"
        assert int(run.data.tags["heartbeat"]) >= run.info.start_time // 1000 - 1
    # the parent lived through six jobs: its heartbeat went on after it was created
    assert int(parent.data.tags["heartbeat"]) >= parent.info.start_time // 1000 + 2
    assert parent.data.params["sweep.model.n_neighbors"] == "3,5,7"
    assert parent.data.metrics["n_children"] == 6 and parent.data.metrics["n_failed"] == 0
    # a short name the UI does not cut, the full description as the run's description
    assert parent.info.run_name == "knn #1"
    description = "sweep knn n_neighbors=3,5,7 weights=uniform,distance"
    assert parent.data.tags["mlflow.note.content"] == description
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    best = max(children, key=lambda c: c.data.metrics["cv_accuracy_mean"])
    model = mlflow.pyfunc.load_model(f"runs:/{best.info.run_id}/model")
    from sklearn.datasets import load_breast_cancer

    X = load_breast_cancer(as_frame=True).data.head(10)
    assert len(model.predict(X)) == 10


@pytest.mark.parametrize(
    "launcher",
    [
        "hydra_plugins.sweeps_joblib_launcher.joblib_launcher.SweepsJoblibLauncher",  # ours
        pytest.param(  # the stock one
            "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
            marks=pytest.mark.slow,
        ),
    ],
    ids=["ours", "stock"],
)
def test_joblib_workers_keep_children_under_the_parent(
    tracking_uri, tmp_path, launcher: str
) -> None:
    # run as `python -m src.train` runs it, noting at the very end (the first exit handler
    # registered runs last) the launching process's pid and whether it ever imported mlflow
    seen = tmp_path / "launching_process.txt"
    code = (
        "import atexit, os, runpy, sys\n"
        "seen = sys.argv.pop()\n"
        "note = lambda: open(seen, 'w').write(f'{os.getpid()} {\"mlflow\" in sys.modules}')\n"
        "atexit.register(note)\n"
        "runpy.run_module('src.train', run_name='__main__', alter_sys=True)\n"
    )
    overrides = [
        *KNN_SWEEP,
        *JOBLIB,
        f"hydra.launcher._target_={launcher}",
        # as the default sweep dir and experiment names go: resolved where Hydra resolves them
        f"hydra.sweep.dir={tmp_path}/sweeps/${{now:%H-%M-%S-%f}}",
        "mlflow.experiment_name=sweep-${now:%Y}",
    ]
    result = subprocess.run(
        [sys.executable, "-c", code, *overrides, seen],
        cwd=REPO,
        env=os.environ | {"MLFLOW_TRACKING_URI": tracking_uri},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    parent, children = assert_knn_sweep(tracking_uri, result.stdout)
    worker_pids = {c.data.tags["pid"] for c in children}
    assert parent.data.tags["pid"] not in worker_pids  # the jobs really ran in other processes
    assert parent.data.tags["launcher"] == launcher
    launching_pid, imported_mlflow = seen.read_text().split()
    assert parent.data.tags["pid"] == launching_pid
    assert parent.data.tags["process"].split(":")[1] == launching_pid
    # under every launcher, the parent is opened and summarised in the launching process
    assert imported_mlflow == "True"
    summary = [line for line in result.stdout.splitlines() if line.startswith("Sweep ")]
    assert summary[-1] == f"Sweep {parent.info.run_id} FINISHED: 6 finished, 0 failed of 6 children"
    assert "Best: knn n_neighbors=" in result.stdout
    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    assert parent.data.tags["sweep_dir"] == str(sweep_dir)
    assert (sweep_dir / "sweep_summary.md").is_file() and (sweep_dir / "0").is_dir()
    experiment = MlflowClient(tracking_uri).get_experiment(parent.info.experiment_id)
    assert re.fullmatch(r"sweep-\d{4}", experiment.name)


@pytest.mark.slow  # a run more; make test and CI run it
def test_single_run_failure_under_hydra_full_error_shows_the_traceback(run_train) -> None:
    """HYDRA_FULL_ERROR=1 gives the traceback, as Hydra users expect (without it, one line:
    the fault table's job_fails_single)."""
    bad = ("model=knn", "model.n_neighbors=500", "data=iris", "mlflow.log_model=false")
    full = run_train(*bad, env={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode == 1 and "Traceback (most recent call last)" in full.stderr
    assert "is FAILED; its traceback is the artifact error/traceback.txt" in full.stderr


def test_single_run_is_a_top_level_run(run_train, tracking_uri) -> None:
    result = run_train("model=random_forest", "data=iris")
    assert result.returncode == 0, result.stderr
    (run,) = all_runs(tracking_uri)
    # it says what it did and where to look
    lines = result.stdout.splitlines()
    assert f"Run {run.info.run_name!r} ({run.info.run_id}) FINISHED in experiment " in lines[0]
    cv = run.data.metrics["cv_accuracy_mean"], run.data.metrics["cv_accuracy_std"]
    assert f"  cv_accuracy_mean = {cv[0]:.4f} ± {cv[1]:.4f}" in lines
    assert f"test_accuracy={run.data.metrics['test_accuracy']:.4f}" in result.stdout
    link = f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert f"  MLflow UI: {link}  (make ui serves it)" in lines
    assert f"  Artifacts: {run.info.artifact_uri.removeprefix('file://')}" in lines
    assert run.info.status == "FINISHED"
    assert "mlflow.parentRunId" not in run.data.tags
    assert run.data.params["model.n_estimators"] == "100"
    # the store the run went to (MLFLOW_TRACKING_URI), not the config's default
    assert run.data.params["mlflow.tracking_uri"] == tracking_uri
    assert run.data.params["model.max_depth"] == "10"
    assert "class_2_f1" in run.data.metrics and "tp" not in run.data.metrics  # multiclass
    experiment = MlflowClient(tracking_uri).get_experiment(run.info.experiment_id)
    assert experiment.name == "iris-classification"
    assert experiment.artifact_location.startswith(Path(tracking_uri[10:]).parent.as_uri())
