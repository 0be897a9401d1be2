"""A sweep's overrides: the jobs a grid expands to, what was swept, and the names, keys and tags
each job's run gets from its overrides."""

from __future__ import annotations

from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from src.sweep.search import is_search
from src.tracking.store import ATTEMPT_TAG


def job_overrides() -> list[str]:
    """The task overrides of the running Hydra job (empty outside Hydra)."""
    if not HydraConfig.initialized():
        return []
    return unresolved(HydraConfig.get().overrides.task)


def task_overrides(config: DictConfig) -> list[str]:
    """The overrides typed on the command line, as typed (`${...}` in a value is not resolved:
    it is the job's to resolve, not the override list's)."""
    return unresolved(config.hydra.overrides.task)


def sweeper_params(config: DictConfig) -> dict[str, str]:
    """The sweeper's `params` (a ready sweep's search space), as written."""
    params = config.hydra.sweeper.get("params")
    return {str(k): str(v) for k, v in unresolved(params).items()} if params else {}


def sweep_arguments(config: DictConfig) -> list[str]:
    """The sweep's overrides as Hydra's basic sweeper reads them: its params, then the command
    line (which wins)."""
    return [f"{k}={v}" for k, v in sweeper_params(config).items()] + task_overrides(config)


def unresolved(node: Any) -> Any:
    """A config node as plain containers, interpolations kept as written."""
    return OmegaConf.to_container(node, resolve=False)


def job_number() -> int | None:
    """The running Hydra job's number in its sweep (None outside a multirun)."""
    if not HydraConfig.initialized():
        return None
    num = HydraConfig.get().job.get("num")  # type: ignore[attr-defined]  # a DictConfig
    return int(num) if num is not None else None


def job_key(overrides: list[str]) -> str:
    """What identifies a job's config across attempts: its overrides, minus the `sweep.*`
    policy (resume, max_failures, ...), which may change between attempts."""
    kept = [o for o in overrides if not o.startswith(("sweep.", "hydra."))]
    return " ".join(sorted(kept))


def job_tags(
    cfg: DictConfig, overrides: list[str], job_num: int | None, attempt: str | None
) -> dict[str, str]:
    """The tags that say which job a child run is: its overrides, their key, the model, its
    number in the sweep and the sweep's attempt (when it is a sweep's job)."""
    tags = {
        "hydra_overrides": " ".join(overrides),
        "job_key": job_key(overrides),
        "model": model_choice(cfg),
    }
    if job_num is not None:
        tags["job_number"] = str(job_num)
    if attempt is not None:
        tags[ATTEMPT_TAG] = attempt
    return tags


def model_choice(cfg: DictConfig) -> str:
    """The chosen `model` option (e.g. `knn`), or the estimator's class name outside Hydra; a
    job's config composed by its launcher (with its `hydra` node) names its own."""
    if (choice := OmegaConf.select(cfg, "hydra.runtime.choices.model")) is not None:
        return str(choice)
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("model")
        if choice:
            return str(choice)
    return str(cfg.model._target_).rsplit(".", 1)[-1]


def group_choices() -> dict[str, str]:
    """The job's config-group choices (`model`, `data`, `lr_penalty`, ...), Hydra's own
    aside: keys a user types in overrides, so children record them as params."""
    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {
        str(k): str(v)
        for k, v in choices.items()
        if v is not None and "/" not in str(k) and not str(k).startswith("hydra")
    }


def child_run_name(cfg: DictConfig, overrides: list[str], swept: tuple[str, ...] = ()) -> str:
    """A short readable run name: `knn n_neighbors=5 weights=distance`; in a sweep only the
    swept keys are named, since the others are the same for every child."""
    typed = [o.partition("=")[2] for o in overrides if o.partition("=")[0] == "model"]
    parts = typed[-1:] or [model_choice(cfg)]  # a job's own choice, read before it is composed
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in ("model", "sweeps", "mlflow") or key.startswith(
            ("hydra", "mlflow.", "data.path", "registry.", "sweep.")  # where and how, not what
        ):
            continue
        if swept and key not in swept:
            continue
        parts.append(f"{key.removeprefix('model.')}={value}")
    return " ".join(parts)


def expand_jobs(config: DictConfig) -> list[list[str]] | None:
    """Every job's override list for Hydra's basic sweeper; None for sweepers that decide later."""
    if is_search(config):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # private: see README

    overrides = OverridesParser.create().parse_overrides(sweep_arguments(config))
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def swept_values(config: DictConfig) -> dict[str, list[str]]:
    """The swept keys and the values each takes (the sweeper's params, then the command line,
    which wins); a continuous search space is kept as written, e.g. `interval(0.1,10)`."""
    swept: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(sweep_arguments(config)):
        if not override.is_sweep_override():
            swept.pop(override.key_or_group, None)  # a later single value replaces a sweep
            continue
        key = override.key_or_group
        if override.is_discrete_sweep():
            swept[key] = [str(v) for v in override.sweep_string_iterator()]
        else:
            swept[key] = [str(override.input_line).partition("=")[2]]
    return swept


def sweep_command(config: DictConfig) -> dict[str, Any]:
    """What makes two sweeps the same sweep (so one may resume the other): the sweeper, the
    swept keys and their values, and the fixed overrides, whatever the launcher, the Hydra
    settings and the `sweep.*` policy (resume, max_failures, ...)."""
    parsed = OverridesParser.create().parse_overrides(task_overrides(config))
    fixed = sorted(
        str(o.input_line)
        for o in parsed
        if not o.is_sweep_override() and not o.key_or_group.startswith("sweep.")
    )
    sweeper = str(config.hydra.sweeper._target_).rsplit(".", 1)[-1]
    return {"sweeper": sweeper, "swept": swept_values(config), "fixed": fixed}


def varying_keys(config: DictConfig) -> tuple[str, ...]:
    """The swept keys that take more than one value (every key a search sweeper explores)."""
    search = is_search(config)
    return tuple(k for k, v in swept_values(config).items() if len(v) > 1 or search)
