"""`hydra/sweeper=optuna` (this app's conf/hydra/sweeper): a search on Optuna's ask-and-tell API.

Each job learns its trial from these environment variables, set for it through
`hydra.job.env_set` (so a job on any launcher, in any process, sees them).
"""

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


def keep_storage(shown: str, real: str) -> None:
    """The sweeper opens `real` where its config says `shown` (the same URL, password hidden)."""
    _real_storages[shown] = real


def real_storage(storage: str | None) -> str | None:
    """The storage URL to open for the one the config shows."""
    return None if storage is None else _real_storages.get(storage, storage)
