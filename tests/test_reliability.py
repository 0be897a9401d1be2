"""Failures, interrupts, crashes, resume, concurrency, odd input: nothing lost or left RUNNING."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric, Param, ViewType
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH, _validate_param_name

from src.analysis.ranking import load_summary, nan_note
from src.sweep.parent import command_tag
from src.sweep.recovery import resume_parent
from src.tracking import interrupts
from src.tracking.child_run import flatten_config, job_run
from src.tracking.store import COMMAND_TAG, NoSweepError, RunTarget

from .conftest import (
    HEART_CSV,
    REPO,
    all_runs,
    cli,
    in_process,
    sweep_runs,
    train,
    train_in_process,
)
from .test_sweeps import SWEEP_FILES
from .test_train import DATASETS, MODELS, compose_cfg, data_overrides

SLOW_SWEEP = [
    "-m",
    "model=random_forest",
    "model.n_estimators=150,151,152,153,154,155,156,157",
    "data=heart",
    f"data.path={HEART_CSV}",
    "mlflow.log_model=false",
]
# the first four: one finished, one killed while it runs, two that the resumed sweep runs
KILLED_SWEEP = [*SLOW_SWEEP[:2], "model.n_estimators=150,151,152,153", *SLOW_SWEEP[3:]]


LEAN = ["mlflow.log_model=false", "mlflow.log_plots=false"]


def start(
    uri: str, tmp: Path, *args: str, new_session: bool = False
) -> tuple[subprocess.Popen, Path]:
    """Start `python -m src.train args` in the background; its output goes to a file."""
    out = tmp / f"out{time.time_ns()}.log"
    env = os.environ | {"MLFLOW_TRACKING_URI": uri}
    with out.open("w") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "src.train", *args, f"hydra.sweep.dir={tmp}/sweep"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
            preexec_fn=_default_sigint,
        )
    return process, out


def _default_sigint() -> None:
    # a shell's background job (`cmd &`) starts with SIGINT ignored, and so would the sweep:
    # these tests interrupt it as a terminal's Ctrl-C does, whatever started pytest
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(out: Path, text: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in out.read_text():
        assert process.poll() is None, f"ended before {text!r}:\n{out.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} in {timeout}s:\n{out.read_text()}"
        time.sleep(0.2)


def run(
    uri: str, tmp: Path, *args: str, sweep_dir: Path | None = None
) -> subprocess.CompletedProcess:
    """`train` into `sweep_dir` (default: a new one under `tmp`)."""
    return train(uri, *args, f"hydra.sweep.dir={sweep_dir or tmp / f's{time.time_ns()}'}")


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
    ("launcher", "sig", "group"),
    [
        ([], signal.SIGINT, False),
        # the others run with the slow tests (make test and CI run them)
        pytest.param([], signal.SIGTERM, False, marks=pytest.mark.slow),
        pytest.param(
            ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
            signal.SIGTERM,
            False,
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
            signal.SIGINT,
            True,  # Ctrl-C: the whole process group
            marks=pytest.mark.slow,
        ),
    ],
    ids=["basic-SIGINT", "basic-SIGTERM", "joblib-SIGTERM", "joblib-Ctrl-C"],
)
def test_interrupt_leaves_nothing_running(tracking_uri, tmp_path, launcher, sig, group) -> None:
    process, out = start(tracking_uri, tmp_path, *SLOW_SWEEP, *launcher, new_session=group)
    wait_for(out, "[2/8]", process)
    if group:
        os.killpg(process.pid, sig)
    else:
        process.send_signal(sig)
    process.wait(timeout=120)
    output = out.read_text()  # one line says so, and the exit code is the signal's, as a shell's
    assert process.returncode == 128 + sig and f"Interrupted ({sig.name})" in output, output
    if not launcher:  # no worker to print its own interrupt: no traceback at all
        assert "Traceback" not in output, output
    runs = all_runs(tracking_uri)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    parent, children = sweep_runs(tracking_uri)
    assert parent.info.status == "KILLED"
    statuses = [c.info.status for c in children]
    assert statuses.count("FINISHED") >= 2
    assert set(statuses) <= {"FINISHED", "KILLED"}
    assert len(children) < 8  # pending jobs never started
    table = pd.read_csv(tmp_path / "sweep" / "sweep_summary.csv")  # the summary of what finished
    assert len(table) == len(children)
    assert parent.data.metrics["n_finished"] == statuses.count("FINISHED")


@pytest.mark.parametrize(
    "launcher",
    [  # both with the slow tests: two sweeps each (make test and CI run them)
        pytest.param([], marks=pytest.mark.slow),
        pytest.param(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], marks=pytest.mark.slow),
    ],
    ids=["basic", "joblib"],
)
def test_resume_reruns_only_what_did_not_finish(tracking_uri, tmp_path, launcher) -> None:
    sweep = [
        "-m",
        "model=knn",
        "model.n_neighbors=3,5,7,9,11,13",
        "data=heart",
        f"data.path={HEART_CSV}",
        *LEAN,
        *launcher,
    ]
    process, out = start(tracking_uri, tmp_path, *sweep)
    wait_for(out, "[2/6]", process)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    parent, before = sweep_runs(tracking_uri)
    finished_before = {c.info.run_id for c in before if c.info.status == "FINISHED"}
    assert 2 <= len(finished_before) < 6
    result = run(tracking_uri, tmp_path, *sweep, "sweep.resume=latest")
    assert result.returncode == 0, result.stderr
    assert f"Resuming sweep {parent.info.run_id}: {len(finished_before)} finished" in result.stdout
    assert result.stdout.count("SKIPPED (finished in an earlier attempt)") == len(finished_before)
    resumed, children = sweep_runs(tracking_uri)  # still exactly one parent
    assert resumed.info.run_id == parent.info.run_id and resumed.info.status == "FINISHED"
    assert sorted(c.data.params["model.n_neighbors"] for c in children) == sorted(
        ["3", "5", "7", "9", "11", "13"]
    )
    assert {c.info.status for c in children} == {"FINISHED"}
    assert finished_before <= {c.info.run_id for c in children}  # kept, not rerun
    assert resumed.data.metrics["n_children"] == 6


@pytest.mark.slow
def test_resume_latest_joins_only_a_sweep_of_the_same_command(tracking_uri, tmp_path) -> None:
    common = ["-m", "model=knn", "data=heart", f"data.path={HEART_CSV}", *LEAN]
    first = run(tracking_uri, tmp_path, *common, "model.n_neighbors=5,500")
    assert first.returncode == 1  # n_neighbors=500 fails
    parent, children = sweep_runs(tracking_uri)
    other = run(tracking_uri, tmp_path, *common, "model.n_neighbors=3,5", "sweep.resume=latest")
    assert other.returncode == 1
    assert "no sweep of experiment" in other.stderr
    assert "model.n_neighbors: 5,500 there, 3,5 here" in other.stderr
    by_id = run(
        tracking_uri, tmp_path, *common, "model.n_neighbors=3,5", "mlflow.log_plots=true",
        f"sweep.resume={parent.info.run_id}",
    )  # fmt: skip
    assert by_id.returncode == 1
    assert "ran another command: model.n_neighbors: 5,500 there, 3,5 here; only here: " \
        "mlflow.log_plots=true" in by_id.stderr  # fmt: skip
    after, still = sweep_runs(tracking_uri)  # untouched: nothing deleted, nothing added
    assert after.info.run_id == parent.info.run_id
    assert {c.info.run_id for c in still} == {c.info.run_id for c in children}


@pytest.mark.slow
def test_resume_into_the_same_sweep_dir_counts_only_this_attempt(tracking_uri, tmp_path) -> None:
    sweep = ["-m", "model=knn", "model.n_neighbors=3,500,5,7", "data=heart",
             f"data.path={HEART_CSV}", *LEAN, f"hydra.sweep.dir={tmp_path}/same"]  # fmt: skip
    first = train_in_process(tracking_uri, *sweep)
    assert first.returncode == 1 and "1 of 4 jobs failed" in first.stderr
    again = train_in_process(tracking_uri, *sweep, "sweep.resume=latest", "sweep.max_failures=0")
    assert again.returncode == 1, again.stderr
    assert again.stdout.count("SKIPPED (finished in an earlier attempt)") == 3
    assert "[5/4]" not in again.stdout and "[4/4]" in again.stdout
    assert "exceeded" not in again.stdout  # the first attempt's failure is not this one's
    parent, children = sweep_runs(tracking_uri)
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED", "FINISHED", "FINISHED"]
    assert [c.data.tags.get("best_in_sweep") for c in children].count("true") == 1
    assert parent.data.tags["sweep_dir"] == str(tmp_path / "same")


@pytest.mark.slow
def test_a_sigkilled_sweep_is_reconciled_and_resumes_as_the_new_process(
    tracking_uri, tmp_path
) -> None:
    process, out = start(tracking_uri, tmp_path, *KILLED_SWEEP)
    wait_for(out, "[1/4]", process)
    deadline = time.monotonic() + 60
    while sum(r.info.status == "RUNNING" for r in all_runs(tracking_uri)) < 2:  # job 2 started
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    process.kill()  # no cleanup at all: the parent and the running child stay RUNNING
    process.wait()
    running = [r for r in all_runs(tracking_uri) if r.info.status == "RUNNING"]
    assert len(running) == 2
    doctor = cli(tracking_uri, "src.doctor", "data=heart", timeout=120)
    assert doctor.returncode == 1 and doctor.stdout.count("STALE: its process is gone") == 2
    summary = cli(tracking_uri, "src.summary", "data=heart", timeout=120)
    assert summary.returncode == 0, summary.stderr
    assert summary.stderr.count("Marked stale run") == 2
    for stale in running:
        after = MlflowClient(tracking_uri).get_run(stale.info.run_id)
        assert after.info.status == "FAILED" and after.data.tags["error_type"] == "Stale"
    resumed_dir = tmp_path / "second"
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri}
    with (tmp_path / "resumed.log").open("w") as log:
        second = subprocess.Popen(
            [sys.executable, "-m", "src.train", *KILLED_SWEEP, "sweep.resume=latest",
             f"hydra.sweep.dir={resumed_dir}"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    wait_for(tmp_path / "resumed.log", "SKIPPED (finished in an earlier attempt)", second)
    during = in_process(tracking_uri, "src.summary", "data=heart")  # while it runs
    assert "Marked stale run" not in during.stderr, during.stderr
    assert second.wait(timeout=300) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    parent, children = sweep_runs(tracking_uri)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["pid"] == str(second.pid)
    assert parent.data.tags["process"].split(":")[1] == str(second.pid)
    assert "error_type" not in parent.data.tags and "end_reason" not in parent.data.tags
    assert parent.data.tags["sweep_dir"] == str(resumed_dir)
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    assert [c.data.tags.get("best_in_sweep") for c in children].count("true") == 1


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


@pytest.mark.slow  # a sweep more; make test and CI run it
def test_an_interrupt_inside_a_store_read_still_closes_the_parent(tracking_uri, tmp_path) -> None:
    # the interrupt lands while a read is half-fetched, as a Ctrl-C inside an MLflow call can:
    # its open cursor, kept alive by the traceback, holds a sqlite lock the exit guard must get
    code = f"""
import time
import sqlalchemy
from mlflow.tracking import MlflowClient
from src.sweep import exit_guard, context
from src.tracking import store
client = MlflowClient({tracking_uri!r})
experiment = client.create_experiment("interrupted")
parent = client.create_run(experiment, tags={{"sweep": "true"}})
target = store.RunTarget({tracking_uri!r}, experiment, parent.info.run_id)
exit_guard.arm(context.SweepContext(target, {str(tmp_path)!r}, 1, time.time(), None))

def read(store):
    with store.ManagedSessionMaker() as session:
        rows = session.execute(sqlalchemy.text("SELECT * FROM experiments a, experiments b"))
        rows.fetchone()
        raise KeyboardInterrupt

read(client._tracking_client.store)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "KeyboardInterrupt" in result.stderr
    assert "database is locked" not in result.stderr, result.stderr[-2000:]
    (parent,) = all_runs(tracking_uri)
    assert parent.info.status == "KILLED"


@pytest.mark.parametrize("interrupted", [True, False], ids=["interrupted", "not-interrupted"])
def test_an_interrupt_that_comes_out_as_another_error_still_ends_the_run_killed(
    tracking_uri, monkeypatch, interrupted
) -> None:
    """A job's Ctrl-C (how submitit and Ray cancel a job) whose KeyboardInterrupt a library's
    cleanup turns into its own error: the run ends KILLED with that error recorded; the same error
    without a signal is a FAILED run. After the signal no further job starts in that process."""
    monkeypatch.setattr(interrupts, "_requests", [])  # this process's record, for this test only
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a job's process
    client = MlflowClient(tracking_uri)
    target = RunTarget(tracking_uri, client.create_experiment("interrupted"))
    try:
        with pytest.raises(RuntimeError), job_run(target, "job", {}) as run_id:
            try:
                if interrupted:
                    signal.raise_signal(signal.SIGINT)
                raise RuntimeError("cannot release un-acquired lock")
            except KeyboardInterrupt:
                raise RuntimeError("cannot release un-acquired lock") from None
    finally:
        signal.signal(signal.SIGINT, previous)
    run = client.get_run(run_id)
    assert run.info.status == ("KILLED" if interrupted else "FAILED")
    assert run.data.tags["error_type"] == "RuntimeError"
    assert signal.getsignal(signal.SIGINT) is previous
    assert interrupts.first_stop_signal() == (signal.SIGINT if interrupted else None)


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


def test_resume_matches_a_command_longer_than_a_tag(tracking_uri) -> None:
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("long")
    swept = {"model.n_neighbors": [str(k) for k in range(1, 3000)]}
    command = command_tag({"sweeper": "BasicSweeper", "swept": swept, "fixed": []})
    longer = command_tag({"sweeper": "BasicSweeper", "swept": swept | {"seed": ["1"]}, "fixed": []})
    assert len(command) <= MAX_TAG_VAL_LENGTH and command != longer  # no shared-prefix match
    parent = client.create_run(experiment_id, tags={"sweep": "true", COMMAND_TAG: command})
    assert resume_parent(client, experiment_id, "latest", command).info.run_id == (
        parent.info.run_id
    )
    with pytest.raises(NoSweepError, match="too long to list what differs"):
        resume_parent(client, experiment_id, parent.info.run_id, longer)
