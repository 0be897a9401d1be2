"""`hydra/sweeper=optuna` (this app's conf/hydra/sweeper): a search on Optuna's ask-and-tell API.

Each job learns its trial from these environment variables, set for it through
`hydra.job.env_set` (so a job on any launcher, in any process, sees them).
"""

TRIAL_ENV = "HYDRA_OPTUNA_TRIAL"  # the trial's number in its study
STUDY_ENV = "HYDRA_OPTUNA_STUDY"  # the study's name
STORAGE_ENV = "HYDRA_OPTUNA_STORAGE"  # the study's storage URL ("" for an in-memory study)
