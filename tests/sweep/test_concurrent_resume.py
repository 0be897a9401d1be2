"""Resumes that meet other live processes of the same sweep: another resume at the same
moment, or the killed sweep's workers still computing. Real processes, a real sqlite store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from src.sweep.recovery import SweepHeldError, claim_lease, take_lease
from src.tracking.process import PROCESS_TAG, process_identity

from ..helpers import HEART_CSV, REPO, all_runs, cli, sweep_runs, train_in_process

# three of four jobs fail (n_neighbors > the training rows): a resume reruns them
SWEEP = [
    "-m",
    "data=heart",
    f"data.path={HEART_CSV}",
    "mlflow.log_model=false",
    "mlflow.log_plots=false",
    "model=knn",
    "model.n_neighbors=5,500,501,502",
]


def first_attempt(uri: str, tmp_path: Path) -> None:
    """The sweep to resume: one FINISHED child, three FAILED."""
    result = train_in_process(uri, *SWEEP, f"hydra.sweep.dir={tmp_path}/first")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "3 of 4 jobs failed" in result.stderr


# the first job fails and sweep.max_failures=0 skips the other 30: a resume runs them all,
# for longer than two processes' start-up may differ
LONG = [*SWEEP[:-1], f"model.n_neighbors=500,{','.join(map(str, range(1, 31)))}"]


@pytest.mark.slow  # two sweeps of 31 jobs at once in processes; make test and CI run it
def test_two_resumes_at_once_one_is_refused(tracking_uri: str, tmp_path: Path) -> None:
    """Two `sweep.resume=latest` started together: one resumes, the other is refused in one
    line naming the holder, and no configuration ends with two children."""
    first = train_in_process(
        tracking_uri, *LONG, "sweep.max_failures=0", f"hydra.sweep.dir={tmp_path}/first"
    )
    assert "30 of 31 jobs have no run" in first.stderr, first.stdout + first.stderr

    def resume(n: int) -> subprocess.CompletedProcess:
        args = [*LONG, "sweep.resume=latest", f"hydra.sweep.dir={tmp_path}/resume{n}"]
        return cli(tracking_uri, "src.train", *args)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(resume, [1, 2]))
    outputs = [r.stdout + r.stderr for r in results]
    refused = [o for o in outputs if "Sweep not started" in o]
    assert len(refused) == 1, outputs
    assert "is held by process" in refused[0] and "Traceback" not in refused[0], refused[0]
    resumed = [o for o in outputs if "Resuming sweep" in o]
    assert len(resumed) == 1 and "1 of 31 jobs failed" in resumed[0], outputs
    parent, children = sweep_runs(tracking_uri)  # deleted runs aside
    # one claim of the lease, by the resume that went on (the refused one wrote nothing)
    assert [k for k in parent.data.params if k.startswith("sweep_lease.")] == ["sweep_lease.1"]
    assert parent.data.params["sweep_lease.1"] == parent.data.tags["sweep_lease"]
    assert len(children) == 31
    assert len({c.data.tags["job_key"] for c in children}) == 31  # one child per configuration
    assert not [c.info.run_name for c in children if c.info.status == "RUNNING"]


def test_two_claims_from_one_reading_only_one_holds(tracking_uri: str, tmp_path: Path) -> None:
    """Two resumes that read the parent at the same moment both claim the next attempt: the
    store takes exactly one claim (a param is written once), the other is refused naming the
    holder; a later resume is refused while the holder's process lives, and goes on once it is
    gone. (With a tag written, a wait and a read back, a writer more than the wait late also
    went on.)"""
    first_attempt(tracking_uri, tmp_path)
    parent, _ = sweep_runs(tracking_uri)
    client = MlflowClient(tracking_uri)
    processes = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])]
    processes.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]))
    try:
        a, b = (process_identity(p.pid) for p in processes)
        assert a is not None and b is not None
        read_by_both = client.get_run(parent.info.run_id)
        claim_lease(client, read_by_both, a)
        with pytest.raises(SweepHeldError, match="took it at the same moment") as late:
            claim_lease(client, read_by_both, b)
        assert a in str(late.value)
        with pytest.raises(SweepHeldError, match="is held by process") as later:
            take_lease(client, parent.info.run_id, b)
        assert a in str(later.value)
        processes[0].kill()
        processes[0].wait()
        take_lease(client, parent.info.run_id, b)  # the holder is gone: the next attempt
        held = client.get_run(parent.info.run_id)
        assert held.data.params["sweep_lease.2"].split(" ")[0] == b
        assert (held.info.status, held.data.tags[PROCESS_TAG]) == ("RUNNING", b)
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_a_resume_never_deletes_a_child_whose_process_lives(
    tracking_uri: str, tmp_path: Path
) -> None:
    """A RUNNING child whose process is alive (a killed sweep's worker still computing it):
    the resume is refused, naming it, and the child is left as it is."""
    first_attempt(tracking_uri, tmp_path)
    parent, children = sweep_runs(tracking_uri)
    client = MlflowClient(tracking_uri)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        identity = process_identity(worker.pid)
        assert identity is not None
        failed = next(c for c in children if c.info.status == "FAILED")
        running = client.create_run(
            parent.info.experiment_id,
            run_name="still computing",
            tags={
                "mlflow.parentRunId": parent.info.run_id,
                "job_key": failed.data.tags["job_key"],
                PROCESS_TAG: identity,
            },
        )
        args = [*SWEEP, "sweep.resume=latest", f"hydra.sweep.dir={tmp_path}/resume"]
        result = train_in_process(tracking_uri, *args)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "has a RUNNING child 'still computing'" in output, output
        assert identity in output
        kept = client.get_run(running.info.run_id)
        assert (kept.info.status, kept.info.lifecycle_stage) == ("RUNNING", "active")
        assert len(sweep_runs(tracking_uri)[1]) == 5  # nothing deleted
    finally:
        worker.kill()
        worker.wait()


LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"],
}


@pytest.mark.slow  # a sweep killed while its workers compute; make test and CI run it
@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_workers_end_when_their_launching_process_is_killed(
    launcher: str, tracking_uri: str, tmp_path: Path
) -> None:
    """SIGKILL of `python -m src.train` under the joblib launcher or submitit's local one
    (whose controller process, the job's parent, lives on): the processes computing its jobs
    notice and end within seconds, their runs KILLED, instead of computing on."""
    args = [*SWEEP[:-2], "model=random_forest", "model.n_estimators=20000,20001"]
    args += [*LAUNCHERS[launcher], f"hydra.sweep.dir={tmp_path}/s"]
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_uri}
    with (tmp_path / "out.txt").open("w") as out:
        sweep = subprocess.Popen(
            [sys.executable, "-m", "src.train", *args], cwd=REPO, env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 180
        running: list = []
        while len(running) < 2:
            assert sweep.poll() is None, (tmp_path / "out.txt").read_text()
            assert time.monotonic() < deadline, (tmp_path / "out.txt").read_text()
            time.sleep(0.5)
            running = [r for r in all_runs(tracking_uri) if "mlflow.parentRunId" in r.data.tags]
            running = [r for r in running if r.info.status == "RUNNING"]
    finally:
        sweep.kill()
        sweep.wait()
    workers = [r.data.tags[PROCESS_TAG] for r in running]
    deadline = time.monotonic() + 30
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [w for w in workers if process_identity(int(w.split(":")[1])) == w]
    for worker in alive:  # leave nothing computing after the test, whatever it shows
        os.kill(int(worker.split(":")[1]), signal.SIGKILL)
    assert not alive, f"workers still computing 30 s after their launcher died: {alive}"
    client = MlflowClient(tracking_uri)
    ended = [client.get_run(r.info.run_id).info.status for r in running]
    assert ended == ["KILLED", "KILLED"], ended
