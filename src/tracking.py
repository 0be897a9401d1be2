"""Everything that writes to MLflow: the store, the experiment, and one job's run."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH
from omegaconf import DictConfig, ListConfig, OmegaConf

if TYPE_CHECKING:
    from src.sweep import RunTarget

T = TypeVar("T")
MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "cloudpickle", "numpy", "pandas", "scipy")
_INVALID_KEY_CHARS = re.compile(r"[^\w\-. /]")
_RETRY_ATTEMPTS = 6
# MLflow 3's UI opens an experiment of this kind on its training runs, not the GenAI overview
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def _drop_chosen_format_warning(record: logging.LogRecord) -> bool:
    # `mlflow.model_format` is an explicit choice (README: cloudpickle vs skops), so MLflow's
    # advice against pickle formats, repeated for every child, is dropped; nothing else is.
    return not record.getMessage().startswith("Saving scikit-learn models in the pickle")


logging.getLogger("mlflow.sklearn").addFilter(_drop_chosen_format_warning)


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or written; the message names the URI."""


def resolve_tracking_uri(configured: str) -> str:
    """MLFLOW_TRACKING_URI if set, else `configured`; a relative sqlite/file path made absolute."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = Path(uri.removeprefix("sqlite:///")).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if "://" not in uri:  # a plain directory: MLflow's file store
        return Path(uri).resolve().as_uri()
    return uri


def default_artifact_location(tracking_uri: str, experiment_name: str) -> str | None:
    """Artifacts of a sqlite store live beside the database (under outputs/), not in ./mlruns."""
    if not tracking_uri.startswith("sqlite:///"):
        return None  # a server or file store decides for itself
    root = Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts"
    return (root / _INVALID_KEY_CHARS.sub("_", experiment_name)).as_uri()


def ensure_experiment(tracking_uri: str, experiment_name: str) -> str:
    """Create the store (if new) and the experiment (if missing); return the experiment id."""
    check_reachable(tracking_uri)
    client = MlflowClient(tracking_uri)
    try:
        experiment = with_retries(lambda: client.get_experiment_by_name(experiment_name))
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                with_retries(lambda: client.restore_experiment(experiment.experiment_id))
            if EXPERIMENT_KIND_TAG not in experiment.tags:
                with_retries(
                    lambda: client.set_experiment_tag(
                        experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
                    )
                )
            return experiment.experiment_id
        location = default_artifact_location(tracking_uri, experiment_name)
        try:
            return client.create_experiment(
                experiment_name,
                artifact_location=location,
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        except MlflowException as e:  # created meanwhile by another process
            existing = client.get_experiment_by_name(experiment_name)
            if existing is None:
                raise
            del e
            return existing.experiment_id
    except MlflowException as e:
        raise TrackingError(f"MLflow tracking store {tracking_uri} is not usable: {e}") from e


def check_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the URI, when a tracking server does not answer (MLflow's own client
    would retry for minutes before giving up)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout_s):
            pass
    except (urllib.error.URLError, OSError) as e:
        raise TrackingError(f"MLflow tracking server {tracking_uri} is unreachable: {e}") from e


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


def flatten_config(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as `dotted.key -> value` strings: the keys a user types in overrides."""
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, DictConfig):
            for key in node:
                walk(node[key], f"{prefix}{key}.")
        else:
            value = OmegaConf.to_container(node) if isinstance(node, ListConfig) else node
            flat[mlflow_key(prefix[:-1])] = "None" if value is None else str(value)

    walk(cfg, "")
    return flat


def mlflow_key(key: str) -> str:
    """A string made into a valid MLflow param/metric/tag key."""
    return _INVALID_KEY_CHARS.sub("_", key)


@cache
def git_info() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout the code runs from, or (None, None) outside git."""
    cwd = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit.stdout.strip(), bool(status.stdout.strip())


def process_identity(pid: int) -> str | None:
    """`host:pid:start` of a live process on this host (start: its start time in clock ticks
    since boot, from /proc, so a reused pid does not pass for the original), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    start = stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counted after the name
    return f"{socket.gethostname()}:{pid}:{start}"


def run_tags(
    target: RunTarget, run_name: str, extra: dict[str, str], pid: int | None = None
) -> dict[str, str]:
    """Tags every run gets: name, parent link, git state, host and process (`pid`, by default
    this one: the process whose end would leave the run orphaned)."""
    pid = os.getpid() if pid is None else pid
    tags = {MLFLOW_RUN_NAME: run_name, "host": socket.gethostname(), "pid": str(pid)}
    if (identity := process_identity(pid)) is not None:
        tags["process"] = identity  # lets a later sweep tell a crashed run from a live one
    if target.parent_run_id:
        tags[MLFLOW_PARENT_RUN_ID] = target.parent_run_id
    if target.git_commit:
        tags |= {"git_commit": target.git_commit, "mlflow.source.git.commit": target.git_commit,
                 "git_dirty": str(target.git_dirty).lower()}  # fmt: skip
    return tags | extra


@contextmanager
def job_run(target: RunTarget, run_name: str, tags: dict[str, str]) -> Iterator[str]:
    """Create a run (nested when `target` has a parent), yield its id, and always end it.

    An exception inside marks the run FAILED with the exception's type and message as tags and
    the traceback as an artifact, then propagates; an interrupt marks it KILLED.
    """
    client = MlflowClient(target.tracking_uri)
    run = with_retries(
        lambda: client.create_run(
            target.experiment_id, run_name=run_name, tags=run_tags(target, run_name, tags)
        )
    )
    run_id = run.info.run_id
    try:
        yield run_id
    except BaseException as e:
        status = "KILLED" if isinstance(e, (KeyboardInterrupt, SystemExit)) else "FAILED"
        record_failure(client, run_id, e)
        with_retries(lambda: client.set_terminated(run_id, status))
        raise
    with_retries(lambda: client.set_terminated(run_id, "FINISHED"))


def record_failure(client: MlflowClient, run_id: str, error: BaseException) -> None:
    """Tag a run with the error and store its traceback as `error/traceback.txt`."""
    text = "".join(traceback.format_exception(error))
    message = str(error) or type(error).__name__
    tags = [RunTag("error_type", type(error).__name__),
            RunTag("error_message", message[:MAX_TAG_VAL_LENGTH])]  # fmt: skip
    try:
        with_retries(lambda: client.log_batch(run_id, tags=tags))
        client.log_text(run_id, text, "error/traceback.txt")
    except Exception:  # noqa: BLE001 - the run must still be ended by the caller
        pass


def log_results(
    client: MlflowClient,
    run_id: str,
    params: dict[str, str],
    metrics: dict[str, float],
    artifact_dir: Path,
    model_id: str | None = None,
) -> None:
    """Log params and metrics in one batch, and the artifact folder in one upload; with
    `model_id`, the metrics are also the logged model's."""
    long_values = {k: v for k, v in params.items() if len(v) > MAX_PARAM_VAL_LENGTH}
    now = int(time.time() * 1000)
    batch_params = [Param(k, v[:MAX_PARAM_VAL_LENGTH]) for k, v in params.items()]
    batch_tags = [RunTag(f"param_truncated.{k}", "true") for k in long_values]
    for key, value in long_values.items():
        (artifact_dir / "params").mkdir(parents=True, exist_ok=True)
        (artifact_dir / "params" / f"{key}.txt").write_text(value)
    batch_metrics = [Metric(k, float(v), now, 0, model_id=model_id) for k, v in metrics.items()]
    with_retries(
        lambda: client.log_batch(
            run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags
        )  # fmt: skip
    )
    with_retries(lambda: client.log_artifacts(run_id, str(artifact_dir)))


def log_sklearn_model(
    target: RunTarget,
    run_id: str,
    pipeline: Any,
    input_example: Any,
    fmt: str,
    params: dict[str, str] | None = None,
) -> str:
    """Log the fitted pipeline as the MLflow model `model` (explicit requirements, `params` as
    the model's params); return the logged model's id."""
    from mlflow.models import infer_signature

    signature = infer_signature(input_example, pipeline.predict(input_example))
    skops_trusted = None
    if fmt == "skops":
        import skops.io

        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "model.skops"
            skops.io.dump(pipeline, probe)
            skops_trusted = skops.io.get_untrusted_types(file=probe)
    with fluent_target(target):
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            run_id=run_id,
            signature=signature,
            input_example=input_example,
            serialization_format=fmt,
            skops_trusted_types=skops_trusted,
            pip_requirements=model_requirements(),
            params={k: v[:MAX_PARAM_VAL_LENGTH] for k, v in (params or {}).items()},
        )
    return info.model_id


@contextmanager
def fluent_target(target: RunTarget) -> Iterator[None]:
    """Point MLflow's fluent API (which `log_model` uses) at `target` for one call, then restore
    it exactly: `mlflow.set_tracking_uri` also writes MLFLOW_TRACKING_URI into os.environ, which
    would send every later run of this process to this store."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")}
    try:
        with _use_tracking_uri(target.tracking_uri):
            # without an active run, a LoggedModel goes to this experiment (default: "0")
            os.environ["MLFLOW_EXPERIMENT_ID"] = target.experiment_id
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@cache
def model_requirements() -> list[str]:
    """Pinned requirements of a logged model, given explicitly (inference costs ~5 s a model)."""
    return [f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS]
