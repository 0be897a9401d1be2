"""What the tests share: the repository's paths, running a sweep or a command (in process or as a
process), stores, servers, and the runs they made."""

from __future__ import annotations

import atexit
import gc
import glob
import importlib
import io
import logging
import os
import pwd
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import optuna
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.tracking import MlflowClient
from playwright.sync_api import sync_playwright

from hydra_plugins.sweeps_cluster_launchers import handle_lost_jobs
from src.sweep.context import set_current_sweep

REPO = Path(__file__).resolve().parents[1]


HEART_CSV = REPO / "tests" / "data" / "heart_cleveland.csv"  # UCI Cleveland, CC BY 4.0


def new_store(migrated_store: Path, directory: Path) -> str:
    """A fresh sqlite store in `directory`, copied from the migrated empty one; its URI."""
    shutil.copyfile(migrated_store, directory / "mlflow.db")
    return f"sqlite:///{directory}/mlflow.db"


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


class ExitHandlers:
    """Exit handlers registered by a run made in this process (atexit's register and unregister
    stand in), run when `run` is called, last registered first, as at a process's exit."""

    def __init__(self) -> None:
        self.handlers: list[tuple] = []

    def register(self, func, *args, **kwargs):
        self.handlers.append((func, args, kwargs))
        return func

    def unregister(self, func) -> None:
        self.handlers = [h for h in self.handlers if h[0] != func]

    def run(self) -> None:
        while self.handlers:
            func, args, kwargs = self.handlers.pop()
            func(*args, **kwargs)


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
    at_exit = ExitHandlers()  # what the run registers to do at exit, done below
    real_register, real_unregister = atexit.register, atexit.unregister
    atexit.register, atexit.unregister = at_exit.register, at_exit.unregister
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
            at_exit.run()  # as the process's exit would
    finally:
        atexit.register, atexit.unregister = real_register, real_unregister
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


def as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user when we are root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def running_postgres() -> Iterator[str]:
    """Start PostgreSQL with a database `mlflow`; yield its SQLAlchemy URI; stop and delete it."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert binaries, "PostgreSQL server binaries are required: apt-get install postgresql"
    bin_dir = Path(binaries[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="sweep-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(data, user.pw_uid, user.pw_gid)
    port = free_port()
    subprocess.run(
        as_postgres(
            [str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    subprocess.run(
        as_postgres(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data / "db"),
                "-o",
                options,
                "-l",
                str(data / "log"),
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        for database in ("mlflow", "optuna"):  # each its own schema (both name alembic_version)
            subprocess.run(
                as_postgres(
                    [
                        str(bin_dir / "createdb"),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "-U",
                        "postgres",
                        database,
                    ]
                ),
                check=True,
                capture_output=True,
            )
        # the driver named: with SQLAlchemy 2.1 a bare postgresql:// means psycopg 3
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


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


def wait_for(out: Path, text: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in out.read_text():
        assert process.poll() is None, f"ended before {text!r}:\n{out.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} in {timeout}s:\n{out.read_text()}"
        time.sleep(0.2)


BEST = [0.90, 0.85, 0.88, 0.92, 0.87]


def make_child(client, experiment_id, parent_id, name, folds, k, params=None, tags=None):
    """A finished child with cv_accuracy per fold (None: none logged, as an older version)."""
    parent = {"mlflow.parentRunId": parent_id} if parent_id else {}  # None: a single run
    run = client.create_run(experiment_id, run_name=name, tags=parent)
    now = int(time.time() * 1000)
    scores = folds if folds is not None else [0.5, 0.5]
    metrics = [Metric("cv_accuracy_mean", sum(scores) / len(scores), now, 0)]
    metrics += [Metric("cv_accuracy", v, now, i) for i, v in enumerate(folds or [])]
    all_params = SPLIT | {"model.n_neighbors": str(k)} | (params or {})
    client.log_batch(
        run.info.run_id,
        metrics=metrics,
        params=[Param(key, value) for key, value in all_params.items()],
        tags=[RunTag(key, value) for key, value in (SPLIT_TAGS | (tags or {})).items()],
    )
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def hand_sweep(client, name: str, children: dict[str, list[float]]) -> str:
    """A sweep's parent `name` in an experiment of its own, with a hand-made child (make_child)
    for each name -> folds; the parent's run id."""
    experiment_id = client.create_experiment(name)
    parent = client.create_run(experiment_id, run_name=name, tags={"sweep": "true"}).info.run_id
    for k, (child, folds) in enumerate(children.items()):
        make_child(client, experiment_id, parent, child, folds, k)
    return parent


MODELS = [
    "knn",
    "logistic_regression",
    "random_forest",
    "svm",
    "decision_tree",
    "gradient_boosting",
]


DATASETS = ["breast_cancer", "iris", "wine", "heart", "csv"]


BINARY_METRICS = ["tn", "fp", "fn", "tp"]


METRICS = [
    "cv_accuracy_mean",
    "cv_accuracy_std",
    "test_accuracy",
    "precision",
    "recall",
    "f1_score",
    "roc_auc",
    "training_time_s",
]


def compose_cfg(*overrides: str):
    """Compose conf/config.yaml with Hydra's compose API."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def data_overrides(data: str, heart_csv: Path) -> list[str]:
    if data == "heart":
        return ["data=heart", f"data.path={heart_csv}"]
    if data == "csv":
        return ["data=csv", f"data.path={heart_csv}", "data.target=num"]
    return [f"data={data}"]


SWEEP_FILES = sorted(p.stem for p in (REPO / "sweeps").glob("*.yaml"))


def browse(mlflow_ui: str, visit) -> list[str]:
    """Open Chromium on a loopback-only network and `visit(page)`; the requests it refused."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is required: apt-get install chromium"
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})

            def loopback_only(route) -> None:  # the UI must need nothing beyond our server
                if route.request.url.startswith(mlflow_ui):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", loopback_only)
            visit(page)
        finally:
            browser.close()
    return outside


def close_banners(page) -> None:
    """Close the UI's shared-view banner and the assistant's panel where shown, then let the
    page settle (before a screenshot)."""
    for label in ("Hide banner", "Close"):
        shown = page.locator(f'[aria-label="{label}"]:visible')
        if shown.count():
            shown.first.click()
    page.wait_for_timeout(1500)


def _default_sigint() -> None:
    # a shell's background job (`cmd &`) starts with SIGINT ignored, and so would the sweep:
    # these tests interrupt it as a terminal's Ctrl-C does, whatever started pytest
    signal.signal(signal.SIGINT, signal.SIG_DFL)


CHROMIUM = "/usr/bin/chromium"


# as the machine's own probe starts it: no sandbox as root, and no background network traffic
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


SPLIT = {"cv.seed": "42", "cv.folds": "5", "cv.repeats": "1"}


SPLIT_TAGS = {"data.train_fingerprint": "abc", "cv.n_train": "194", "cv.n_test": "48"}


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


def run(
    uri: str, tmp: Path, *args: str, sweep_dir: Path | None = None
) -> subprocess.CompletedProcess:
    """`train` into `sweep_dir` (default: a new one under `tmp`)."""
    return train(uri, *args, f"hydra.sweep.dir={sweep_dir or tmp / f's{time.time_ns()}'}")


RUN_TABLES = ("tags", "params", "metrics", "latest_metrics")  # MLflow's tables keyed by run_uuid


def grow_sweep(
    sqlite_path: Path, parent_run_id: str, total: int, seed: int = 0
) -> dict[str, tuple[str, float]]:
    """Give a finished sweep `total` children, fast: copies of its real children, row for row in
    the sqlite store's own tables (the client writes one run per transaction, ~13 ms a run),
    each with its `cv_accuracy*` scores lowered by its own small offset (so every copy has
    another score, its folds and mean still agreeing) and the next job number; by run id, each
    copy's original and its cv_accuracy_mean. For tests of reading at scale: the copies'
    artifacts are the originals'."""
    import json
    import random
    import sqlite3
    import uuid

    rng = random.Random(seed)
    with closing(sqlite3.connect(sqlite_path)) as db, db:
        real = [
            row[0]
            for row in db.execute(
                "SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = ?",
                (parent_run_id,),
            )
        ]
        assert real, f"run {parent_run_id} has no children to copy"
        columns = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in RUN_TABLES}
        runs_columns = [r[1] for r in db.execute("PRAGMA table_info(runs)")]
        rows = {
            source: {
                t: db.execute(f"SELECT * FROM {t} WHERE run_uuid = ?", (source,)).fetchall()
                for t in ("runs", *RUN_TABLES)
            }
            for source in real
        }
        scores: dict[str, tuple[str, float]] = {}
        for number in range(len(real), total):
            original = real[number % len(real)]
            source = rows[original]
            new_id, offset = uuid.uuid4().hex, rng.uniform(-0.05, 0.0)
            name = f"copy {number}"
            run = dict(zip(runs_columns, source["runs"][0], strict=True))
            run |= {"run_uuid": new_id, "name": name}
            db.execute(
                f"INSERT INTO runs ({', '.join(run)}) VALUES ({', '.join('?' * len(run))})",
                list(run.values()),
            )
            for table in RUN_TABLES:
                names = columns[table]
                copied = []
                for values in source[table]:
                    row = dict(zip(names, values, strict=True)) | {"run_uuid": new_id}
                    key = row["key"]
                    if table == "tags" and key == "best_in_sweep":
                        continue  # one child is the best
                    if table == "tags" and key == "mlflow.runName":
                        row["value"] = name
                    elif table == "tags" and key == "job_number":
                        row["value"] = str(number)
                    elif table == "tags" and key == "cv_fold_scores":
                        folds = json.loads(row["value"])
                        folds["cv_accuracy"] = [v + offset for v in folds["cv_accuracy"]]
                        row["value"] = json.dumps(folds)
                    elif "metrics" in table and key in ("cv_accuracy", "cv_accuracy_mean"):
                        row["value"] = row["value"] + offset
                        if table == "latest_metrics" and key == "cv_accuracy_mean":
                            scores[new_id] = (original, row["value"])
                    copied.append(tuple(row.values()))
                marks = ", ".join("?" * len(names))
                db.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", copied)
    return scores


def heart_search(tmp: Path, *extra: str) -> list[str]:
    """A random forest search on the heart data in a persistent sqlite study."""
    return [
        "-m",
        "sweeps=random_forest_optuna",
        "data=heart",
        f"data.path={HEART_CSV}",
        "mlflow.log_model=false",
        "mlflow.log_plots=false",
        f"hydra.sweeper.storage=sqlite:///{tmp}/optuna.db",
        "hydra.sweeper.study_name=heart_rf",
        "hydra.sweeper.params={model.n_estimators: 'int(interval(150,250))', "
        "model.max_depth: 'range(2,8)'}",
        *extra,
    ]


SLOW_TREES = 1500  # a trial of 1500 trees outlasts several of 5 to 8 trees


def queued_study(tmp: Path, trees: list[int]) -> str:
    """A persistent study whose first trials are queued with these tree counts (asked in this
    order; distinct, as a resume skips a job whose values a finished child ran); its storage
    URL."""
    storage = f"sqlite:///{tmp}/optuna.db"
    study = optuna.create_study(study_name="heart_rf", storage=storage, direction="maximize")
    for n in trees:
        study.enqueue_trial({"model.n_estimators": n})
    return storage


def trees_search(tmp: Path, launcher: list[str], n_trials: int) -> list[str]:
    """A search of the queued study on 2 workers of `launcher`."""
    return heart_search(
        tmp, *launcher, f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.params={{model.n_estimators: 'int(interval(5,{SLOW_TREES}))'}}",
    )  # fmt: skip


def check_asked_as_workers_free(storage: str, uri: str) -> None:
    """A search of the study queued with [SLOW_TREES, 4 fast ones] on 2 workers: every trial
    COMPLETE, its child FINISHED under one parent, and trials 2 to 4 started while the slow
    trial 0 ran (in batches of 2, trial 2 would wait for trial 0)."""
    study = optuna.load_study(study_name="heart_rf", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 5
    client = MlflowClient(uri)
    runs = [client.get_run(t.user_attrs["mlflow_run_id"]) for t in study.trials]
    assert [r.info.status for r in runs] == ["FINISHED"] * 5
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1
    slow = runs[0].info
    assert all(slow.start_time < r.info.start_time < slow.end_time for r in runs[2:])
