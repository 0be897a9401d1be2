"""The search: a study (in memory or persistent), a search space in Hydra's override grammar,
trials asked, launched, and told back: one at a time as jobs end, where the launcher can run
jobs one by one (`_asynchronous`), or in batches (Hydra's basic launcher, a race, or
`batches: true`).

`n_trials` is the number of trials the study should hold that ran to an end (their job
finished or failed). A study that already holds some is continued: only the missing trials run,
and trial numbers go on. A trial interrupted (Ctrl-C, a killed process) ends FAIL without a job
status, does not count, and is asked again with the same values first when its sweep resumes.
The trials of one sweep are those carrying its `user_attrs`. A trial the race pruned
(`_pruning`) ran to an end too.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState
from sqlalchemy.engine import make_url

from . import STORAGE_ENV, STUDY_ENV, TRIAL_ENV, racing, real_storage

log = logging.getLogger(__name__)

JOB_STATUS = "job_status"  # trial user attribute: COMPLETED or FAILED, set when its job ended
RUN_ID = "mlflow_run_id"  # trial user attribute: the run its job recorded, when it says
RETRY_OF = "retry_of"  # trial user attribute: the interrupted trial it asks again


def distribution(override: Override) -> BaseDistribution | None:
    """The Optuna distribution of a sweep override (`choice`, `range`, `interval`, `tag(log,
    interval(...))`, `int(interval(...))`); None for a plain value."""
    if not override.is_sweep_override():
        return None
    value = override.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        plain = [c for c in choices if c is None or isinstance(c, (str, int, float, bool))]
        if len(plain) < len(choices):
            raise ValueError(f"hydra.sweeper.params: {override.input_line!r}: plain values only")
        return CategoricalDistribution(plain)
    if isinstance(value, RangeSweep):  # its values as Hydra's grid has them: stop excluded
        values = [float(v) for v in override.sweep_iterator()]  # type: ignore[arg-type]
        if not values:
            raise ValueError(f"hydra.sweeper.params: {override.input_line!r} is empty")
        if any(isinstance(x, float) for x in (value.start, value.stop, value.step)):
            return FloatDistribution(values[0], values[-1], step=float(value.step))
        return IntDistribution(int(values[0]), int(values[-1]), step=int(value.step))
    if isinstance(value, IntervalSweep):
        assert value.start is not None and value.end is not None
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"hydra.sweeper.params: {override.input_line!r} is not an Optuna search space")


def search_space(arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """The distributions of the swept keys, and the other overrides (fixed for every trial)."""
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for override in OverridesParser.create().parse_overrides(arguments):
        found = None if override.is_delete() else distribution(override)
        if found is None:
            fixed.append(str(override.input_line))
        else:
            space[override.get_key_element()] = found
    return space, fixed


def absolute_storage(storage: str | None) -> str | None:
    """The storage URL to open (its password, if the app took it out of the config), with a
    relative sqlite path made absolute (from where the sweep was started), so that every job
    and a later resume name the same file."""
    storage = real_storage(storage)
    if storage is None or not storage.startswith("sqlite:///") or storage == "sqlite:///":
        return storage
    path = Path(storage.removeprefix("sqlite:///"))
    return storage if path.is_absolute() else f"sqlite:///{os.path.abspath(path)}"


def shown(storage: str | None) -> str:
    """The storage URL as printed and recorded: without a password; `in memory` for none."""
    if storage is None:
        return "in memory"
    return make_url(storage).render_as_string(hide_password=True)


def quoted(value: str) -> str:
    """A value quoted for Hydra's override grammar."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def trial_overrides(trial: Trial, fixed: list[str], study: str, storage: str | None) -> list[str]:
    """A trial's job: its values, the fixed overrides, and the environment naming its trial."""
    env = {TRIAL_ENV: str(trial.number), STUDY_ENV: study, STORAGE_ENV: shown(storage)}
    env_set = [f"++hydra.job.env_set.{k}={quoted(v)}" for k, v in env.items()]
    return [f"{k}={v}" for k, v in trial.params.items()] + fixed + env_set


def is_ended(trial: FrozenTrial) -> bool:
    """A trial that counts toward n_trials: its job finished or failed (not interrupted)."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and JOB_STATUS in trial.user_attrs
    )


def still_missing(trials: list[FrozenTrial], n_trials: int) -> int:
    """How many trials `trials` lack to hold `n_trials` ended ones."""
    return max(0, n_trials - sum(1 for t in trials if is_ended(t)))


def carries(trial: FrozenTrial, user_attrs: dict[str, Any]) -> bool:
    """Whether `trial` belongs to the sweep that `user_attrs` name."""
    return bool(user_attrs) and all(trial.user_attrs.get(k) == v for k, v in user_attrs.items())


def missing_trials(storage: str | None, study_name: str | None, n_trials: int) -> int:
    """How many trials a sweep of `n_trials` would run now: those missing for the study to hold
    `n_trials` ended ones (all of them for a new or in-memory study)."""
    storage = absolute_storage(storage)
    if storage is None or study_name is None:
        return n_trials
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study yet
        return n_trials
    return still_missing(study.get_trials(deepcopy=False), n_trials)


def interrupted_trials(
    storage: str | None, study_name: str | None, user_attrs: dict[str, Any]
) -> set[int]:
    """The numbers of the trials of the sweep `user_attrs` name that were interrupted (FAIL
    without a job status): asked again when it resumes."""
    storage = absolute_storage(storage)
    if storage is None or study_name is None:
        return set()
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study yet
        return set()
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return {t.number for t in failed if carries(t, user_attrs) and not is_ended(t)}


def prepare(study: optuna.Study, user_attrs: dict[str, Any], n_trials: int) -> int:
    """End this sweep's trials left RUNNING by a process that is gone (FAIL: interrupted),
    queue its interrupted trials again with the same values, and return how many trials to
    ask so that the study holds `n_trials` ended ones."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if carries(trial, user_attrs):
            study.tell(trial.number, state=TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF) for t in trials}
    missing = still_missing(trials, n_trials)
    again = [
        t
        for t in trials
        if carries(t, user_attrs)
        and t.state == TrialState.FAIL
        and not is_ended(t)
        and t.number not in retried
    ]
    for trial in again[:missing]:
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
    return missing


def tell(study: optuna.Study, trial: Trial, result: JobReturn) -> bool:
    """Record a job's end on its trial: the value (one per objective: a multi-objective task
    returns a sequence), or FAIL; the run it recorded (a return value or an error with a
    `run_id`) and how far it breaks each of the sweep's constraints (its `violations`, told
    with Optuna's `Trial.set_constraint`, which the samplers read). True when the job
    failed."""
    try:
        returned = result.return_value  # raises the job's error when it failed
        values = [float(v) for v in returned] if isinstance(returned, (tuple, list)) else [
            float(returned)
        ]  # fmt: skip
        error = None
    except Exception as e:  # noqa: BLE001 - any job error is the trial's failure
        values, error = [math.nan], e
    run_id = getattr(error if error is not None else result.return_value, "run_id", None)
    if run_id is not None:
        trial.set_user_attr(RUN_ID, str(run_id))
    violations = getattr(result.return_value, "violations", {}) if error is None else {}
    for constraint, value in violations.items():
        trial.set_constraint(str(constraint), float(value))
    failed = (
        error is not None
        or result.status != JobStatus.COMPLETED
        or any(math.isnan(v) for v in values)
        or len(values) != len(study.directions)
    )
    trial.set_user_attr(JOB_STATUS, "FAILED" if failed else "COMPLETED")
    if failed:
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, values)
    return failed


def directions_of(direction: Any) -> list[StudyDirection]:
    """hydra.sweeper.direction (one, or one per objective) as a list of Optuna directions."""
    directions = [direction] if isinstance(direction, str) else list(direction)
    if not directions or any(d not in ("minimize", "maximize") for d in directions):
        raise ValueError(
            f"hydra.sweeper.direction={direction!r}: minimize or maximize, or a list of them "
            f"(one per objective)"
        )
    return [StudyDirection[str(d).upper()] for d in directions]


def sweep(options: dict[str, Any], setup: dict[str, Any], arguments: list[str]) -> None:
    """Run the search and write `optimization_results.yaml` in the sweep folder."""
    config: DictConfig = setup["config"]
    directions = directions_of(options["direction"])
    launcher = Plugins.instance().instantiate_launcher(**setup)
    params = options["params"] or {}
    space, fixed = search_space([f"{k}={v}" for k, v in params.items()] + list(arguments))
    storage = absolute_storage(options["storage"])
    study = optuna.create_study(
        storage=storage,
        sampler=options["sampler"],
        study_name=options["study_name"],
        directions=directions,
        load_if_exists=True,
    )
    attrs = OmegaConf.to_container(options["user_attrs"] or OmegaConf.create({}))
    assert isinstance(attrs, dict)
    user_attrs = {str(k): v for k, v in attrs.items()}
    earlier = len(study.trials)
    to_ask = prepare(study, user_attrs, int(options["n_trials"]))
    continued = ""
    if earlier:  # a seeded sampler would propose the earlier trials' first values again
        study.sampler.reseed_rng()
        continued = f"; {earlier} earlier trials, numbers go on, sampler reseeded"
    log.info(
        f"Optuna study {study.study_name!r} ({shown(storage)}{continued}): "
        f"{to_ask} trials to run for n_trials={options['n_trials']}"
    )
    n_jobs, max_failure_rate = int(options["n_jobs"]), float(options["max_failure_rate"])

    def ask() -> tuple[Trial, list[str]]:
        trial = study.ask(space)
        for key, value in user_attrs.items():
            trial.set_user_attr(str(key), value)
        return trial, trial_overrides(trial, fixed, study.study_name, storage)

    pool = getattr(launcher, "pool", None)
    if pool is not None and not options["batches"] and not racing():
        from ._asynchronous import search

        log.info(f"A new trial is asked as soon as one ends, {n_jobs} running at once")
        search(pool(n_jobs), study, ask, to_ask, n_jobs, max_failure_rate)
    else:
        search_in_batches(launcher, study, ask, to_ask, n_jobs, max_failure_rate)
    write_results(study, storage, Path(str(config.hydra.sweep.dir)))


def search_in_batches(
    launcher: Any,
    study: optuna.Study,
    ask: Callable[[], tuple[Trial, list[str]]],
    to_ask: int,
    n_jobs: int,
    max_failure_rate: float,
) -> None:
    """Ask `n_jobs` trials, launch them as one batch, tell them, and again, until `to_ask`
    trials ran; a batch with more than `max_failure_rate` of its trials failed raises the first
    failure's error."""
    from ._pruning import launch_trials

    job_idx = 0
    while to_ask > 0:
        batch, overrides = zip(*[ask() for _ in range(min(n_jobs, to_ask))], strict=True)
        try:  # in rounds, pruned (PRUNED) by the app's judge, when it races (_pruning)
            returns, pruned, launched = launch_trials(
                launcher, study, list(batch), list(overrides), job_idx
            )
        except BaseException:  # interrupted: no trial stays RUNNING
            for trial in batch:
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        job_idx += launched
        told = [(t, r) for t, r in zip(batch, returns, strict=True) if t.number not in pruned]
        failures = [r for t, r in told if tell(study, t, r)]
        if len(failures) / len(returns) > max_failure_rate:
            log.error(f"{len(failures)} of {len(returns)} trials failed in a batch")
            _ = failures[0].return_value  # raises the first failure's error
        to_ask -= len(batch)


def write_results(study: optuna.Study, storage: str | None, sweep_dir: Path) -> None:
    """The study's best trial, as Hydra's Optuna sweeper writes it, with where it lives."""
    results: dict[str, Any] = {
        "name": "optuna",
        "study_name": study.study_name,
        "storage": shown(storage),
        "n_trials": len(study.trials),
    }
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if completed and len(study.directions) > 1:  # the best trials: the study's Pareto front
        results["solutions"] = [
            {"params": t.params, "values": t.values, "trial": t.number,
             "run_id": t.user_attrs.get(RUN_ID)}
            for t in study.best_trials
        ]  # fmt: skip
        log.info(f"Pareto front of the study: {len(study.best_trials)} trials")
    elif completed:
        best = study.best_trial
        results |= {"best_params": best.params, "best_value": best.value}
        results |= {"best_trial": best.number, "best_run_id": best.user_attrs.get(RUN_ID)}
        log.info(f"Best trial {best.number}: {best.params}, value {best.value}")
    os.makedirs(sweep_dir, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
