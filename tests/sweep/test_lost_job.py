"""A job whose process died before it returned, as a cluster launcher reports it: its child
ends FAILED with the launcher's error (made if the job died before making it), in process
against a real store; and children left RUNNING after every job returned are ended."""

from __future__ import annotations

import math
import time
from functools import partial

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobStatus
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, open_dict

from hydra_plugins.sweeps_cluster_launchers import handle_lost_jobs
from hydra_plugins.sweeps_cluster_launchers import lost_job as launchers_lost_job
from hydra_plugins.sweeps_race_sweeper import block_overrides
from src.sweep.context import SweepContext
from src.sweep.lost_job import END_REASON, lost_job
from src.sweep.progress import PROGRESS_FILE
from src.sweep.recovery import end_orphans
from src.tracking.child_run import RunFailed
from src.tracking.process import PROCESS_TAG
from src.tracking.store import ATTEMPT_TAG, RunTarget

from ..helpers import REPO

OVERRIDES = ["model=knn", "model.n_neighbors=7", "data=iris"]


def job_config(num: int, *extra: str) -> DictConfig:
    """Job `num`'s config with its `hydra` node, as a launcher composes it."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*OVERRIDES, *extra], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.job.num = num
    return cfg


@pytest.fixture
def sweep(tracking_uri, tmp_path):
    """A parent run and its sweep context (`start()`)."""
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("iris-classification")
    parent = client.create_run(experiment, tags={"sweep": "true"}).info.run_id

    def start(search: bool = False) -> SweepContext:
        target = RunTarget(tracking_uri, experiment, parent, None, None)
        ctx = SweepContext(target, str(tmp_path), 3, time.time() - 1, None, ("model.n_neighbors",),
                           search)  # fmt: skip
        return ctx

    return client, start


def test_a_job_lost_before_its_run_existed_gets_a_failed_child(sweep, tmp_path) -> None:
    client, start = sweep
    ctx = start()
    returned = lost_job(ctx, job_config(2), RuntimeError("node-3 lost"))
    assert returned.status == JobStatus.COMPLETED and math.isnan(returned.return_value)  # a grid
    (child,) = client.search_runs([ctx.target.experiment_id], "tags.job_number = '2'")
    assert child.info.status == "FAILED" and child.info.run_name == "knn n_neighbors=7"
    tags = child.data.tags
    assert tags["mlflow.parentRunId"] == ctx.target.parent_run_id
    assert tags["error_type"] == "RuntimeError" and tags["error_message"] == "node-3 lost"
    assert tags["end_reason"] == END_REASON and tags["model"] == "knn"
    assert tags[ATTEMPT_TAG] == ctx.attempt
    assert "host" not in tags and PROCESS_TAG not in tags  # it never ran in this process
    assert child.data.params == {"model": "knn", "model.n_neighbors": "7", "data": "iris"}
    assert (tmp_path / PROGRESS_FILE).read_text() == "FAILED\tknn n_neighbors=7\n"


def job_child(client: MlflowClient, ctx: SweepContext, num: int) -> str:
    """A RUNNING child that job `num` of this attempt made (as its worker would); its id."""
    tags = {"mlflow.parentRunId": ctx.target.parent_run_id, "job_number": str(num),
            ATTEMPT_TAG: ctx.attempt}  # fmt: skip
    return client.create_run(ctx.target.experiment_id, tags=tags).info.run_id


def test_a_lost_search_job_ends_its_running_child_and_fails_its_trial(sweep) -> None:
    client, start = sweep
    ctx = start(search=True)
    running = job_child(client, ctx, 0)
    returned = lost_job(ctx, job_config(0), ConnectionError("worker died"))
    assert returned.status == JobStatus.FAILED
    with pytest.raises(RunFailed) as error:
        _ = returned.return_value  # what the sweeper tells its study: the run, and why
    assert error.value.run_id == running
    assert isinstance(error.value.__cause__, ConnectionError)
    run = client.get_run(running)
    assert run.info.status == "FAILED" and run.data.tags["error_type"] == "ConnectionError"


def test_a_finished_job_whose_process_died_after_keeps_its_run(sweep) -> None:
    client, start = sweep
    ctx = start()
    done = job_child(client, ctx, 1)
    client.log_metric(done, "cv_accuracy_mean", 0.91)
    client.set_terminated(done, "FINISHED")
    returned = lost_job(ctx, job_config(1), RuntimeError("lost on the way back"))
    assert returned.return_value == 0.91 and returned.return_value.run_id == done
    assert client.get_run(done).info.status == "FINISHED"
    assert len(client.search_runs([ctx.target.experiment_id])) == 2  # no new child


def test_without_the_apps_handler_the_launchers_error_is_raised(sweep) -> None:
    _, start = sweep
    handle_lost_jobs(None)  # another app, or a launch this app's callback did not open
    with pytest.raises(RuntimeError, match="no sweep"):
        launchers_lost_job(job_config(0), RuntimeError("no sweep"))
    ctx = start()
    handle_lost_jobs(partial(lost_job, ctx))  # as the callback hands it over
    try:
        returned = launchers_lost_job(job_config(0), RuntimeError("node-3 lost"))
    finally:
        handle_lost_jobs(None)
    assert returned.status == JobStatus.COMPLETED and math.isnan(returned.return_value)


def test_children_of_this_attempt_still_running_at_the_end_are_ended(sweep) -> None:
    client, start = sweep
    ctx = start()
    parent = {"mlflow.parentRunId": ctx.target.parent_run_id}
    experiment = ctx.target.experiment_id
    earlier = client.create_run(experiment, tags=parent | {ATTEMPT_TAG: "an earlier one"})
    orphan = client.create_run(experiment, tags=parent | {ATTEMPT_TAG: ctx.attempt}).info.run_id
    end_orphans(client, experiment, str(ctx.target.parent_run_id), ctx.attempt)
    assert client.get_run(orphan).info.status == "FAILED"
    assert client.get_run(orphan).data.tags["error_type"] == "Orphaned"
    assert client.get_run(earlier.info.run_id).info.status == "RUNNING"  # not this attempt's


def test_a_lost_later_round_of_a_pruned_trial_fails_its_one_child(sweep) -> None:
    """A pruned search's later-round job (a trial's) has a new job number; its child is the
    run its first round made (named in the job's environment): that run ends FAILED, no second
    child is made. A run FINISHED by the round before (the job died before it reopened it) is
    a round short: FAILED too; one that holds this round's folds keeps its result."""
    client, start = sweep
    ctx = start()
    first = job_child(client, ctx, 0)  # made by round 1 (job 0); round 2 is job 7, round 3 job 9
    client.log_metric(first, "cv_accuracy_mean", 0.9)
    client.log_metric(first, "race_folds", 10)  # two rounds of 5 folds done
    client.set_terminated(first, "FINISHED")
    race = ["++hydra.job.env_set.HYDRA_RACE_RUN=" + first]
    kept = lost_job(ctx, job_config(7, "++hydra.job.env_set.HYDRA_RACE_ROUND=1", *race), OSError())
    assert kept.return_value == 0.9 and client.get_run(first).info.status == "FINISHED"
    lost = lost_job(ctx, job_config(9, "++hydra.job.env_set.HYDRA_RACE_ROUND=2", *race), OSError())
    assert math.isnan(lost.return_value)  # a grid's failed job
    assert client.get_run(first).info.status == "FAILED"
    assert len(client.search_runs([ctx.target.experiment_id])) == 2  # the parent and the child


def test_a_lost_later_round_of_a_raced_grid_returns_each_configurations_error(sweep) -> None:
    """A raced grid's later round runs a block of configurations in one job: lost, it returns
    the launcher's error for each of them, which the race's judge records on their runs (see
    test_race); no run is made or touched here."""
    client, start = sweep
    ctx = start()
    runs = [job_child(client, ctx, n) for n in (0, 1)]
    other = [*OVERRIDES[:-2], "model.n_neighbors=9", "data=iris"]
    block = block_overrides([(runs[0], OVERRIDES), (runs[1], other)], 3)
    returned = lost_job(ctx, job_config(12, *block[len(OVERRIDES) :]), OSError("node-2 lost"))
    errors = returned.return_value
    assert [e.run_id for e in errors] == runs
    assert {e.error_type for e in errors} == {"OSError"}
    assert all(e.message == f"({END_REASON}) node-2 lost" for e in errors)
    assert [client.get_run(r).info.status for r in runs] == ["RUNNING", "RUNNING"]
    assert len(client.search_runs([ctx.target.experiment_id])) == 3  # the parent, two children
