"""The one door to our Optuna sweeper (`hydra_plugins.sweeps_optuna_sweeper`, through its
public face): whether a sweep is a search, how many trials it still runs, and the values that
check its keys before any run."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.sweeps_optuna_sweeper import (
    STORAGE_ENV,
    STUDY_ENV,
    TRIAL_ENV,
    Pruner,
    RoundJob,
    interrupted_trials,
    keep_storage,
    missing_trials,
    prune_trials,
    search_space,
)
from src.ml.objectives import metric_names, parse_constraints
from src.ml.targets import TargetError, config_targets, resolve_class

PARENT_ATTR = "mlflow_parent_run_id"  # the trial user attribute naming the sweep's parent run
TRIAL_TAG = "optuna.trial_number"  # the child's tag naming its trial
OUR_OPTUNA = "hydra_plugins.sweeps_optuna_sweeper.optuna_sweeper.SweepsOptunaSweeper"


def prune_search(pruner: Pruner | None, rounds: int = 1, round_job: RoundJob | None = None) -> None:
    """Have our Optuna sweeper run its trials in `rounds` rounds and prune those `pruner` names
    (src.sweep.racing's; None: no pruning)."""
    prune_trials(pruner, rounds, round_job)


# Hydra's basic sweeper, and ours that run its grid (the app swaps them in for it)
GRID_SWEEPERS = ("BasicSweeper", "SweepsGridSweeper", "SweepsRaceSweeper")


def is_search(config: DictConfig) -> bool:
    """A sweeper that picks values as it goes (Optuna), rather than a grid (Hydra's basic
    sweeper, or the grid or race sweeper the app swaps in for it)."""
    return not str(config.hydra.sweeper._target_).endswith(GRID_SWEEPERS)


def search_size(config: DictConfig) -> int | None:
    """How many trials a search sweeper will run: its n_trials, less the ended trials its
    persistent study already holds (our Optuna sweeper); None when it does not say. A study
    that holds them all is refused: there is nothing to run."""
    sweeper = config.hydra.sweeper
    if sweeper.get("n_trials") is None:
        return None
    if sweeper._target_ != OUR_OPTUNA:
        return int(sweeper.n_trials)
    check_search_objectives(config)
    check_search_options(sweeper)
    missing = missing_trials(sweeper.storage, sweeper.study_name, int(sweeper.n_trials))
    if missing == 0:
        raise ValueError(
            f"Optuna study {sweeper.study_name!r} already holds hydra.sweeper.n_trials="
            f"{sweeper.n_trials} ended trials: raise n_trials to search further"
        )
    return missing


# Optuna's samplers that take a constraints_func, and the one that takes one objective only
CONSTRAINED_SAMPLERS = ("TPESampler", "NSGAIISampler", "NSGAIIISampler", "GPSampler")
SINGLE_OBJECTIVE_SAMPLERS = ("CmaEsSampler",)


def check_search_objectives(config: DictConfig) -> None:
    """Our Optuna sweeper's hydra.sweeper.direction: one per objective of sweep.metric (one
    for one), each minimize or maximize; a sampler that can search that many objectives, and
    that takes the constraints when sweep.constraints has any."""
    sweeper = config.hydra.sweeper
    direction = sweeper.direction
    directions = list(direction) if OmegaConf.is_list(direction) else [direction]
    n_objectives = len(metric_names(config.sweep.metric))
    if any(d not in ("minimize", "maximize") for d in directions):
        raise ValueError(
            f"hydra.sweeper.direction={_plain(direction)!r}: minimize or maximize, or a list "
            f"of them (one per objective)"
        )
    if len(directions) != n_objectives:
        raise ValueError(
            f"hydra.sweeper.direction={_plain(direction)!r} has {len(directions)} directions "
            f"for the {n_objectives} objectives of sweep.metric={_plain(config.sweep.metric)!r}: "
            f"set hydra.sweeper.direction=${{sweep.direction}} (as sweeps/*_optuna.yaml do)"
        )
    sampler = str(OmegaConf.select(sweeper, "sampler._target_", default="")).rsplit(".", 1)[-1]
    if n_objectives > 1 and sampler in SINGLE_OBJECTIVE_SAMPLERS:
        raise ValueError(
            f"hydra.sweeper.sampler={sampler} searches one objective, sweep.metric has "
            f"{n_objectives}: use tpe, nsgaii, gp or random"
        )
    if parse_constraints(config.sweep.get("constraints")) and sampler not in CONSTRAINED_SAMPLERS:
        raise ValueError(
            f"sweep.constraints with hydra.sweeper.sampler={sampler}: it cannot be told the "
            f"constraints; use tpe, nsgaii or gp"
        )


def _plain(value: object) -> object:
    return OmegaConf.to_object(value) if OmegaConf.is_config(value) else value


def check_search_options(sweeper: DictConfig) -> None:
    """Our Optuna sweeper's `n_jobs` (trials running at once) and `batches` (wait for each
    batch) are a number >= 1 and a boolean."""
    n_jobs, batches = sweeper.get("n_jobs"), sweeper.get("batches", False)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"hydra.sweeper.n_jobs={n_jobs!r}: the trials running at once, >= 1")
    if not isinstance(batches, bool):
        raise ValueError(f"hydra.sweeper.batches={batches!r}: true (wait for each batch of "
                         f"n_jobs trials) or false")  # fmt: skip


def first_values(config: DictConfig, overrides: list[str]) -> list[str]:
    """For our Optuna sweeper, one override per key it samples, at its first value (a choice's
    first, a range's low end): composing them checks that every key exists before any run. The
    other values are checked in their jobs, which fail as FAILED children."""
    if config.hydra.sweeper._target_ != OUR_OPTUNA:
        return []
    from optuna.distributions import CategoricalDistribution

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + overrides
    space, _ = search_space(arguments)
    return [
        f"{key}={dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low}"
        for key, dist in space.items()
    ]


def trial_tags(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The Optuna trial this job runs (study, trial number, storage), as its sweeper names it in
    the job's environment `env`; empty outside a search."""
    names = {
        TRIAL_ENV: TRIAL_TAG,
        STUDY_ENV: "optuna.study",
        STORAGE_ENV: "optuna.storage",
    }
    return {tag: str(env[name]) for name, tag in names.items() if name in env}


def retried_trials(config: DictConfig, parent_run_id: str) -> set[str]:
    """The numbers of the trials of a sweep's persistent study that its resume asks again
    (interrupted), as the children's `optuna.trial_number` tags name them."""
    sweeper = config.hydra.sweeper
    user_attrs = {PARENT_ATTR: parent_run_id}
    return {str(n) for n in interrupted_trials(sweeper.storage, sweeper.study_name, user_attrs)}


def mark_trials(config: DictConfig, parent_run_id: str) -> None:
    """Our Optuna sweeper records the parent run on every trial it asks (the sweeper is made
    after the callback's `on_multirun_start`): a resumed sweep knows its own trials by it."""
    if config.hydra.sweeper._target_ == OUR_OPTUNA:
        with read_write(config), open_dict(config):
            config.hydra.sweeper.user_attrs[PARENT_ATTR] = parent_run_id


def open_storage_as(shown: str, real: str) -> None:
    """Our Optuna sweeper opens the storage `real` where its config shows `shown` (the same URL,
    its password hidden): in this process's memory only."""
    keep_storage(shown, real)


def search_settings(config: DictConfig) -> dict[str, str]:
    """How a search sweeper searches, as the parent's params: sampler, its seed, the trials and
    the direction; empty for a grid."""
    sampler = OmegaConf.select(config, "hydra.sweeper.sampler")
    if sampler is None:
        return {}
    return {
        "sweep.sampler": str(sampler.get("_target_", "")).rsplit(".", 1)[-1],
        "sweep.sampler_seed": str(sampler.get("seed")),
        "sweep.n_trials": str(config.hydra.sweeper.get("n_trials")),
        "sweep.direction": str(config.hydra.sweeper.get("direction")),
    }


def search_result(
    sweep_dir: Path, table: pd.DataFrame
) -> tuple[dict[str, str], float | None] | None:
    """The search's own verdict (the sweeper's optimization_results.yaml), as the parent's tags
    (best params, the run that holds the best trial, the study; with several objectives the
    runs of the study's Pareto front) and its best value; None when the sweep was not a
    search."""
    results = sweep_dir / "optimization_results.yaml"
    if not results.is_file():
        return None
    verdict = OmegaConf.load(results)
    assert isinstance(verdict, DictConfig)
    if verdict.get("solutions") is not None:  # several objectives: the study's Pareto front
        runs = [str(t.run_id) for t in verdict.solutions if t.get("run_id")]
        tags = {"search_pareto_front_run_ids": ",".join(runs)[:5000]}
        tags |= {f"search_{k}": str(verdict[k]) for k in ("study_name", "storage") if k in verdict}
        return tags, None
    best_params = {str(k): str(v) for k, v in verdict.get("best_params", {}).items()}
    match = table[table["status"] == "FINISHED"]
    for key, value in best_params.items():
        if key in match:
            match = match[match[key].astype(str) == value]
    tags = {"search_best_params": json.dumps(best_params)}
    if verdict.get("best_run_id"):  # the run the best trial recorded (maybe another sweep's)
        tags["search_best_run_id"] = str(verdict.best_run_id)
    elif len(match):
        tags["search_best_run_id"] = str(match.iloc[0]["run_id"])
    for key in ("study_name", "storage"):
        if verdict.get(key) is not None:
            tags[f"search_{key}"] = str(verdict[key])
    best = verdict.get("best_value")
    return tags, None if best is None else float(best)


def check_sweeper_targets(config: DictConfig) -> None:
    """Every `_target_` inside `hydra.sweeper` (its sampler) names an Optuna sampler class:
    Hydra instantiates them with the sweeper, after the callback's `on_multirun_start`. The
    sweeper's own `_target_` is Hydra's to check (it must be an installed plugin)."""
    sweeper = config.hydra.sweeper
    found = [
        found
        for key in sweeper
        if key != "_target_"
        for found in config_targets(sweeper[key], f"hydra.sweeper.{key}")
    ]
    if not found:
        return
    from optuna.samplers import BaseSampler

    for key, target in found:
        if not issubclass(resolve_class(key, target, "optuna.samplers"), BaseSampler):
            raise TargetError(f"{key}={target!r} is not an Optuna sampler class")
