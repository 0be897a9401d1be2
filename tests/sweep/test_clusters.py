"""Sweeps on cluster launchers: submitit's local processes (as on SLURM) and a real local Ray
cluster, one parent with nested children; a job whose process is SIGKILLed is a FAILED child and
the sweep goes on; an interrupted sweep cancels its running jobs. The Ray cluster, its tracking
server and its sweep run in a network namespace of their own with loopback only (Ray binds the
machine's own address otherwise)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import optuna
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from ..helpers import (
    HEART_CSV,
    MLFLOW_SERVER_ENV,
    SLOW_TREES,
    all_runs,
    check_asked_as_workers_free,
    new_store,
    queued_study,
    start,
    sweep_runs,
    trees_search,
)

pytestmark = pytest.mark.slow  # run by `make test` / CI via `pytest -m slow`

# four jobs, one of them slow enough to be caught RUNNING and killed
KILL_SWEEP = [
    "-m",
    "model=random_forest",
    "model.n_estimators=5,6,1500,7",
    "data=heart",
    f"data.path={HEART_CSV}",
    "mlflow.log_model=false",
    "mlflow.log_plots=false",
]
SLOW_JOB = "model.n_estimators=1500"
# submitit's local processes, one task each, as the cluster tests run them
SUBMITIT = [
    "hydra/launcher=submitit_local",
    "hydra.launcher.timeout_min=10",
    "hydra.launcher.tasks_per_node=1",
]
BIN = Path(sys.executable).parent


def kill_when_running(
    uri: str, overrides: str, sweep: subprocess.Popen, log: Path, timeout: float = 180
) -> Run:
    """SIGKILL the process running the child whose overrides include `overrides`, as soon as
    that child is RUNNING (its `pid` tag names the process); that child, as it was."""
    deadline = time.monotonic() + timeout
    while True:
        running = [
            r
            for r in all_runs(uri)
            if r.info.status == "RUNNING" and overrides in r.data.tags.get("hydra_overrides", "")
        ]
        if running:
            os.kill(int(running[0].data.tags["pid"]), signal.SIGKILL)
            return running[0]
        assert sweep.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


def check_killed_sweep(
    uri: str, killed: Run, sweep_dir: Path, output: str, served: Path | None = None
) -> list[Run]:
    """The sweep went on past the killed job: one parent, 4 nested children, the killed one
    FAILED with its launcher's error, the others FINISHED, the summary written; the children.
    `served`: where the tracking server keeps the artifacts (mlflow-artifacts:/...)."""
    parent, children = sweep_runs(uri)
    assert parent.info.status == "FINISHED", output[-3000:]
    assert len(children) == 4 == len(all_runs(uri)) - 1
    by_status = sorted((c.info.status, c.info.run_id == killed.info.run_id) for c in children)
    assert by_status == [("FAILED", True), ("FINISHED", False), ("FINISHED", False),
                         ("FINISHED", False)], output[-3000:]  # fmt: skip
    lost = MlflowClient(uri).get_run(killed.info.run_id)
    assert lost.data.tags["end_reason"].startswith("its process died before the job returned")
    assert lost.data.params["model.n_estimators"] == "1500"
    if served is None:
        text = MlflowClient(uri).download_artifacts(lost.info.run_id, "error/traceback.txt")
    else:
        text = str(served / lost.info.artifact_uri.removeprefix("mlflow-artifacts:/"))
        text += "/error/traceback.txt"
    assert lost.data.tags["error_type"] in Path(text).read_text()
    assert "1 of 4 jobs failed" in output
    summary = (sweep_dir / "sweep_summary.md").read_text()
    assert "FAILED" in summary and "n_estimators=1500" in summary
    return children


def test_a_killed_submitit_job_is_a_failed_child_and_the_sweep_goes_on(
    tracking_uri, tmp_path
) -> None:
    """Jobs run as separate processes started by submitit (as on SLURM): one parent, nested
    children; SIGKILL of the process running one job: that child ends FAILED with submitit's
    error, the other jobs finish, the summary is written, the exit code is 1."""
    sweep, log = start(tracking_uri, tmp_path, *KILL_SWEEP, *SUBMITIT)
    killed = kill_when_running(tracking_uri, SLOW_JOB, sweep, log)
    assert sweep.wait(timeout=300) == 1, log.read_text()[-3000:]
    children = check_killed_sweep(tracking_uri, killed, tmp_path / "sweep", log.read_text())
    parent, _ = sweep_runs(tracking_uri)
    assert parent.data.tags["launcher"].endswith("SweepsLocalLauncher")
    assert parent.data.tags["pid"] not in {c.data.tags["pid"] for c in children}
    lost = MlflowClient(tracking_uri).get_run(killed.info.run_id)
    assert lost.data.tags["error_type"] == "UncompletedJobError"


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# two jobs, both slow enough to be interrupted while they run
INTERRUPT_SWEEP = [*KILL_SWEEP[:2], "model.n_estimators=3000,3001", *KILL_SWEEP[3:]]


def interrupt_when_running(uri: str, sweep: subprocess.Popen, log: Path) -> list[Run]:
    """SIGTERM the launching process once the parent and both jobs' children are RUNNING (as
    Ctrl-C or a scheduler sends it to that process alone); the runs as they were then."""
    deadline = time.monotonic() + 180
    while len(running := [r for r in all_runs(uri) if r.info.status == "RUNNING"]) < 3:
        assert sweep.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    sweep.send_signal(signal.SIGTERM)
    assert sweep.wait(timeout=60) != 0, log.read_text()[-3000:]
    return running


def check_interrupted_sweep(uri: str, sweep_dir: Path, output: str) -> None:
    """The jobs were cancelled: the parent and both children KILLED, and they stay KILLED."""
    time.sleep(2)  # a job that went on would finish its run now
    parent, children = sweep_runs(uri)
    assert [parent.info.status] + [c.info.status for c in children] == ["KILLED"] * 3, output
    assert "cancelling the jobs still running" in output
    assert (sweep_dir / "sweep_summary.md").read_text().count("KILLED") >= 2


def test_an_interrupted_submitit_sweep_cancels_its_jobs(tracking_uri, tmp_path) -> None:
    """SIGTERM to the launching process of a submitit sweep while both its jobs run: the jobs
    are cancelled, their processes gone when it exits, both children and the parent KILLED."""
    sweep, log = start(tracking_uri, tmp_path, *INTERRUPT_SWEEP, *SUBMITIT)
    running = interrupt_when_running(tracking_uri, sweep, log)
    output = log.read_text()
    job_pids = [int(r.data.tags["pid"]) for r in running if r.data.tags.get("sweep") != "true"]
    assert len(job_pids) == 2 and not [pid for pid in job_pids if alive(pid)], output[-3000:]
    check_interrupted_sweep(tracking_uri, tmp_path / "sweep", output)


def test_an_optuna_search_runs_its_batches_through_submitit(run_train, tracking_uri, tmp_path):
    """Our Optuna sweeper hands each batch of trials to whatever launcher the app has: here
    submitit's, 2 trials a batch in processes of their own; each child names its trial."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = run_train(
        "-m",
        "sweeps=knn_optuna",
        "data=iris",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=submitit",
        *SUBMITIT,
        "mlflow.log_model=false",
        "mlflow.log_plots=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="submitit", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    client = MlflowClient(tracking_uri)
    children = [client.get_run(t.user_attrs["mlflow_run_id"]) for t in study.trials]
    assert [c.data.tags["optuna.trial_number"] for c in children] == ["0", "1", "2", "3"]
    parent = client.get_run(children[0].data.tags["mlflow.parentRunId"])
    assert parent.data.tags["launcher"].endswith("LocalLauncher")
    assert parent.data.tags["pid"] not in {c.data.tags["pid"] for c in children}


@contextmanager
def loopback_namespace() -> Iterator[list[str]]:
    """A network namespace with only loopback (up), held open by a sleeping process; yields the
    command prefix that runs a program inside it. Skips the test, saying why, where it cannot
    be made (it needs root)."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace of the test's own needs root (unshare -n); CI is root")
    holder = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep infinity"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert holder.stdout is not None
    first = holder.stdout.readline().strip()
    try:
        if first != "up":
            pytest.skip(f"cannot make a loopback-only network namespace: {first}")
        yield ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def wait_for_server(netns: list[str], url: str, log: Path, timeout: float = 120) -> None:
    """Wait (inside the namespace) until the tracking server at `url` answers /health."""
    probe = (
        "import sys, time, urllib.request\n"
        f"deadline = time.monotonic() + {timeout}\n"
        "while True:\n"
        "    try:\n"
        f"        urllib.request.urlopen('{url}/health', timeout=2); break\n"
        "    except OSError:\n"
        "        if time.monotonic() > deadline: sys.exit(1)\n"
        "        time.sleep(0.5)\n"
    )
    result = subprocess.run([*netns, sys.executable, "-c", probe], timeout=timeout + 30)
    assert result.returncode == 0, log.read_text()[-3000:]


@contextmanager
def ray_cluster(netns: list[str], temp_dir: Path, log: Path) -> Iterator[str]:
    """A Ray head and one worker node, 1 CPU each, inside the namespace; yields the head's
    address; `ray stop` at the end."""
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus=1", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    address = "127.0.0.1:6379"
    head = [str(BIN / "ray"), "start", "--head", "--port=6379", "--include-dashboard=false",
            f"--temp-dir={temp_dir}", *common]  # fmt: skip
    worker = [str(BIN / "ray"), "start", f"--address={address}", *common]
    try:
        with log.open("a") as out:
            for command in (head, worker):
                started = subprocess.run(
                    [*netns, *command], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=180
                )
                assert started.returncode == 0, log.read_text()[-3000:]
        yield address
    finally:
        with log.open("a") as out:
            subprocess.run(
                [*netns, str(BIN / "ray"), "stop", "--force"], stdout=out,
                stderr=subprocess.STDOUT, timeout=120,
            )  # fmt: skip


def ray_nodes(netns: list[str], address: str) -> list[dict]:
    """The cluster's nodes as Ray lists them (address, alive), asked from inside the namespace."""
    script = (
        "import json, ray\n"
        f"ray.init(address='{address}', logging_level='ERROR')\n"
        "print(json.dumps([{'ip': n['NodeManagerAddress'], 'alive': n['Alive'],"
        " 'id': n['NodeID']} for n in ray.nodes()]))\n"
    )
    result = subprocess.run(
        [*netns, sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def start_ray_sweep(
    netns: list[str],
    address: str,
    workdir: Path,
    uri: str,
    sweep_dir: Path,
    log: Path,
    overrides: list[str],
) -> subprocess.Popen:
    """Start, inside the namespace and from `workdir`, a sweep on the Ray cluster at `address`
    tracked at `uri`; its output goes to `log`."""
    env = os.environ | MLFLOW_SERVER_ENV | {"MLFLOW_TRACKING_URI": uri}
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [*netns, sys.executable, "-m", "src.train", *overrides, "hydra/launcher=ray",
             f"hydra.launcher.ray.init.address={address}", f"mlflow.tracking_uri={uri}",
             f"hydra.sweep.dir={sweep_dir}"],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def test_a_ray_cluster_sweep_nests_its_children_and_survives_a_killed_worker(
    migrated_store, tmp_path
) -> None:
    """On a real local Ray cluster (head and worker node) reached by address, with its tracking
    server, all on loopback: one parent, a nested child per job recording the Ray node that ran
    it; SIGKILL of the Ray worker running one job: that child ends FAILED with Ray's error, the
    other jobs finish and the summary is written. Then a second sweep, SIGTERMed while its two
    jobs run: Ray cancels them, their children and the parent end KILLED. Then an Optuna search
    whose first trial is slow: the other node runs the next trials beside it."""
    uri = new_store(migrated_store, tmp_path)  # the server's backend, read here directly
    log = tmp_path / "cluster.log"
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths
    with loopback_namespace() as netns:
        interfaces = subprocess.run([*netns, "ip", "-o", "link"], capture_output=True, text=True)
        assert [line.split(":")[1].strip() for line in interfaces.stdout.splitlines()] == ["lo"]
        env = os.environ | MLFLOW_SERVER_ENV
        server_command = [
            *netns, sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
            "5000", "--backend-store-uri", uri, "--serve-artifacts", "--artifacts-destination",
            (tmp_path / "served-artifacts").as_uri(), "--workers", "1",
        ]  # fmt: skip
        with log.open("w") as out:
            server = subprocess.Popen(server_command, env=env, stdout=out, stderr=out)
        try:
            with ray_cluster(netns, temp_dir, log) as address:
                wait_for_server(netns, "http://127.0.0.1:5000", log)
                nodes = ray_nodes(netns, address)
                assert [(n["ip"], n["alive"]) for n in nodes] == [("127.0.0.1", True)] * 2
                sweep_log = tmp_path / "sweep.log"
                workdir = tmp_path / "workdir"  # where the sweep starts: nothing lands there
                workdir.mkdir()
                ray_sweep = partial(start_ray_sweep, netns, address, workdir)
                sweep = ray_sweep(
                    "http://127.0.0.1:5000", tmp_path / "sweep", sweep_log, KILL_SWEEP
                )
                killed = kill_when_running(uri, SLOW_JOB, sweep, sweep_log)
                assert sweep.wait(timeout=300) == 1, sweep_log.read_text()[-3000:]
                # a second sweep, on a store the nodes share as files, interrupted
                (second := tmp_path / "interrupted").mkdir()
                second_uri = new_store(migrated_store, second)
                interrupted = ray_sweep(
                    second_uri, second / "sweep", second / "sweep.log", INTERRUPT_SWEEP
                )
                interrupt_when_running(second_uri, interrupted, second / "sweep.log")
                check_interrupted_sweep(
                    second_uri, second / "sweep", (second / "sweep.log").read_text()
                )
                # a third: an Optuna search asking a trial whenever a Ray worker is free
                (third := tmp_path / "search").mkdir()
                third_uri = new_store(migrated_store, third)
                storage = queued_study(third, [SLOW_TREES, 5, 6, 7, 8])
                search = ray_sweep(
                    third_uri, third / "sweep", third / "sweep.log", trees_search(third, [], 5)
                )
                assert search.wait(timeout=300) == 0, (third / "sweep.log").read_text()[-3000:]
        finally:
            server.terminate()
            server.wait(timeout=60)
    assert list(workdir.iterdir()) == [], temp_dir  # Ray's logs kept to tell what made it
    shutil.rmtree(temp_dir, ignore_errors=True)
    output = sweep_log.read_text()
    served = tmp_path / "served-artifacts"
    children = check_killed_sweep(uri, killed, tmp_path / "sweep", output, served)
    parent, _ = sweep_runs(uri)
    assert parent.data.tags["launcher"].endswith("SweepsRayLauncher")
    node_ids = {n["id"] for n in nodes}
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert {c.data.tags["ray.node_ip"] for c in finished} == {"127.0.0.1"}
    assert {c.data.tags["ray.node_id"] for c in finished} <= node_ids
    assert killed.data.tags["ray.node_id"] in node_ids  # the running child named its node
    lost = MlflowClient(uri).get_run(killed.info.run_id)
    assert lost.data.tags["error_type"] == "WorkerCrashedError"
    check_asked_as_workers_free(storage, third_uri)
