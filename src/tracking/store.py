"""The MLflow store: its URI, the experiment, retries when it is busy, and the queries for runs.

Also where a run is headed (`RunTarget`), the tags every run gets, and how a failure is recorded
on any run: the pieces the child run, the parent run and recovery all share.
"""

from __future__ import annotations

import fcntl
import gc
import os
import re
import socket
import sqlite3
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from mlflow.entities import Experiment, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.entities.paged_list import PagedList
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from src.tracking.process import PROCESS_TAG, process_identity

T = TypeVar("T")
MLFLOW_TABLES = {"alembic_version", "experiments"}  # what makes a sqlite file MLflow's store
PAGE_SIZE = 1000  # runs per search page: what a page holds at once (tests/benchmarks)
ATTEMPT_TAG = "sweep_attempt"  # on a child: the attempt of its sweep that made it
COMMAND_TAG = "sweep_command"  # what a sweep ran: sweeper, swept values, fixed overrides
FOLD_SCORES_TAG = "cv_fold_scores"  # on a child: its per-fold scores as JSON, key -> scores
_INVALID_KEY_CHARS = re.compile(r"[^\w\-. /]")
_RETRY_ATTEMPTS = 6
# MLflow 3's UI opens an experiment of this kind on its training runs, not the GenAI overview
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


DEFAULT_UI_URL = "http://127.0.0.1:5000"  # what `make ui` serves


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or written; the message names the URI."""


class NoSweepError(RuntimeError):
    """No sweep to read: an unknown run, a run that is not a sweep, or an empty experiment."""


@dataclass(frozen=True)
class RunTarget:
    """Where a job's run goes: the store, the experiment, and the parent run when in a sweep."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    heartbeat_s: float = 30.0  # how often its runs record that their process lives

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to a worker, into a cluster launcher's job folder), the store's password is
        left out: the process that loads it takes the URI from MLFLOW_TRACKING_URI."""
        return {**self.__dict__, "tracking_uri": redacted(self.tracking_uri)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if uri and uri != state["tracking_uri"] and redacted(uri) == state["tracking_uri"]:
            state = {**state, "tracking_uri": uri}  # the one it was, password and all
        self.__dict__.update(state)


def check_credentials_here(target: RunTarget) -> None:
    """A job's target must hold the store's real URI: a password left out of the pickle is
    read from MLFLOW_TRACKING_URI, which must be set where the job runs."""
    if "***@" in target.tracking_uri:
        raise TrackingError(
            f"the tracking store {target.tracking_uri}'s password is not in this process's "
            f"environment: set MLFLOW_TRACKING_URI where the jobs run (the launching process "
            f"passes it to the processes it starts; a Ray cluster's nodes need it set)"
        )


def resolve_tracking_uri(configured: str) -> str:
    """MLFLOW_TRACKING_URI if set, else `configured`; a relative sqlite/file path made absolute.
    A URI with user-info turns off MLflow's own printing of run links (which would show it)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if redacted(uri) != uri:  # MLflow prints a run's link, user-info and all, as it ends one
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = Path(uri.removeprefix("sqlite:///")).resolve()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(
                f"tracking URI {redacted(uri)}: cannot create {path.parent}: {e}"
            ) from e
        return f"sqlite:///{path}"
    if "://" not in uri:  # a plain directory: MLflow's file store
        return Path(uri).resolve().as_uri()
    return uri


@contextmanager
def using_store(tracking_uri: str, experiment_id: str | None = None) -> Iterator[None]:
    """Point MLflow's process-wide state at this store while inside, then restore it exactly.

    MLflow resolves some things through a bare `MlflowClient()` (the registry's `models:/m-...`
    sources, `load_model` of a `models:/` URI, `log_model`), i.e. through the process's tracking
    URI, not the client's: without this they would read (and create) ./mlflow.db.
    `mlflow.set_tracking_uri` also writes MLFLOW_TRACKING_URI into os.environ, which would send
    every later run of this process to this store, so the environment is put back too.
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri  # private: see README

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")}
    try:
        with _use_tracking_uri(tracking_uri):
            if experiment_id is not None:  # without an active run, a LoggedModel goes here
                os.environ["MLFLOW_EXPERIMENT_ID"] = experiment_id
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def default_artifact_location(tracking_uri: str, experiment_name: str) -> str | None:
    """Artifacts of a sqlite store live beside the database (under outputs/), not in ./mlruns."""
    if not tracking_uri.startswith("sqlite:///"):
        return None  # a server or file store decides for itself
    root = Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts"
    folder = root / _INVALID_KEY_CHARS.sub("_", experiment_name)
    if not folder.resolve().is_relative_to(root.resolve()):  # settings refuse such names first
        raise TrackingError(
            f"mlflow.experiment_name={experiment_name!r} would put artifacts outside {root}"
        )
    return folder.as_uri()


def ensure_experiment(tracking_uri: str, experiment_name: str) -> str:
    """Create the store (if new) and the experiment (if missing); return the experiment id."""
    check_reachable(tracking_uri)
    with store_creation_lock(tracking_uri):
        check_sqlite_store(tracking_uri)
        return _ensure_experiment(tracking_uri, experiment_name)


def check_sqlite_store(tracking_uri: str) -> None:
    """A sqlite store's file, when it holds tables, must be an MLflow database: MLflow would
    add its own tables beside another application's, and a file that is not a database fails
    deep in SQLAlchemy. The file is only read (opened read-only), never changed."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    path = Path(tracking_uri.removeprefix("sqlite:///").partition("?")[0])
    if not path.is_file() or path.stat().st_size == 0:
        return  # MLflow creates it
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            query = "SELECT name FROM sqlite_master WHERE type = 'table'"
            tables = {str(row[0]) for row in db.execute(query)}
    except sqlite3.Error as e:
        raise TrackingError(
            f"MLflow tracking store {path} is not usable: {e} (not an SQLite database, or "
            f"damaged); not touched: point mlflow.tracking_uri at an MLflow database or a new file"
        ) from e
    if tables and not tables >= MLFLOW_TABLES:
        raise TrackingError(
            f"MLflow tracking store {path} is another application's database ({len(tables)} "
            f"tables, none of MLflow's); not touched: point mlflow.tracking_uri at an MLflow "
            f"database or a new file"
        )


@contextmanager
def store_creation_lock(tracking_uri: str) -> Iterator[None]:
    """For a sqlite store: hold an exclusive lock on the database's folder, so that processes
    creating the same new store at once do not race in its schema migration (MLflow migrates a
    new database on first use, and two migrations at once fail)."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    folder = Path(tracking_uri.removeprefix("sqlite:///")).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
    except OSError as e:
        raise TrackingError(
            f"MLflow tracking store {redacted(tracking_uri)}: cannot create its folder {folder}: "
            f"{e.strerror}"
        ) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _ensure_experiment(tracking_uri: str, experiment_name: str) -> str:
    client = MlflowClient(tracking_uri)
    try:
        experiment = with_retries(lambda: client.get_experiment_by_name(experiment_name))
        if experiment is not None:
            experiment_id = experiment.experiment_id
            if experiment.lifecycle_stage == "deleted":
                with_retries(lambda: client.restore_experiment(experiment_id))
            if EXPERIMENT_KIND_TAG not in experiment.tags:
                with_retries(
                    lambda: client.set_experiment_tag(
                        experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
                    )
                )
            return str(experiment_id)
        location = default_artifact_location(tracking_uri, experiment_name)
        try:
            return client.create_experiment(
                experiment_name,
                artifact_location=location,
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        except MlflowException:  # created meanwhile by another process
            existing = client.get_experiment_by_name(experiment_name)
            if existing is None:
                raise
            return str(existing.experiment_id)
    except MlflowException as e:
        raise TrackingError(
            redact_text(f"MLflow tracking store {tracking_uri} is not usable: {e}")
        ) from e


DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}  # by dialect


def check_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the URI, when a tracking server or a database server does not answer
    (MLflow's own client would retry for minutes before giving up)."""
    dialect = tracking_uri.partition(":")[0].partition("+")[0]
    if dialect in DATABASE_PORTS:
        _check_database_reachable(tracking_uri, DATABASE_PORTS[dialect], timeout_s)
        return
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import base64
    import urllib.error
    import urllib.request

    parts = urlsplit(tracking_uri)
    url = without_credentials(tracking_uri)
    request = urllib.request.Request(f"{url.rstrip('/')}/health")
    if parts.username is not None:  # as MLflow's client sends a URI's user-info: basic auth
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        request.add_header("Authorization", f"Basic {base64.b64encode(pair.encode()).decode()}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            pass
    except (urllib.error.URLError, OSError) as e:
        raise TrackingError(
            redact_text(f"MLflow tracking server {redacted(tracking_uri)} is unreachable: {e}")
        ) from e


def _check_database_reachable(tracking_uri: str, default_port: int, timeout_s: float) -> None:
    """A TCP connection to the database server of `tracking_uri` (none for a local socket)."""
    import socket

    parts = urlsplit(tracking_uri)
    if not parts.hostname:  # a Unix socket (host in the query, or none): local, no network
        return
    try:
        port = parts.port or default_port
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        raise TrackingError(
            redact_text(f"MLflow tracking store {redacted(tracking_uri)} is unreachable: {e}")
        ) from e


def with_retries(call: Callable[[], T], attempts: int = _RETRY_ATTEMPTS) -> T:
    """Run an MLflow call, retrying with backoff when the store is busy (e.g. sqlite locked)."""
    for attempt in range(attempts):
        try:
            return call()
        except MlflowException as e:
            if attempt == attempts - 1 or not _is_transient(e):
                raise
            time.sleep(min(0.2 * 2**attempt, 5.0))
    raise AssertionError("unreachable")


def _is_transient(error: Exception) -> bool:
    text = str(error).lower()
    return "database is locked" in text or "busy" in text or "timed out" in text


def without_credentials(uri: str) -> str:
    """`uri` with any user and password taken out (`postgresql://u:pw@host/db` ->
    `postgresql://host/db`): what a run may record of the store it went to."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


_USER_INFO = re.compile(r"(?P<scheme>[A-Za-z][\w+.-]*://)(?P<info>[^/?#@\s]*)@")


def redacted(uri: str) -> str:
    """`uri` with its password (or a user-info without one, such as a token) replaced by
    `***` (`postgresql://u:pw@host/db` -> `postgresql://u:***@host/db`): what is printed,
    tagged, logged or written of a store's URI."""
    return redact_text(uri)


def redact_text(text: str) -> str:
    """`text` with the user-info of every URI in it redacted as `redacted` does."""
    if "://" not in text:  # the pattern tries every letter of a long word: not for nothing
        return text

    def hide(found: re.Match[str]) -> str:
        user, colon, _ = found["info"].partition(":")
        return f"{found['scheme']}{user}:***@" if colon else f"{found['scheme']}***@"

    return _USER_INFO.sub(hide, text)


def ui_url(tracking_uri: str) -> str:
    """Where the MLflow UI of this store is: the tracking server itself, or the one `make ui`
    serves for a local store."""
    if tracking_uri.startswith(("http://", "https://")):
        return without_credentials(tracking_uri).rstrip("/")  # a link a browser logs in to
    return DEFAULT_UI_URL


def mlflow_key(key: str) -> str:
    """A string made into a valid MLflow param/metric/tag key."""
    return _INVALID_KEY_CHARS.sub("_", key)


def run_tags(target: RunTarget, run_name: str, extra: dict[str, str]) -> dict[str, str]:
    """Tags every run gets: name, parent link, git state, host and this process (whose end would
    leave the run orphaned)."""
    pid = os.getpid()
    tags = {MLFLOW_RUN_NAME: run_name, "host": socket.gethostname(), "pid": str(pid)}
    if (identity := process_identity(pid)) is not None:
        tags[PROCESS_TAG] = identity  # lets a later sweep tell a crashed run from a live one
    if target.parent_run_id:
        tags[MLFLOW_PARENT_RUN_ID] = target.parent_run_id
    if target.git_commit:
        tags |= {"git_commit": target.git_commit, "mlflow.source.git.commit": target.git_commit,
                 "git_dirty": str(target.git_dirty).lower()}  # fmt: skip
    return tags | extra


def record_failure(client: MlflowClient, run_id: str, error: BaseException) -> None:
    """Tag a run with the error and store its traceback as `error/traceback.txt`."""
    record_error(client, run_id, *error_parts(error))


def error_parts(error: BaseException) -> tuple[str, str, str]:
    """What a run records of an error: its type's name, its message (the name when it has
    none) and its traceback."""
    name = type(error).__name__
    return name, str(error) or name, "".join(traceback.format_exception(error))


def record_error(
    client: MlflowClient, run_id: str, error_type: str, message: str, text: str
) -> None:
    """Tag a run with an error (its type's name and message) and store `text`, its
    traceback, as `error/traceback.txt`."""
    tags = [RunTag("error_type", error_type),
            RunTag("error_message", message[:MAX_TAG_VAL_LENGTH])]  # fmt: skip
    try:
        with_retries(lambda: client.log_batch(run_id, tags=tags))
        client.log_text(run_id, text, "error/traceback.txt")
    except Exception:  # noqa: BLE001 - the run must still be ended by the caller
        pass


def search_all_runs(client: MlflowClient, experiment_ids: list[str], query: str) -> list[Run]:
    """Every run matching `query`, following MLflow's pages to the end."""
    runs: list[Run] = []
    token = None
    while True:
        with gc_paused():
            page: PagedList[Run] = with_retries(
                lambda token=token: client.search_runs(  # type: ignore[misc]
                    experiment_ids, query, max_results=PAGE_SIZE, page_token=token
                )
            )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block (as it was after): a page of runs
    from a database store builds a great many short-lived ORM objects, and the collections
    they trigger walk every run read so far: most of the time a big sweep took to read
    (tests/benchmarks/README.md)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def children_of(client: MlflowClient, parent: Run, status: str | None = None) -> list[Run]:
    """All child runs of a sweep parent (with `status`: only those, which the store selects)."""
    query = f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    query += f" and attributes.status = '{status}'" if status else ""
    return search_all_runs(client, [parent.info.experiment_id], query)


def find_sweeps(client: MlflowClient, experiment_id: str) -> list[Run]:
    """The sweep parent runs of an experiment, newest first."""
    runs = search_all_runs(client, [experiment_id], "tags.sweep = 'true'")
    return sorted(runs, key=lambda r: r.info.start_time, reverse=True)


def experiment_sweeps(client: MlflowClient, experiment_name: str | None, uri: str) -> list[Run]:
    """The sweeps of a named experiment (None: of every experiment in the store), newest first;
    an error naming the experiments that exist if there is none."""
    if experiment_name is None:
        experiments = client.search_experiments()
        runs = search_all_runs(
            client, [e.experiment_id for e in experiments], "tags.sweep = 'true'"
        )
        sweeps = sorted(runs, key=lambda r: r.info.start_time, reverse=True)
        if not sweeps:
            raise NoSweepError(f"the tracking store {uri} has no sweeps yet{_existing(client)}")
        return sweeps
    experiment = named_experiment(client, experiment_name, uri)
    sweeps = find_sweeps(client, experiment.experiment_id)
    if not sweeps:
        raise NoSweepError(
            f"experiment {experiment_name!r} has no sweeps yet ({uri}){_existing(client)}"
        )
    return sweeps


def named_experiment(client: MlflowClient, experiment_name: str, uri: str) -> Experiment:
    """The experiment of that name; an error naming the experiments that exist if none."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise NoSweepError(
            f"no experiment {experiment_name!r} in the tracking store {uri}{_existing(client)}"
        )
    return experiment


def _existing(client: MlflowClient) -> str:
    """`; experiments here: a, b` (or that there are none), for an error message."""
    names = sorted(e.name for e in client.search_experiments())
    return f"; experiments here: {', '.join(names)}" if names else "; it has no experiments"


def resolve_sweep(
    client: MlflowClient, experiment_name: str | None, run_id: str | None, uri: str
) -> Run:
    """The named run, if it has nested children (a sweep of ours, or any parent: MLflow
    autolog's GridSearchCV, Optuna's MLflowCallback, one made by hand), or the latest sweep of
    the experiment (None: of the whole store)."""
    if run_id:
        try:
            run = client.get_run(run_id)
        except MlflowException as e:
            raise NoSweepError(f"no run {run_id!r} in the tracking store {uri}") from e
        if run.data.tags.get("sweep") != "true" and not children_of(client, run):
            raise NoSweepError(
                f"run {run_id!r} ({run.info.run_name}) has no child runs: it is not a sweep"
            )
        return run
    return experiment_sweeps(client, experiment_name, uri)[0]
