"""Pruning a search's trials as a race eliminates configurations (`sweep.race=true`): a batch of
trials runs in rounds of one CV repeat, each trial keeping its one run; after every round but
the last the app's judge says which trials are significantly worse than the study's best trial
on the same folds, and those end PRUNED, their rounds' values reported first (the sampler then
knows how far they got and how they did).

The judge is the app's, handed over in the launching process (`prune_trials`) with what makes
a trial's job a round's job (the race sweeper's environment variables, so the job knows its
round and its run); without one, a batch is launched once, as before.
"""

from __future__ import annotations

from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import Trial, TrialState

from . import pruning
from ._core import JOB_STATUS, RUN_ID


def best_run(study: optuna.Study) -> str | None:
    """The run of the study's best complete trial (None: no complete trial yet)."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial.user_attrs.get(RUN_ID)


def launch_trials(
    launcher: Any, study: optuna.Study, batch: list[Trial], jobs: list[list[str]], job_idx: int
) -> tuple[list[JobReturn], set[int], int]:
    """Launch a batch's jobs: each trial's last job return, the trials pruned (told PRUNED
    here), and how many jobs ran."""
    prunes = pruning()
    if prunes is None:
        returns = list(launcher.launch(jobs, initial_job_idx=job_idx))
        return returns, set(), len(jobs)
    pruner, rounds, round_job = prunes
    best = best_run(study)  # the trials of this batch are compared with the best before it
    last: dict[int, JobReturn] = {}
    run_ids: dict[int, str] = {}
    alive, pruned, launched = list(range(len(batch))), set(), 0
    for round_index in range(rounds):
        chunk = [round_job(jobs[i], round_index, run_ids.get(i)) for i in alive]
        ended = launcher.launch(chunk, initial_job_idx=job_idx + launched)
        launched += len(chunk)
        results = []
        for i, result in zip(alive, ended, strict=True):
            last[i] = result
            if result.status != JobStatus.COMPLETED:
                continue  # a failed job ends its trial FAIL (told by the caller)
            value = result.return_value
            run_ids.setdefault(i, str(getattr(value, "run_id", "")))
            batch[i].report(float(value), round_index)
            results.append((i, value))
        alive = [i for i, _ in results]
        if best is None or round_index + 1 == rounds:
            continue
        numbers = {batch[i].number: i for i in alive}
        out = pruner(round_index, best, [(batch[i].number, v) for i, v in results])
        for number in sorted(out):
            trial = batch[numbers[number]]
            trial.set_user_attr(JOB_STATUS, "PRUNED")
            trial.set_user_attr(RUN_ID, run_ids[numbers[number]])
            study.tell(trial, state=TrialState.PRUNED)
            pruned.add(trial.number)
        alive = [i for i in alive if batch[i].number not in out]
    return [last[i] for i in range(len(batch))], pruned, launched
