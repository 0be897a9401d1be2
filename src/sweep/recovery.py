"""Recovering from what a crash leaves behind: stale RUNNING runs, and resuming a sweep.

A run is stale when the process that ran it is gone. Every run records `process` =
`host:pid:start`, where start is the process's start time from /proc (so a reused pid is not
mistaken for the original process). On the same host that tells for certain whether the
process still lives; a run from another host is stale once its heartbeat (src/heartbeat.py) is
older than 3 intervals, and one without a heartbeat is left alone (it may be alive there).
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable
from functools import partial

from mlflow.entities import Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from src.ml.objectives import parse_constraints, sweep_objectives, violations
from src.sweep.racing import RACE_FOLDS
from src.sweep.search import TRIAL_TAG
from src.tracking.child_run import run_score
from src.tracking.heartbeat import STALE_INTERVALS, heartbeat_age
from src.tracking.process import PROCESS_TAG, process_identity
from src.tracking.store import (
    ATTEMPT_TAG,
    COMMAND_TAG,
    NoSweepError,
    children_of,
    find_sweeps,
    search_all_runs,
    with_retries,
)

# what an ended attempt leaves on its parent, cleared when the sweep resumes
ATTEMPT_END_TAGS = ("error_type", "error_message", "end_reason")


def liveness(run: Run, now: float | None = None) -> tuple[bool | None, str]:
    """Whether a RUNNING run's process is gone (True), alive (False) or cannot be told (None),
    and how that is known. On this host /proc tells; elsewhere, its heartbeat: stale once older
    than STALE_INTERVALS intervals. A run without a heartbeat elsewhere is never guessed at."""
    identity = run.data.tags.get(PROCESS_TAG)
    if identity and identity.split(":", 1)[0] == socket.gethostname():
        pid = int(identity.split(":", 2)[1])
        if process_identity(pid) != identity:
            return True, f"its process is gone ({identity} ended without closing the run)"
        return False, "its process is alive"
    where = f"runs on another host ({identity})" if identity else "no process recorded"
    age = heartbeat_age(run.data.tags, now)
    if age is None:
        return None, f"{where}, no heartbeat (an older version made it): cannot tell"
    seconds, interval = age
    beat = f"last heartbeat {seconds:.0f}s ago (every {interval:g}s)"
    if seconds > STALE_INTERVALS * interval:
        return True, f"{where}: {beat}, more than {STALE_INTERVALS} intervals"
    return False, f"{where}: {beat}"


def is_stale(run: Run) -> bool:
    """A RUNNING run whose process is gone, as `liveness` tells."""
    return run.info.status == "RUNNING" and liveness(run)[0] is True


def mark_stale_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """End every stale RUNNING run of the experiment FAILED, saying why; return them."""
    running = search_all_runs(client, [experiment_id], "attributes.status = 'RUNNING'")
    stale = [run for run in running if is_stale(run)]
    for run in stale:
        end_failed(client, run.info.run_id, "Stale", liveness(run)[1])
    return stale


def end_failed(client: MlflowClient, run_id: str, error_type: str, reason: str) -> None:
    """End a run nobody else will end FAILED, with why as its error tags."""
    tags = [RunTag("error_type", error_type), RunTag("error_message", reason)]
    with_retries(partial(client.log_batch, run_id, tags=tags))
    with_retries(partial(client.set_terminated, run_id, "FAILED"))


def end_orphans(client: MlflowClient, experiment_id: str, parent_id: str, attempt: str) -> None:
    """Once every job of a sweep's attempt has returned, end FAILED any child of that attempt
    (its `sweep_attempt` tag) still RUNNING: its process died and the job ran again (a Ray task
    with `max_retries`), or it was lost without a word; nothing will end it."""
    query = (
        f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'RUNNING' and "
        f"tags.{ATTEMPT_TAG} = '{attempt}'"
    )
    reason = "its job returned without ending its run (its process died)"
    for run in search_all_runs(client, [experiment_id], query):
        end_failed(client, run.info.run_id, "Orphaned", reason)


def resume_parent(client: MlflowClient, experiment_id: str, resume: str, command: str) -> Run:
    """The parent run a `sweep.resume=RUN_ID|latest` names: `latest` is the newest sweep of the
    experiment that ran the same `command` (a `sweep_command` tag); a run id must be a sweep
    parent of the experiment that ran it. Anything else is refused, saying what differs."""
    if resume == "latest":
        sweeps = find_sweeps(client, experiment_id)
        same = [run for run in sweeps if run.data.tags.get(COMMAND_TAG) == command]
        if same:
            return same[0]
        if not sweeps:
            raise NoSweepError(f"sweep.resume=latest: experiment {experiment_id} has no sweeps")
        latest = sweeps[0]
        raise NoSweepError(
            f"sweep.resume=latest: no sweep of experiment {experiment_id} ran this command; the "
            f"latest, {latest.info.run_name!r} ({latest.info.run_id}), differs: "
            f"{command_difference(latest.data.tags.get(COMMAND_TAG), command)}"
        )
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
    if run.data.tags.get(COMMAND_TAG) != command:
        raise NoSweepError(
            f"sweep.resume={resume!r} ({run.info.run_name}) ran another command: "
            f"{command_difference(run.data.tags.get(COMMAND_TAG), command)}"
        )
    return run


def command_difference(recorded: str | None, command: str) -> str:
    """What differs between a sweep's recorded command and this one, in a user's words."""
    if recorded is None:
        return "it has no recorded command (an earlier version made it); start a new sweep"
    try:
        old, new = json.loads(recorded), json.loads(command)
    except ValueError:  # a digest: the command was too long for a tag
        return "the commands differ (too long to list what differs)"
    parts = []
    if old["sweeper"] != new["sweeper"]:
        parts.append(f"sweeper {old['sweeper']} there, {new['sweeper']} here")
    for key in sorted(set(old["swept"]) | set(new["swept"])):
        there, here = old["swept"].get(key), new["swept"].get(key)
        if there != here:
            shown = [",".join(v) if v is not None else "not swept" for v in (there, here)]
            parts.append(f"{key}: {shown[0]} there, {shown[1]} here")
    only_there = sorted(set(old["fixed"]) - set(new["fixed"]))
    only_here = sorted(set(new["fixed"]) - set(old["fixed"]))
    if only_there:
        parts.append(f"only there: {' '.join(only_there)}")
    if only_here:
        parts.append(f"only here: {' '.join(only_here)}")
    return "; ".join(parts) or "the recorded command cannot be compared"


class SweepHeldError(RuntimeError):
    """A sweep cannot be resumed now: a live process holds it or runs one of its children."""


LEASE_TAG = "sweep_lease"  # on a parent: `host:pid:start token` of the attempt that holds it
# a parent's params `sweep_lease.1`, `.2`, ...: the attempts that took it, in order. A param is
# written once (MLflow refuses another value for its key: in a database store the key is part
# of the table's primary key, so of two writers at once exactly one succeeds): claiming the
# next number is the compare-and-set of the lease.
LEASE_PARAM = "sweep_lease"


def check_no_live_children(client: MlflowClient, parent: Run) -> None:
    """Refuse to resume while a RUNNING child's process lives (or cannot be told dead): the
    killed sweep's workers may still compute it, and a resume would delete and rerun it."""
    for child in children_of(client, parent, "RUNNING"):  # not every child: a sweep of 10,000
        gone, how = liveness(child)
        if gone is not True:
            raise SweepHeldError(
                f"sweep {parent.info.run_id} has a RUNNING child {child.info.run_name!r} "
                f"({child.info.run_id}) whose process may still compute it: {how} "
                f"({child.data.tags.get(PROCESS_TAG, 'no process recorded')}); wait for it "
                f"to end, or stop it, then resume"
            )


def check_not_held(parent: Run, identity: str) -> None:
    """Refuse, naming it, when a live process other than `identity` holds the parent: it is
    RUNNING and its `process` lives (or, on another host, its heartbeat is fresh)."""
    holder = parent.data.tags.get(PROCESS_TAG)
    if parent.info.status == "RUNNING" and holder != identity and liveness(parent)[0] is not True:
        raise SweepHeldError(
            f"sweep {parent.info.run_id} is held by process {holder} ({liveness(parent)[1]}): "
            f"it is running or being resumed; wait for it to end, or stop that process"
        )


def take_lease(client: MlflowClient, parent_id: str, identity: str) -> None:
    """Hold the parent for this attempt: RUNNING, with this process (`identity`) as its
    `process` and a lease token. Refused, naming the holder, while another live process holds
    it (the sweep itself still running, or another resume)."""
    parent = with_retries(lambda: client.get_run(parent_id))
    check_not_held(parent, identity)
    claim_lease(client, parent, identity)


def claim_lease(client: MlflowClient, parent: Run, identity: str) -> None:
    """Claim the attempt after the last one `parent` (as read) shows, atomically: the claim is
    the param `sweep_lease.<n>`, which only one writer can set. Refused, naming the holder,
    when the last attempt's process still holds the parent, or when another process claimed
    the same number first (two resumes that read the parent at the same moment)."""
    slots = lease_slots(parent)
    last = max(slots, default=0)
    if last and lease_held(parent, slots[last], identity):
        raise SweepHeldError(
            f"sweep {parent.info.run_id} is held by process {slots[last].split(' ')[0]} "
            f"(attempt {last}, its process lives or cannot be told gone); wait for it to end"
        )
    token = f"{identity} {uuid.uuid4().hex}"
    key = f"{LEASE_PARAM}.{last + 1}"
    try:
        with_retries(lambda: client.log_param(parent.info.run_id, key, token))
    except MlflowException as e:
        if e.error_code != "INVALID_PARAMETER_VALUE":
            raise
        held = with_retries(lambda: client.get_run(parent.info.run_id)).data.params.get(key, "")
        raise SweepHeldError(
            f"sweep {parent.info.run_id} is held by process {held.split(' ')[0] or 'unknown'}: "
            f"another resume took it at the same moment; wait for it to end"
        ) from e
    tags = [RunTag(LEASE_TAG, token), RunTag(PROCESS_TAG, identity)]
    with_retries(lambda: client.log_batch(parent.info.run_id, tags=tags))
    with_retries(lambda: client.update_run(parent.info.run_id, status="RUNNING"))


def lease_slots(parent: Run) -> dict[int, str]:
    """The attempts that claimed `parent` (`sweep_lease.<n>` params): number -> token."""
    prefix = f"{LEASE_PARAM}."
    return {
        int(key.removeprefix(prefix)): value
        for key, value in parent.data.params.items()
        if key.startswith(prefix) and key.removeprefix(prefix).isdigit()
    }


def lease_held(parent: Run, token: str, identity: str) -> bool:
    """Whether the attempt of `token` (`host:pid:start uuid`) still holds `parent`: not this
    process's, not ended (the parent no longer RUNNING under it), and its process not gone (on
    this host /proc tells; elsewhere the parent's heartbeat, once the attempt has tagged it)."""
    holder = token.split(" ")[0]
    if holder == identity:
        return False
    tagged = parent.data.tags.get(PROCESS_TAG) == holder
    if tagged and parent.info.status != "RUNNING":
        return False  # that attempt ended the parent
    if holder.split(":", 1)[0] == socket.gethostname():
        return process_identity(int(holder.split(":", 2)[1])) == holder
    return not (tagged and liveness(parent)[0] is True)


def reopen_sweep(
    client: MlflowClient,
    parent: Run,
    attempt_tags: dict[str, str],
    keep_repeats: bool,
    keep_failed: bool = False,
    keep_started: bool = False,
) -> dict[str, float | tuple[float, ...]]:
    """Prepare a parent for another attempt: the finished children's job keys and metrics are
    kept (their jobs are skipped); failed, killed or stale children are soft-deleted (they are
    rerun, and stay recoverable in MLflow's trash), and so are repeated finished children of a
    grid, so no config ends with two; a search (`keep_repeats`) keeps every finished trial, and
    a persistent study's (`keep_failed`) its failed ones too, which the study counts as ended
    (only killed and stale children are deleted: their trials are asked again); a race
    (`keep_started`) keeps every child that completed a round, whatever its status, since its
    folds go on in the next round (only those without one are deleted and run again).
    The parent then describes this attempt: RUNNING, `attempt_tags` (its process, sweep dir,
    launcher), and none of an earlier attempt's error or end tags."""
    finished: dict[str, float | tuple[float, ...]] = {}
    score = recorded_score(parent)
    for child in sorted(children_of(client, parent), key=lambda run: run.info.start_time):
        key = child.data.tags.get("job_key", "")
        done = child.info.status == "FINISHED" and bool(key)
        if done and (key not in finished or keep_repeats):
            finished.setdefault(key, score(child))
            continue
        failed = child.info.status == "FAILED" and child.data.tags.get("error_type") != "Stale"
        if keep_failed and failed:
            continue
        if keep_started and RACE_FOLDS in child.data.metrics:
            continue
        with_retries(partial(client.delete_run, child.info.run_id))
    parent_id = parent.info.run_id
    for tag in ATTEMPT_END_TAGS:
        if tag in parent.data.tags:
            with_retries(partial(client.delete_tag, parent_id, tag))
    tags = [RunTag(k, v) for k, v in (attempt_tags | {"resumed": str(len(finished))}).items()]
    with_retries(lambda: client.log_batch(parent_id, tags=tags))
    with_retries(lambda: client.update_run(parent_id, status="RUNNING"))
    return finished


def recorded_score(parent: Run) -> Callable[[Run], float | tuple[float, ...]]:
    """A finished child's result as its job returned it: the sweep's objectives, with how far
    it breaks the sweep's constraints."""
    names = [m for m, _ in sweep_objectives(parent.data.tags)]
    constraints = parse_constraints(json.loads(parent.data.tags.get("sweep_constraints", "[]")))

    def score(child: Run) -> float | tuple[float, ...]:
        metrics = child.data.metrics
        return run_score(metrics, child.info.run_id, names, violations(constraints, metrics))

    return score


def finished_trials(
    client: MlflowClient, parent: Run, trials: set[str]
) -> dict[str, float | tuple[float, ...]]:
    """The job keys and results of the parent's FINISHED children that ran these trials (their
    `optuna.trial_number`): the jobs a resumed search skips when it asks those trials again."""
    score = recorded_score(parent)
    return {
        child.data.tags["job_key"]: score(child)
        for child in children_of(client, parent, "FINISHED")
        if child.data.tags.get(TRIAL_TAG) in trials and child.data.tags.get("job_key")
    }
