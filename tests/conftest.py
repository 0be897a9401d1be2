"""Shared fixtures: the repo, the heart data it ships, and real sweeps, in this process or in
subprocesses."""

from __future__ import annotations

import gc
import importlib
import io
import logging
import os
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from hydra_plugins.sweeps_cluster_launchers import handle_lost_jobs
from src.sweep import exit_guard
from src.sweep.context import set_current_sweep

REPO = Path(__file__).resolve().parents[1]
HEART_CSV = REPO / "tests" / "data" / "heart_cleveland.csv"  # UCI Cleveland, CC BY 4.0


@pytest.fixture(autouse=True)
def in_own_folder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own folder: nothing a test makes by a relative path (MLflow's
    default ./mlruns for an experiment made without an artifact location) lands in the
    repository. Subprocesses are started in the repository on purpose (`cli`). Hydra's own
    launcher suites keep theirs: their joblib workers outlive a test, and its folder."""
    if request.module.__name__.endswith("test_launcher_suites"):
        return
    monkeypatch.chdir(request.getfixturevalue("tmp_path"))


@pytest.fixture
def heart_csv() -> Path:
    """The UCI Cleveland heart data the tests ship (tests/data/README.md: source, licence)."""
    return HEART_CSV


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite store, created (and its schema migrated) once per test session."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


def new_store(migrated_store: Path, directory: Path) -> str:
    """A fresh sqlite store in `directory`, copied from the migrated empty one; its URI."""
    shutil.copyfile(migrated_store, directory / "mlflow.db")
    return f"sqlite:///{directory}/mlflow.db"


@pytest.fixture
def tracking_uri(tmp_path: Path, migrated_store: Path) -> str:
    """A fresh sqlite store under tmp_path."""
    return new_store(migrated_store, tmp_path)


def cli(
    uri: str, module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` from the repo root against the store at `uri`."""
    full_env = os.environ | {"MLFLOW_TRACKING_URI": uri} | (env or {})
    full_env.pop("MLFLOW_RUN_ID", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def in_process(uri: str, module: str, *args: str) -> subprocess.CompletedProcess:
    """Call `module`'s `main(argv)` in this process against the store at `uri`, with what
    `cli` returns: the exit code and the printed output (the tests of the `python -m` path
    itself use `cli`)."""
    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's errors
                code = e.code if isinstance(e.code, int) else 2
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI")
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


def train_in_process(
    uri: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m src.train args` called in this process as a process would run it and end,
    with what `cli` returns: Hydra's main with this argv, the exit code and message of its
    SystemExit (or the traceback of an uncaught error), then what the process's exit would do
    (the exit guard closes a parent still open). What the run changed here (environment, argv,
    signal handlers, the root logger, Hydra's and the sweep's globals, the collector) is put
    back. For runs and sweeps on Hydra's basic launcher where the process boundary is not what
    the test is about: no interpreter to start, no imports to repeat."""
    root = logging.getLogger()
    saved_env, saved_argv = dict(os.environ), sys.argv
    saved_root = root.handlers[:], root.level
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved_gc = gc.get_threshold()
    os.environ.update({"MLFLOW_TRACKING_URI": uri} | (env or {}))
    os.environ.pop("MLFLOW_RUN_ID", None)
    sys.argv = [str(REPO / "src" / "train.py"), *args]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                runpy.run_module("src.train", run_name="__main__")  # as `python -m` does
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
                if isinstance(e.code, str):  # as the interpreter prints it at exit
                    print(e.code, file=sys.stderr)
            except Exception:  # noqa: BLE001 - uncaught (HYDRA_FULL_ERROR=1), as the interpreter
                traceback.print_exc()
                code = 1
            exit_guard.close_on_exit()  # the exit handler it registered, as at the process's exit
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
        set_current_sweep(None)
        handle_lost_jobs(None)
        for handler in set(root.handlers) - set(saved_root[0]):  # a job's log file
            handler.close()
        root.handlers[:] = saved_root[0]
        root.setLevel(saved_root[1])
        for signum, handler in saved_signals.items():
            signal.signal(signum, handler)
        gc.unfreeze()
        gc.set_threshold(*saved_gc)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["src.train", *args], code, out.getvalue(), err.getvalue())


def train(uri: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m src.train args` against the store at `uri`: called in this process on Hydra's
    basic launcher (`train_in_process`), a process of its own under any other launcher (its
    workers would outlive the call here)."""
    if any(a.startswith("hydra/launcher=") for a in args):
        return cli(uri, "src.train", *args, env=env)
    return train_in_process(uri, *args, env=env)


@pytest.fixture
def run_train(tracking_uri: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """`train` against the test's own store, with Hydra's output dirs under tmp_path."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        dirs = [f"hydra.sweep.dir={tmp_path}/sweep", f"hydra.run.dir={tmp_path}/run"]
        return train(tracking_uri, *args, *dirs, env=env)

    return run


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A tracking server or UI without MLflow's job runner (its GenAI jobs: seven more processes,
# each importing mlflow, that no test here uses) and without telemetry
MLFLOW_SERVER_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


@contextmanager
def mlflow_process(
    args: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> Iterator[str]:
    """Run `python -m mlflow <args>` on a free loopback port until it answers `/health` (the
    tracking server, the UI and the model server all do); yield its URL; stop it."""
    port = free_port()
    full_env = os.environ | MLFLOW_SERVER_ENV | (env or {})
    # `mlflow models serve` starts `uvicorn` by name: the venv must be on PATH, as when activated
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", *args, "--host", "127.0.0.1", "--port", str(port)],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"no answer in {timeout} s:\n{log.read_text()}"
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def all_runs(tracking_uri: str) -> list[Run]:
    """Every run in every experiment of the store (none if the store was never created)."""
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    if not db.exists():
        return []
    client = MlflowClient(tracking_uri)
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiment_ids, max_results=50000) if experiment_ids else []


def heart_sweep(uri: str, sweep_dir: Path, *overrides: str) -> str:
    """Run a sweep on the heart data without plots into `sweep_dir` (in this process); its
    parent run id."""
    output = heart_sweep_output(uri, sweep_dir, *overrides)
    found = re.search(r"^Sweep parent run (\w+)", output, re.MULTILINE)
    assert found, output
    return found.group(1)


def heart_sweep_output(uri: str, sweep_dir: Path, *overrides: str) -> str:
    """`heart_sweep`, and what it printed (it must succeed)."""
    result = train_in_process(
        uri,
        "-m",
        *overrides,
        "data=heart",
        f"data.path={HEART_CSV}",
        "mlflow.log_plots=false",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def fold_history(client: MlflowClient, run_id: str, key: str = "cv_accuracy") -> list[float]:
    """A run's per-fold scores as logged, in step order."""
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def sweep_runs(tracking_uri: str) -> tuple[Run, list[Run]]:
    """The single parent run of the store and its children; fails if there is not exactly one."""
    runs = all_runs(tracking_uri)
    parents = [r for r in runs if r.data.tags.get("sweep") == "true"]
    assert len(parents) == 1, f"expected one parent run, got {[r.info.run_name for r in parents]}"
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    orphans = [r for r in runs if r is not parent and r not in children]
    assert not orphans, f"runs outside the sweep: {[r.info.run_name for r in orphans]}"
    return parent, children
