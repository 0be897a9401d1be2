"""`hydra/sweeper=optuna` (this app's conf/hydra/sweeper): a search on Optuna's ask-and-tell API.

Each job learns its trial from these environment variables, set for it through
`hydra.job.env_set` (so a job on any launcher, in any process, sees them).
"""

from collections.abc import Callable
from typing import Any

TRIAL_ENV = "HYDRA_OPTUNA_TRIAL"  # the trial's number in its study
STUDY_ENV = "HYDRA_OPTUNA_STUDY"  # the study's name
STORAGE_ENV = "HYDRA_OPTUNA_STORAGE"  # the study's storage URL ("" for an in-memory study)

# storage URLs whose password the app took out of the config (as the config now shows them ->
# the real ones): kept in this process's memory only, never in a file or a job's environment
_real_storages: dict[str, str] = {}

# The public face the app uses (src.sweep.search), light to import: Hydra's plugin scan imports
# this module in every app, so Optuna is imported only when one of these is called.


def search_space(arguments: list[str]) -> tuple[dict, list[str]]:
    """The Optuna distributions of the swept `arguments` (Hydra's grammar), and the fixed ones."""
    from ._core import search_space as space

    return space(arguments)


def missing_trials(storage: str | None, study_name: str | None, n_trials: int) -> int:
    """How many of `n_trials` a (persistent) study still lacks: its ended trials count."""
    from ._core import missing_trials as missing

    return missing(storage, study_name, n_trials)


def interrupted_trials(storage: str | None, study_name: str | None, user_attrs: dict) -> set[int]:
    """The trials of a sweep (those carrying `user_attrs`) its persistent study shows
    interrupted: asked again, with the same values, when the sweep resumes."""
    from ._core import interrupted_trials as interrupted

    return interrupted(storage, study_name, user_attrs)


def keep_storage(shown: str, real: str) -> None:
    """The sweeper opens `real` where its config says `shown` (the same URL, password hidden)."""
    _real_storages[shown] = real


def real_storage(storage: str | None) -> str | None:
    """The storage URL to open for the one the config shows."""
    return None if storage is None else _real_storages.get(storage, storage)


# pruning (`sweep.race=true`): (round, the best trial's run id, [(trial number, its job's return
# value)] of the round) -> the trial numbers to prune
Pruner = Callable[[int, str, list[tuple[int, Any]]], set[int]]
# (a trial's job, its round, the run its first round recorded) -> the job of that round
RoundJob = Callable[[list[str], int, str | None], list[str]]
_pruners: list[tuple[Pruner, int, RoundJob]] = []


def prune_trials(pruner: Pruner | None, rounds: int = 1, round_job: RoundJob | None = None) -> None:
    """Run each trial in `rounds` rounds (`round_job` says a round's job) and prune those
    `pruner` names after a round (None: a trial is one job, never pruned)."""
    ok = pruner is not None and round_job is not None and rounds >= 2
    _pruners[:] = [(pruner, rounds, round_job)] if ok else []  # type: ignore[list-item]


def pruning() -> tuple[Pruner, int, RoundJob] | None:
    """The pruner, rounds and round job `prune_trials` was last given (None: no pruning). A
    function, read when called: Hydra's plugin scan re-executes this module, rebinding its
    globals, so a module that imported `_pruners` itself would keep an older list."""
    return _pruners[0] if _pruners else None


def racing() -> bool:
    """Whether trials run in rounds, pruned between them (`prune_trials` was given a pruner)."""
    return pruning() is not None
