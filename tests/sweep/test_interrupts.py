"""Ctrl-C, SIGTERM and SIGKILL of a sweep: what finished is summarised, the rest ends KILLED (or
is found stale), nothing is left RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from src.tracking import interrupts
from src.tracking.child_run import job_run
from src.tracking.store import RunTarget

from ..helpers import (
    KILLED_SWEEP,
    REPO,
    SLOW_SWEEP,
    all_runs,
    cli,
    in_process,
    start,
    sweep_runs,
    wait_for,
)


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
from src.tracking.heartbeat import Heartbeat
client = MlflowClient({tracking_uri!r})
experiment = client.create_experiment("interrupted")
parent = client.create_run(experiment, tags={{"sweep": "true"}})
target = store.RunTarget({tracking_uri!r}, experiment, parent.info.run_id)
ctx = context.SweepContext(target, {str(tmp_path)!r}, 1, time.time(), None)
beat = Heartbeat({tracking_uri!r}, parent.info.run_id, 30.0)
exit_guard.ExitGuard(context.Launch(ctx, beat)).arm()

def read(store):
    with store.ManagedSessionMaker() as session:
        rows = session.execute(sqlalchemy.text("SELECT * FROM experiments a, experiments b"))
        rows.fetchone()
        raise KeyboardInterrupt

read(client._tracking_client.store)
"""
    result = subprocess.run(  # in its own folder: the experiment's artifacts land there
        [sys.executable, "-c", code], cwd=tmp_path, env=os.environ | {"PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
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
