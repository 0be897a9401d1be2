"""One job's MLflow run: created and always ended, with its params, metrics, artifacts and model."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache, partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import (
    MAX_ENTITIES_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_TAG_VAL_LENGTH,
)
from omegaconf import DictConfig, ListConfig, OmegaConf

from src.tracking.heartbeat import beating, first_beat
from src.tracking.interrupts import remembering_sigint, stop_requests
from src.tracking.store import (
    FOLD_SCORES_TAG,
    RunTarget,
    mlflow_key,
    record_failure,
    run_tags,
    using_store,
    with_retries,
)

MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "cloudpickle", "numpy", "pandas", "scipy")


def _drop_chosen_format_warning(record: logging.LogRecord) -> bool:
    # `mlflow.model_format` is an explicit choice (README: cloudpickle vs skops), so MLflow's
    # advice against pickle formats, repeated for every child, is dropped; nothing else is.
    return not record.getMessage().startswith("Saving scikit-learn models in the pickle")


logging.getLogger("mlflow.sklearn").addFilter(_drop_chosen_format_warning)


def flatten_config(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as `dotted.key -> value` strings: the keys a user types in overrides."""
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, DictConfig):
            for key in node:
                walk(node[key], f"{prefix}{key!s}.")
        else:
            value = OmegaConf.to_container(node) if isinstance(node, ListConfig) else node
            flat[mlflow_key(prefix[:-1])] = "None" if value is None else str(value)

    walk(cfg, "")
    return flat


class RunScore(float):
    """A job's selection metric that knows the run it was recorded in: a float, as Hydra's
    sweepers expect, whose `run_id` a search records on its trial; in a race also the
    selection metric's fold scores so far and the folds' training and test rows; with
    sweep.constraints how far the run breaks each (`violations` by the constraint's text, > 0
    broken: what a search tells Optuna); a race's first round also every fold metric's scores
    (`fold_scores`: cv_<name> -> values), the folds its judge appends the next rounds to."""

    run_id: str
    folds: tuple[float, ...]
    sizes: tuple[int, int]
    violations: dict[str, float]
    fold_scores: dict[str, list[float]]

    def __new__(
        cls,
        value: float,
        run_id: str,
        folds: tuple[float, ...] = (),
        sizes: tuple[int, int] = (0, 0),
        violations: Mapping[str, float] | None = None,
        fold_scores: Mapping[str, list[float]] | None = None,
    ) -> RunScore:
        score = super().__new__(cls, value)
        score.run_id, score.folds, score.sizes = run_id, tuple(folds), sizes
        score.violations = dict(violations or {})
        score.fold_scores = dict(fold_scores or {})
        return score

    def __reduce__(self) -> tuple[type[RunScore], tuple[Any, ...]]:
        """Pickled (to and from joblib workers) with its run, folds and violations."""
        return RunScore, (
            float(self), self.run_id, self.folds, self.sizes, self.violations, self.fold_scores,
        )  # fmt: skip


class RunScores(tuple[float, ...]):
    """A multi-objective job's values, one per objective (as Hydra's Optuna sweeper takes a
    multi-objective task's return), that know their run and their constraints' violations."""

    run_id: str
    violations: dict[str, float]

    def __new__(
        cls, values: tuple[float, ...], run_id: str, violations: Mapping[str, float] | None = None
    ) -> RunScores:
        scores = super().__new__(cls, tuple(float(v) for v in values))
        scores.run_id, scores.violations = run_id, dict(violations or {})
        return scores

    def __reduce__(self) -> tuple[type[RunScores], tuple[Any, ...]]:
        """Pickled (to and from joblib workers) with its run and violations."""
        return RunScores, (tuple(self), self.run_id, self.violations)

    def __format__(self, spec: str) -> str:
        return ", ".join(format(v, spec) for v in self)


def run_score(
    metrics: Mapping[str, float],
    run_id: str,
    metric_names: Sequence[str],
    violations: Mapping[str, float] | None = None,
) -> RunScore | RunScores:
    """What a job returns for a run that recorded `metrics`: its one objective's value, or one
    value per objective (a metric not recorded: NaN), with its constraints' `violations`."""
    values = tuple(float(metrics.get(m, math.nan)) for m in metric_names)
    if len(values) == 1:
        return RunScore(values[0], run_id, violations=violations)
    return RunScores(values, run_id, violations)


def node_tags() -> dict[str, str]:
    """Which cluster node runs this job: the Ray node (id, address) in a Ray worker, the SLURM
    job and node under SLURM; empty elsewhere (the `host` tag names the machine)."""
    tags = {}
    ray = sys.modules.get("ray")  # a Ray worker has imported it; nothing else here does
    if ray is not None and ray.is_initialized():
        tags["ray.node_id"] = str(ray.get_runtime_context().get_node_id())
        tags["ray.node_ip"] = str(ray.util.get_node_ip_address())
    slurm = {"SLURM_JOB_ID": "slurm.job_id", "SLURMD_NODENAME": "slurm.node"}
    return tags | {tag: os.environ[name] for name, tag in slurm.items() if name in os.environ}


class RunFailed(RuntimeError):
    """A job's run ended FAILED (or KILLED) by the error it was raised from; `run_id` names the
    run, which a search records on its trial."""

    def __init__(self, run_name: str, run_id: str, status: str = "FAILED") -> None:
        self.run_id, self.status = run_id, status
        super().__init__(
            f"run {run_name!r} ({run_id}) is {status}; its traceback is the artifact "
            f"error/traceback.txt"
        )


@contextmanager
def job_run(
    target: RunTarget, run_name: str, tags: dict[str, str], run_id: str | None = None
) -> Iterator[str]:
    """Create a run (nested when `target` has a parent), or reopen `run_id` (RUNNING again, in
    this process: a pruned search's later round), yield its id, and always end it.

    An exception inside marks the run FAILED with the exception's type and message as tags and
    the traceback as an artifact, then raises `RunFailed` from the error; an interrupt marks it
    KILLED, also one that reached here as another error (see `interrupts`), and goes on.
    """
    client = MlflowClient(target.tracking_uri)
    tags = run_tags(target, run_name, tags | first_beat(target.heartbeat_s))
    if run_id is None:
        run = with_retries(
            lambda: client.create_run(target.experiment_id, run_name=run_name, tags=tags)
        )
        run_id = run.info.run_id
    else:
        reopened = run_id
        with_retries(
            lambda: client.log_batch(reopened, tags=[RunTag(k, v) for k, v in tags.items()])
        )
        with_retries(lambda: client.update_run(reopened, status="RUNNING"))
    stops = stop_requests()
    try:
        with remembering_sigint(), beating(target.tracking_uri, run_id, target.heartbeat_s):
            yield run_id
    except BaseException as e:
        interrupted = isinstance(e, (KeyboardInterrupt, SystemExit)) or stop_requests() > stops
        status = "KILLED" if interrupted else "FAILED"
        record_failure(client, run_id, e)
        with_retries(lambda: client.set_terminated(run_id, status))
        if isinstance(e, Exception):  # an interrupt goes on as what it is
            raise RunFailed(run_name, run_id, status) from e
        raise
    with_retries(lambda: client.set_terminated(run_id, "FINISHED"))


def log_results(
    client: MlflowClient,
    run_id: str,
    params: dict[str, str],
    metrics: dict[str, float],
    artifact_dir: Path,
    model_id: str | None = None,
    fold_scores: dict[str, list[float]] | None = None,
    tags: dict[str, str] | None = None,
    fold_tag: bool = True,
) -> None:
    """Log params, metrics and `tags` in one batch, and the artifact folder in one upload; with
    `model_id`, the metrics are also the logged model's. `fold_scores` are logged one value per
    step (the fold's index), and again as the fold-scores tag if `fold_tag` (a race's first
    round: its last round writes the tag)."""
    long_values = {k: v for k, v in params.items() if len(v) > MAX_PARAM_VAL_LENGTH}
    now = int(time.time() * 1000)
    batch_params = [Param(k, v[:MAX_PARAM_VAL_LENGTH]) for k, v in params.items()]
    batch_tags = [RunTag(f"param_truncated.{k}", "true") for k in long_values]
    batch_tags += [RunTag(k, v) for k, v in (tags or {}).items()]
    batch_tags += fold_scores_tag(fold_scores or {}) if fold_tag else []
    for key, value in long_values.items():
        (artifact_dir / "params").mkdir(parents=True, exist_ok=True)
        (artifact_dir / "params" / f"{key}.txt").write_text(value)
    batch_metrics = [Metric(k, float(v), now, 0, model_id=model_id) for k, v in metrics.items()]
    batch_metrics += [
        Metric(key, float(value), now, step, model_id=model_id)
        for key, values in (fold_scores or {}).items()
        for step, value in enumerate(values)
    ]
    # one batch holds at most MAX_ENTITIES_PER_BATCH metrics, params and tags together: many
    # repeated folds go on in further batches
    first = max(0, MAX_ENTITIES_PER_BATCH - len(batch_params) - len(batch_tags))
    with_retries(
        lambda: client.log_batch(
            run_id, metrics=batch_metrics[:first], params=batch_params, tags=batch_tags
        )  # fmt: skip
    )
    for start in range(first, len(batch_metrics), MAX_ENTITIES_PER_BATCH):
        chunk = batch_metrics[start : start + MAX_ENTITIES_PER_BATCH]
        with_retries(partial(client.log_batch, run_id, metrics=chunk))
    with_retries(lambda: client.log_artifacts(run_id, str(artifact_dir)))


def fold_scores_tag(scores: dict[str, list[float]]) -> list[RunTag]:
    """The per-fold scores again as one tag (`FOLD_SCORES_TAG`: JSON, key -> scores in step
    order), so that a summary reads every child's folds in its search for the children, not in
    one metric-history call per child (10,000 calls for a sweep of 10,000); none when they do
    not fit in a tag (the histories are read then)."""
    value = json.dumps(scores, separators=(",", ":"))
    return [RunTag(FOLD_SCORES_TAG, value)] if scores and len(value) <= MAX_TAG_VAL_LENGTH else []


def fold_values(client: MlflowClient, run_id: str, key: str) -> list[float]:
    """The run's per-fold `key` scores as logged, in step order."""
    history = with_retries(partial(client.get_metric_history, run_id, key))
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def log_round(
    client: MlflowClient,
    run_id: str,
    new: dict[str, list[float]],
    so_far: dict[str, list[float]],
    round_index: int,
    folds: int,
    last: bool,
) -> None:
    """A race round on its run: the round's fold scores at the steps after the earlier rounds',
    `<key>_mean` and `<key>_std` over every fold so far and `race_folds` at step = the round;
    with its `last` round, every fold again as the fold-scores tag (written once: a tag is a
    commit of its own in MLflow's store, and a race may run thousands of rounds of children)."""
    now = int(time.time() * 1000)
    start = round_index * folds
    metrics = [
        Metric(key, float(value), now, start + i)
        for key, values in new.items()
        for i, value in enumerate(values)
    ]
    for key, values in so_far.items():
        metrics.append(Metric(f"{key}_mean", float(np.mean(values)), now, round_index))
        metrics.append(Metric(f"{key}_std", float(np.std(values)), now, round_index))
    metrics.append(Metric("race_folds", float(start + folds), now, round_index))
    # one write a round; the last round's fold-scores tag with the last of the metrics
    size = MAX_ENTITIES_PER_BATCH - 1  # a batch's entities, the tag's place kept
    chunks = [metrics[first : first + size] for first in range(0, len(metrics), size)]
    for n, chunk in enumerate(chunks, 1):
        tags = fold_scores_tag(so_far) if last and n == len(chunks) else []
        with_retries(partial(client.log_batch, run_id, metrics=chunk, tags=tags))


def log_sklearn_model(
    target: RunTarget,
    run_id: str,
    pipeline: Any,
    input_example: Any,
    fmt: str,
    params: dict[str, str] | None = None,
    predict_fn: str = "predict",
) -> str:
    """Log the fitted pipeline as the MLflow model `model` (explicit requirements, `params` as
    the model's params; its pyfunc, and so `mlflow models serve`, answers `predict_fn`);
    return the logged model's id."""
    from mlflow.models import infer_signature

    signature = infer_signature(input_example, getattr(pipeline, predict_fn)(input_example))
    skops_trusted = None
    if fmt == "skops":
        import skops.io

        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "model.skops"
            skops.io.dump(pipeline, probe)
            skops_trusted = skops.io.get_untrusted_types(file=probe)
    with using_store(target.tracking_uri, target.experiment_id):
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            run_id=run_id,
            signature=signature,
            input_example=input_example,
            serialization_format=fmt,
            pyfunc_predict_fn=predict_fn,
            skops_trusted_types=skops_trusted,
            pip_requirements=model_requirements(),
            params={k: v[:MAX_PARAM_VAL_LENGTH] for k, v in (params or {}).items()},
        )
    return str(info.model_id)


@cache
def model_requirements() -> list[str]:
    """Pinned requirements of a logged model, given explicitly (MLflow would infer them by
    importing the model in a subprocess, for every child)."""
    return [f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS]
