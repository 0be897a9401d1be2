"""A sweep's parent run: opened (new, or reopened to resume) before any job starts, and closed
at the end with the summary, the search sweeper's verdict and the registry gate."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH
from omegaconf import DictConfig

from src.analysis.ranking import SweepSummary, more_folds_hint, race_counts, race_note
from src.analysis.registry import default_model_name, describe, register_best
from src.analysis.report import summarize_sweep
from src.ml.objectives import objective_tags
from src.sweep.context import Launch
from src.sweep.overrides import sweep_command, swept_values, task_overrides
from src.sweep.recovery import (
    SweepHeldError,
    check_no_live_children,
    check_not_held,
    end_orphans,
    finished_trials,
    mark_stale_runs,
    reopen_sweep,
    resume_parent,
    take_lease,
)
from src.sweep.search import is_search, retried_trials, search_result, search_settings
from src.tracking.heartbeat import Heartbeat, first_beat
from src.tracking.process import PROCESS_TAG, git_info
from src.tracking.store import (
    COMMAND_TAG,
    NoSweepError,
    RunTarget,
    TrackingError,
    ensure_experiment,
    find_sweeps,
    mlflow_key,
    record_failure,
    resolve_tracking_uri,
    run_tags,
    with_retries,
)


class SweepSetupError(ValueError):
    """The tracking store, or the sweep that sweep.resume names, cannot be opened."""


def open_sweep(
    config: DictConfig, jobs: list[list[str]] | None, sweep_dir: Path, experiment: str
) -> tuple[RunTarget, dict[str, float | tuple[float, ...]], Heartbeat]:
    """Open the store and the `experiment`, end runs whose process is gone, and create the
    parent run (writing to `sweep_dir`), or reopen the one sweep.resume names; the parent's run
    target, the finished jobs' results (job key -> metric) when resuming, and the parent's
    heartbeat, beating."""
    try:
        uri = resolve_tracking_uri(config.mlflow.tracking_uri)
        experiment_id = ensure_experiment(uri, experiment)
    except TrackingError as e:
        raise SweepSetupError(str(e)) from e
    commit, dirty = git_info()
    base = RunTarget(uri, experiment_id, None, commit, dirty)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(uri)
    for run in mark_stale_runs(client, experiment_id):
        print(
            f"Marked stale run {run.info.run_name!r} ({run.info.run_id}) FAILED: its "
            f"process is gone",
            flush=True,
        )
    finished: dict[str, float | tuple[float, ...]] = {}
    command = command_tag(sweep_command(config))
    if config.sweep.resume:
        try:
            parent = resume_parent(client, experiment_id, str(config.sweep.resume), command)
        except NoSweepError as e:
            raise SweepSetupError(str(e)) from e
        parent_id = parent.info.run_id
        attempt = run_tags(base, parent.info.run_name, attempt_tags(config, sweep_dir))
        attempt.pop(MLFLOW_RUN_NAME)
        try:  # nothing is changed unless this attempt holds the sweep alone
            check_not_held(parent, attempt.get(PROCESS_TAG, ""))
            check_no_live_children(client, parent)
            take_lease(client, parent_id, attempt.get(PROCESS_TAG, ""))
        except SweepHeldError as e:
            raise SweepSetupError(str(e)) from e
        study = is_search(config) and config.hydra.sweeper.get("storage") is not None
        race = config.sweep.get("race", False) is True
        finished = reopen_sweep(
            client, parent, attempt, is_search(config), keep_failed=study, keep_started=race
        )
        print(f"Resuming sweep {parent_id}: {len(finished)} finished jobs are kept", flush=True)
        if study and not race:  # the study holds what ran: the sweeper runs what is missing; a
            # trial interrupted after its job finished, asked again, takes that child's result
            retried = retried_trials(config, parent_id)
            finished = finished_trials(client, parent, retried) if retried else {}
        elif study or race:  # the study or the race's children hold what ran
            finished = {}
    else:
        parent_id = create_parent_run(config, base, jobs, sweep_dir, command)
    interval = float(config.sweep.heartbeat_s)
    beat = [RunTag(k, v) for k, v in first_beat(interval).items()]
    with_retries(lambda: client.log_batch(parent_id, tags=beat))
    heartbeat = Heartbeat(uri, parent_id, interval).start()
    return RunTarget(uri, experiment_id, parent_id, commit, dirty, interval), finished, heartbeat


def command_tag(command: dict) -> str:
    """A sweep's command as its parent records it: the JSON, or its SHA-256 when the JSON is
    longer than a tag may be (so two long commands never compare equal by a shared prefix)."""
    text = json.dumps(command, sort_keys=True)
    if len(text) <= MAX_TAG_VAL_LENGTH:
        return text
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"


def attempt_tags(config: DictConfig, sweep_dir: Path) -> dict[str, str]:
    """The parent's tags that describe one attempt of the sweep (a resume replaces them)."""
    return {
        "sweep_dir": str(sweep_dir),
        "launcher": str(config.hydra.launcher._target_),
        "hydra_overrides": " ".join(task_overrides(config)),
    }


def create_parent_run(
    config: DictConfig,
    base: RunTarget,
    jobs: list[list[str]] | None,
    sweep_dir: Path,
    command: str,
) -> str:
    """The parent run: tagged as a sweep, with the swept keys and their values as params."""
    swept = swept_values(config)
    choices = config.hydra.runtime.choices
    model = "" if "model" in swept else f"{choices.get('model', '')} "
    description = f"sweep {model}" + " ".join(
        f"{k.removeprefix('model.')}={','.join(v)}" for k, v in swept.items()
    )
    client = MlflowClient(base.tracking_uri)
    # a short name the UI does not cut (the sweep file, or the model, and a number per
    # experiment); the whole description is the run's description (mlflow.note.content)
    stem = choices.get("sweeps") or choices.get("model") or "sweep"
    earlier = [
        s
        for s in find_sweeps(client, base.experiment_id)
        if s.info.run_name.startswith(f"{stem} #")
    ]
    name = f"{stem} #{len(earlier) + 1}"  # knn_grid #2: this experiment's second knn_grid
    tags = {
        "mlflow.note.content": description[:MAX_TAG_VAL_LENGTH],
        "sweep": "true",
        "sweeper": str(config.hydra.sweeper._target_),
        **objective_tags(
            config.sweep.metric,
            config.sweep.direction,
            config.sweep.get("constraints"),
            config.sweep.get("choose_by"),
        ),  # fmt: skip
        "sweep_alpha": str(config.sweep.alpha),
        COMMAND_TAG: command,
    } | attempt_tags(config, sweep_dir)
    if config.sweep.prefer:
        tags["sweep_prefer"] = str(config.sweep.prefer)
    if config.sweep.get("race", False) is True:
        tags |= {
            "sweep_race": "true",
            "sweep_race_alpha": str(config.sweep.race_alpha),
            "sweep_race_folds": str(int(config.cv.folds) * int(config.cv.repeats)),
        }
    if config.mlflow.get("ui_url"):  # where its UI link points (default: ui_url of the store)
        tags["ui_url"] = str(config.mlflow.ui_url)
    run = with_retries(
        lambda: client.create_run(
            base.experiment_id, run_name=name, tags=run_tags(base, name, tags)
        )
    )
    params = [Param(mlflow_key(f"sweep.{k}"), ",".join(v)[:6000]) for k, v in swept.items()]
    params.append(Param("sweep.n_jobs", str(len(jobs) if jobs is not None else "unknown")))
    params += [Param(k, v) for k, v in search_settings(config).items()]
    with_retries(lambda: client.log_batch(run.info.run_id, params=params))
    return str(run.info.run_id)


def finish_parent_run(config: DictConfig, launch: Launch) -> dict[str, int]:
    """Summarise the sweep onto the parent and into the sweep folder, run the registry gate if
    asked (registry.enabled), then end the parent; the counts of its children."""
    ctx = launch.context
    parent_id = ctx.target.parent_run_id
    assert parent_id is not None
    client = MlflowClient(ctx.target.tracking_uri)
    end_orphans(client, ctx.target.experiment_id, parent_id, ctx.attempt)
    summary, link = summarize_sweep(ctx.target.tracking_uri, parent_id, Path(ctx.sweep_dir))
    record_search_result(client, parent_id, Path(ctx.sweep_dir), summary)
    if config.registry.enabled and summary.best is not None:
        name = config.registry.name or default_model_name(str(config.mlflow.experiment_name))
        decision = register_best(client, summary, name, config.registry.min_improvement)
        print(describe(decision), flush=True)
    counts = summary.counts
    all_failed = counts["n_children"] > 0 and counts["n_finished"] == 0
    stopped = ctx.max_failures is not None and counts["n_failed"] > ctx.max_failures
    status = "FAILED" if all_failed or stopped else "FINISHED"
    if stopped:
        reason = f"stopped by sweep.max_failures={ctx.max_failures}: {counts['n_failed']} failed"
        with_retries(lambda: client.set_tag(parent_id, "end_reason", reason))
    launch.heartbeat.stop()
    with_retries(lambda: client.set_terminated(parent_id, status))
    finished, failed, total = counts["n_finished"], counts["n_failed"], counts["n_children"]
    counted = f"{finished} finished, {failed} failed of {total} children"
    lines = [f"Sweep {parent_id} {status}: {counted}"]
    best = summary.best
    if best is not None:
        score = f"{summary.metric}={best[summary.metric]:.4f}"
        chosen_by_rule = summary.prefer is not None or summary.fronts is not None
        rule = f", chosen by {summary.rule}" if chosen_by_rule else ""
        lines.append(f"Best: {best['run_name']} ({best['run_id']}) {score}{rule}")
        verdict = summary.verdict
        if verdict.missing is None and verdict.adjusted:
            more = more_folds_hint(verdict.n_folds, bool(race_counts(summary)))
            lines.append(
                f"{verdict.n_equivalent} of {len(verdict.adjusted) + 1} configurations are "
                f"statistically indistinguishable from the best on {verdict.n_folds} paired CV "
                f"folds (not shown equal: these folds cannot tell them apart{more})"
            )
    if (raced := race_note(summary)) is not None:
        lines.append(raced)
    if summary.fronts is not None:
        fronts = summary.fronts
        lines.append(
            f"Trade-offs: {len(fronts.on_means)} of {len(fronts.dominated_by)} feasible "
            f"configurations on the Pareto front of the means, {len(fronts.not_shown)} not shown "
            f"dominated (pareto_front.png; why they differ: the summary)"
        )
    files = Path(ctx.sweep_dir) / "sweep_summary.md"
    lines.append(f"Summary: {files} (and on the parent run, under summary/)")
    lines.append(f"MLflow UI: {link}")
    print("\n".join(lines), flush=True)
    return counts


def fail_parent_run(launch: Launch, error: BaseException) -> None:
    """End the parent FAILED with `error` recorded on it (the children stay as they are)."""
    ctx = launch.context
    parent_id = ctx.target.parent_run_id
    assert parent_id is not None
    client = MlflowClient(ctx.target.tracking_uri)
    record_failure(client, parent_id, error)
    launch.heartbeat.stop()
    with_retries(lambda: client.set_terminated(parent_id, "FAILED"))


def record_search_result(
    client: MlflowClient, parent_id: str, sweep_dir: Path, summary: SweepSummary
) -> None:
    """A search sweeper's own verdict on the parent (`search.search_result`): the best value,
    the best params, the child run that holds that trial, and where the study lives."""
    found = search_result(sweep_dir, summary.table)
    if found is None:
        return
    tags, best_value = found
    now = int(time.time() * 1000)
    metrics = [] if best_value is None else [Metric("search_best_value", best_value, now, 0)]
    with_retries(
        lambda: client.log_batch(
            parent_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()]
        )
    )
