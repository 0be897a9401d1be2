"""A job whose process died before it returned (killed, its node lost), as the launcher that
waited for it reports it: its child run ends FAILED with the launcher's error (a race's later
round of a block: each of its children, by the race's judge), and the sweep goes on. This runs
in the launching process, which outlives the job's."""

from __future__ import annotations

from functools import partial

from hydra.core.utils import JobReturn, JobStatus
from mlflow.entities import Param, Run
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from omegaconf import DictConfig

from src.ml.objectives import metric_names, parse_constraints, violations
from src.sweep.context import SweepContext
from src.sweep.overrides import child_run_name, job_tags
from src.sweep.progress import report_progress
from src.sweep.racing import RACE_FOLDS, RoundError, race_block, race_round
from src.sweep.search import trial_tags
from src.tracking.child_run import RunFailed, run_score
from src.tracking.process import PROCESS_TAG
from src.tracking.store import (
    ATTEMPT_TAG,
    error_parts,
    mlflow_key,
    record_failure,
    run_tags,
    with_retries,
)

END_REASON = "its process died before the job returned: the error is the launcher's"


def lost_job(ctx: SweepContext, job_config: DictConfig, error: Exception) -> JobReturn:
    """What the sweeper gets for a job the launcher lost (`job_config`: the job's config as its
    launcher composed it): its child ends FAILED with `error` (the run this attempt made for it,
    or a new FAILED child if it died before making one) and counts as a failed job, so a grid's
    job returns NaN and a search's returns the error. A job that had finished keeps its run and
    returns its metric. A race's later round of a block of configurations returns each one's
    error, for the race's judge to end its run FAILED with. The callback hands it, with its
    sweep, to our cluster launchers."""
    overrides = [str(o) for o in job_config.hydra.overrides.task]
    env = {str(k): str(v) for k, v in job_config.hydra.job.env_set.items()}
    if (block := race_block(env)) is not None:
        error_type, message, text = error_parts(error)
        message = f"({END_REASON}) {message}"
        failures = [RoundError(run_id, error_type, message, text) for run_id, _ in block]
        return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=failures)
    name = child_run_name(job_config, overrides, ctx.swept)
    client = MlflowClient(ctx.target.tracking_uri)
    race = race_round(env)
    if race is not None and race[1] is not None:  # a race's later round: its first round's run
        run: Run | None = with_retries(partial(client.get_run, race[1]))
    else:
        run = attempt_run(client, ctx, int(job_config.hydra.job.num))
    names = metric_names(job_config.sweep.metric)
    finished = run is not None and run.info.status == "FINISHED" and names[0] in run.data.metrics
    if finished and race is not None and run is not None:  # finished this round, not before
        done = run.data.metrics.get(RACE_FOLDS, 0.0)
        finished = done >= (race[0] + 1) * int(job_config.cv.folds)
    if finished and run is not None:
        constraints = parse_constraints(job_config.sweep.get("constraints"))
        broke = violations(constraints, run.data.metrics)
        value = run_score(run.data.metrics, run.info.run_id, names, broke)
        return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=value)
    if run is None or run.info.status in ("RUNNING", "FINISHED"):  # FINISHED: a round short
        run_id = record_lost_run(client, ctx, job_config, overrides, name, run, error)
        first_line = (str(error).strip() or type(error).__name__).splitlines()[0]
        report_progress(ctx, name, "FAILED", f"(its process died) {type(error).__name__}: "
                        f"{first_line[:200]}")  # fmt: skip
    else:  # the job ended its run itself (FAILED, KILLED): its error is recorded there
        run_id = run.info.run_id
    if ctx.search:  # the sweeper records the failed trial, and the run it names
        failure = RunFailed(name, run_id)
        failure.__cause__ = error
        return JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=failure)
    return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=float("nan"))


def attempt_run(client: MlflowClient, ctx: SweepContext, job_num: int) -> Run | None:
    """The child this attempt of the sweep made for job `job_num`, if it made one."""
    query = (
        f"tags.mlflow.parentRunId = '{ctx.target.parent_run_id}' and "
        f"tags.job_number = '{job_num}' and tags.{ATTEMPT_TAG} = '{ctx.attempt}'"
    )
    runs = with_retries(
        lambda: client.search_runs([ctx.target.experiment_id], query, max_results=10)
    )
    return runs[0] if runs else None


def record_lost_run(
    client: MlflowClient,
    ctx: SweepContext,
    job_config: DictConfig,
    overrides: list[str],
    name: str,
    run: Run | None,
    error: Exception,
) -> str:
    """End the lost job's run FAILED with `error` and the keys its overrides set as params;
    create it first if the job died before it did. The run's id."""
    if run is None:  # created here for a job that never ran here: no host or process of this one
        tags = job_tags(job_config, overrides, int(job_config.hydra.job.num), ctx.attempt)
        tags |= trial_tags({str(k): str(v) for k, v in job_config.hydra.job.env_set.items()})
        tags = run_tags(ctx.target, name, tags)
        for mine in ("host", "pid", PROCESS_TAG):
            tags.pop(mine, None)
        target = ctx.target
        run = with_retries(
            lambda: client.create_run(target.experiment_id, run_name=name, tags=tags)
        )
    run_id = run.info.run_id
    typed = [o.lstrip("+~").partition("=") for o in overrides if "=" in o]
    params = [
        Param(mlflow_key(key), value[:MAX_PARAM_VAL_LENGTH])
        for key, _, value in typed
        if not key.startswith(("hydra.", "sweep.")) and key not in run.data.params
    ]
    with_retries(lambda: client.log_batch(run_id, params=params))
    with_retries(lambda: client.set_tag(run_id, "end_reason", END_REASON))
    record_failure(client, run_id, error)
    with_retries(lambda: client.set_terminated(run_id, "FAILED"))
    return run_id
