"""Recovering from what a crash leaves behind: stale RUNNING runs, and resuming a sweep.

A run is stale when the process that ran it is gone. Every run records `process` =
`host:pid:start`, where start is the process's start time from /proc (so a reused pid is not
mistaken for the original process). On the same host that tells for certain whether the
process still lives; runs from another host are left alone (they may be alive there).
"""

from __future__ import annotations

import socket
from functools import partial

from mlflow.entities import Run, RunTag
from mlflow.tracking import MlflowClient

from src.store import (
    PROCESS_TAG,
    NoSweepError,
    children_of,
    find_sweeps,
    process_identity,
    search_all_runs,
    with_retries,
)


def is_stale(run: Run) -> bool:
    """A RUNNING run whose process, on this host, no longer exists."""
    identity = run.data.tags.get(PROCESS_TAG)
    if run.info.status != "RUNNING" or not identity:
        return False
    host, pid, _ = identity.split(":", 2)
    if host != socket.gethostname():
        return False  # cannot tell from here
    return process_identity(int(pid)) != identity


def mark_stale_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """End every stale RUNNING run of the experiment FAILED, saying why; return them."""
    running = search_all_runs(client, [experiment_id], "attributes.status = 'RUNNING'")
    stale = [run for run in running if is_stale(run)]
    for run in stale:
        reason = f"its process {run.data.tags[PROCESS_TAG]} ended without closing the run"
        tags = [RunTag("error_type", "Stale"), RunTag("error_message", reason)]
        run_id = run.info.run_id
        with_retries(partial(client.log_batch, run_id, tags=tags))
        with_retries(partial(client.set_terminated, run_id, "FAILED"))
    return stale


def resume_parent(client: MlflowClient, experiment_id: str, resume: str) -> Run:
    """The parent run a `sweep.resume=RUN_ID|latest` names, checked to be a sweep."""
    if resume == "latest":
        sweeps = find_sweeps(client, experiment_id)
        if not sweeps:
            raise NoSweepError(f"sweep.resume=latest: experiment {experiment_id} has no sweeps")
        return sweeps[0]
    try:
        run = client.get_run(resume)
    except Exception as e:  # noqa: BLE001 - any lookup failure means the same to the user
        raise NoSweepError(f"sweep.resume={resume!r}: no such run ({e})") from e
    if run.data.tags.get("sweep") != "true":
        raise NoSweepError(f"sweep.resume={resume!r} ({run.info.run_name}) is not a sweep parent")
    if run.info.experiment_id != experiment_id:
        raise NoSweepError(
            f"sweep.resume={resume!r} belongs to experiment {run.info.experiment_id}"
        )
    return run


def reopen_sweep(client: MlflowClient, parent: Run) -> dict[str, float]:
    """Prepare a parent for another attempt: the finished children's job keys and metrics are
    kept (their jobs are skipped); failed, killed or stale children are soft-deleted (they are
    rerun, and stay recoverable in MLflow's trash) so no config ends with two children."""
    finished: dict[str, float] = {}
    metric = parent.data.tags.get("sweep_metric", "cv_accuracy_mean")
    for child in children_of(client, parent):
        key = child.data.tags.get("job_key")
        if child.info.status == "FINISHED" and key is not None and key not in finished:
            finished[key] = child.data.metrics.get(metric, float("nan"))
        else:
            with_retries(partial(client.delete_run, child.info.run_id))
    with_retries(lambda: client.update_run(parent.info.run_id, status="RUNNING"))
    with_retries(lambda: client.set_tag(parent.info.run_id, "resumed", str(len(finished))))
    return finished
