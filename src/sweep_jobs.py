"""A sweep's jobs: which jobs there are, checking them, naming them, their progress, and the
failure policy that decides whether the next one runs.

`SweepContext` is what every job of a sweep knows about it: the callback builds it in the
launching process, and Hydra's launchers carry it (inside the pickled callback) to whatever
process runs a job, where `on_job_start` makes it current.
"""

from __future__ import annotations

import fcntl
import gc
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src import composition
from src.data import load_dataset
from src.interrupts import first_stop_signal
from src.pipeline import build_estimator
from src.settings import SettingsError, check_folds, check_settings
from src.store import ATTEMPT_TAG, RunTarget, redact_text
from src.targets import TargetError, allowed_targets, config_targets, resolve_class

PROGRESS_FILE = ".sweep_progress.tsv"
MANY_JOBS = 200  # a grid this large says that its jobs are being checked, and how far
PROGRESS_EVERY_S = 5.0
GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)
_gc_settled: list[bool] = []  # per process: settle_gc has run
_current: SweepContext | None = None  # the running job's sweep, in the process that runs it
_launching: list[SweepContext] = []  # the sweep this process launches, while it launches it


@dataclass(frozen=True)
class SweepContext:
    """What every job of a sweep needs to know, built once in the launching process."""

    target: RunTarget
    sweep_dir: str
    n_jobs: int | None
    started_at: float
    max_failures: int | None
    swept: tuple[str, ...] = ()  # the keys that vary between jobs: what a run name shows
    search: bool = False  # a sweeper that picks values as it goes (Optuna)
    finished: dict[str, float] = field(default_factory=dict)  # resumed: job key -> its metric
    # this attempt of the sweep (a resume is another): its children carry it (store.ATTEMPT_TAG)
    attempt: str = field(default_factory=lambda: uuid.uuid4().hex)


class JobSkipped(RuntimeError):
    """A search's job that the failure policy did not start."""


def current_sweep() -> SweepContext | None:
    """The sweep the current job belongs to, or None for a single run."""
    return _current


def set_current_sweep(ctx: SweepContext | None) -> None:
    """Make `ctx` the sweep of the job this process runs next (None: no sweep)."""
    global _current
    _current = ctx


def launching_sweep() -> SweepContext | None:
    """The sweep whose jobs this process launches (its launcher runs here), or None."""
    return _launching[0] if _launching else None


def set_launching_sweep(ctx: SweepContext | None) -> None:
    """Make `ctx` the sweep this process launches (None: its launch is over)."""
    _launching[:] = [] if ctx is None else [ctx]


def run_task(task: Callable[[DictConfig], float], cfg: DictConfig) -> float:
    """Run one job. A single run that fails exits with one line (the traceback only under
    HYDRA_FULL_ERROR=1, as Hydra does). In a sweep: a job finished by an earlier attempt
    (sweep.resume) is skipped, a failed job is reported and the sweep goes on, and once
    sweep.max_failures is exceeded the jobs not yet started are skipped. A grid's failed or
    skipped job returns NaN; a search's raises, so that its sweeper records a failed trial
    (Optuna refuses NaN as a value)."""
    ctx = current_sweep()
    if ctx is None:
        try:
            return task(cfg)
        except Exception as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            # a note on the error means its run exists (and is FAILED): child_run.job_run
            started = "Run failed" if getattr(e, "__notes__", None) else "Run not started"
            raise SystemExit(f"{started}: {describe_error(e)}") from None
    if (signum := first_stop_signal()) is not None:  # its KeyboardInterrupt may have been lost
        raise KeyboardInterrupt(f"{signal.Signals(signum).name}: the sweep is stopping")
    overrides = job_overrides()
    name = child_run_name(cfg, overrides, ctx.swept)
    key = job_key(overrides)
    if key in ctx.finished:
        report_progress(ctx, name, "SKIPPED", "(finished in an earlier attempt)")
        return ctx.finished[key]
    if ctx.max_failures is not None and failures_so_far(ctx) > ctx.max_failures:
        reason = f"sweep.max_failures={ctx.max_failures} exceeded"
        report_progress(ctx, name, "SKIPPED", f"({reason})")
        if ctx.search:
            raise JobSkipped(reason)
        return float("nan")
    try:
        value = task(cfg)
    except Exception as e:
        report_progress(ctx, name, "FAILED", detail=f"{type(e).__name__}: {e}")
        if ctx.search:
            raise
        return float("nan")
    report_progress(ctx, name, "FINISHED", detail=f"{cfg.sweep.metric}={value:.4f}")
    return value


def describe_error(error: BaseException) -> str:
    """One line for a user: our errors and Hydra's name the culprit themselves; anything else
    gets its type too; notes added on the way (which run failed) follow."""
    if isinstance(error, (ValueError, HydraException, OmegaConfBaseException)) and str(error):
        message = str(error)
    else:
        message = f"{type(error).__name__}: {error}"
    return redact_text("; ".join([message, *getattr(error, "__notes__", [])]))


def settle_gc() -> None:
    """After the first job of this process: collect, freeze what survived (modules, caches,
    the sweep's configs) out of the garbage collector's reach, and collect the young
    generation less often. A job allocates a great many short-lived containers (OmegaConf
    nodes, matplotlib artists, SQLAlchemy rows), and with CPython's defaults the collector's
    older passes walk every long-lived object again and again. Old generations are still
    collected, so garbage cycles do not accumulate."""
    if _gc_settled:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
    _gc_settled.append(True)


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
    parts = [model_choice(cfg)]
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


def reset_progress(sweep_dir: Path) -> None:
    """Start this attempt's progress file (an earlier attempt in the same folder left its own:
    its counts and failures are not this attempt's)."""
    (sweep_dir / PROGRESS_FILE).write_text("")


def report_progress(ctx: SweepContext, run_name: str, status: str, detail: str) -> None:
    """Record the job's outcome for the whole sweep and print `[k/N] name status detail,
    elapsed, ETA`."""
    path = Path(ctx.sweep_dir) / PROGRESS_FILE
    with path.open("a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # jobs in several processes append to the same file
        f.write(f"{status}\t{run_name}\n")
        f.flush()
        f.seek(0)
        statuses = [line.split("\t", 1)[0] for line in f.read().splitlines()]
        fcntl.flock(f, fcntl.LOCK_UN)
    done = len(statuses)
    elapsed = time.time() - ctx.started_at
    total = f"/{ctx.n_jobs}" if ctx.n_jobs else ""
    eta = ""
    if ctx.n_jobs and done < ctx.n_jobs:
        eta = f", ~{_duration(elapsed / done * (ctx.n_jobs - done))} left"
    print(
        f"[{done}{total}] {run_name}: {status} {detail} ({_duration(elapsed)} elapsed{eta})",
        flush=True,
    )


def failures_so_far(ctx: SweepContext) -> int:
    """How many jobs of this sweep have failed so far, in any process."""
    path = Path(ctx.sweep_dir) / PROGRESS_FILE
    if not path.exists():
        return 0
    with path.open() as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        failed = sum(1 for line in f if line.startswith("FAILED\t"))
        fcntl.flock(f, fcntl.LOCK_UN)
    return failed


def job_outcomes(ctx: SweepContext) -> tuple[int, int]:
    """How many jobs of this attempt failed, and how many ended in any way, in any process
    (the progress file: what is known when the store cannot be read)."""
    path = Path(ctx.sweep_dir) / PROGRESS_FILE
    if not path.exists():
        return 0, 0
    statuses = [line.split("\t", 1)[0] for line in path.read_text().splitlines()]
    return statuses.count("FAILED"), len(statuses)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}min"


OUR_OPTUNA = "hydra_plugins.sweeps_optuna_sweeper.optuna_sweeper.SweepsOptunaSweeper"


def is_search(config: DictConfig) -> bool:
    """A sweeper that picks values as it goes (Optuna), rather than Hydra's basic grid."""
    return not str(config.hydra.sweeper._target_).endswith("BasicSweeper")


def check_launcher(config: DictConfig) -> None:
    """hydra.launcher.n_jobs (the joblib launcher's workers), when the launcher has it, is a
    count joblib takes: >= 1, or negative for all CPUs but some (-1: one per CPU)."""
    n_jobs = OmegaConf.select(config, "hydra.launcher.n_jobs", default=None)
    if n_jobs is None:
        return
    cpus = os.cpu_count() or 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -cpus:
        raise SettingsError(
            f"hydra.launcher.n_jobs={n_jobs!r} is not valid; use a number of workers >= 1, or "
            f"-1 for one per CPU (down to -{cpus} on this machine)"
        )


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


def search_size(config: DictConfig) -> int | None:
    """How many trials a search sweeper will run: its n_trials, less the ended trials its
    persistent study already holds (our Optuna sweeper); None when it does not say. A study
    that holds them all is refused: there is nothing to run."""
    sweeper = config.hydra.sweeper
    if sweeper.get("n_trials") is None:
        return None
    if sweeper._target_ != OUR_OPTUNA:
        return int(sweeper.n_trials)
    direction = (
        OmegaConf.to_object(sweeper.direction)
        if OmegaConf.is_config(sweeper.direction)
        else sweeper.direction
    )
    if direction not in ("minimize", "maximize"):
        raise ValueError(
            f"hydra.sweeper.direction={direction!r}: "
            f"minimize or maximize (one objective; multi-objective search is not supported)"
        )
    from hydra_plugins.sweeps_optuna_sweeper._core import missing_trials

    missing = missing_trials(sweeper.storage, sweeper.study_name, int(sweeper.n_trials))
    if missing == 0:
        raise ValueError(
            f"Optuna study {sweeper.study_name!r} already holds hydra.sweeper.n_trials="
            f"{sweeper.n_trials} ended trials: raise n_trials to search further"
        )
    return missing


def expand_jobs(config: DictConfig) -> list[list[str]] | None:
    """Every job's override list for Hydra's basic sweeper; None for sweepers that decide later."""
    if is_search(config):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # private: see README

    overrides = OverridesParser.create().parse_overrides(sweep_arguments(config))
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


_ABSENT = object()


def validate_jobs(config: DictConfig, jobs: list[list[str]] | None) -> str:
    """Compose every job's config and build its model and data, so that bad input fails before
    the parent run exists. With sweep.compose_cache (the default), composition goes through
    `composition.CachingConfigLoader` (once per distinct set of group choices), which then
    serves the launcher and Hydra's own batch check the same configs from its cache. Returns
    the experiment the jobs go to (one for all of them)."""
    cached = config.sweep.get("compose_cache", True)
    loader = composition.install() if cached else composition.hydra_loader()
    if jobs is None:  # the sweeper picks values later: what is fixed, and one of each range
        parsed = OverridesParser.create().parse_overrides(task_overrides(config))
        jobs = [[str(o.input_line) for o in parsed if not o.is_sweep_override()]]
        jobs[0] += first_values(config)
    seen_data: set[tuple[str, int]] = set()
    names: set[str] = set()
    prefer = config.sweep.get("prefer")
    preferred_key = str(prefer).partition(":")[0] if prefer else None
    have_key = False
    many = len(jobs) >= MANY_JOBS
    if many:  # composing each takes a while: say so before the first line would come
        print(f"Checking {len(jobs)} jobs before the sweep starts ...", flush=True)
    said = time.monotonic()
    for number, job in enumerate(jobs, 1):
        if many and time.monotonic() - said >= PROGRESS_EVERY_S:
            print(f"  {number - 1} of {len(jobs)} jobs checked", flush=True)
            said = time.monotonic()
        cfg = loader.load_sweep_config(config, job)
        names.add(experiment_name(cfg))
        check_settings(cfg)
        if preferred_key and not have_key:
            have_key = OmegaConf.select(cfg, preferred_key, default=_ABSENT) is not _ABSENT
        build_estimator(cfg.model, allowed_targets(cfg))
        data_key = (OmegaConf.to_yaml(cfg.data, resolve=True), int(cfg.cv.folds))
        if data_key not in seen_data:
            seen_data.add(data_key)
            data = load_dataset(cfg.data)
            check_folds(cfg.cv.folds, data.y_train, str(cfg.data.name))
    if preferred_key and not have_key:
        raise SettingsError(
            f"sweep.prefer={prefer!r} names {preferred_key!r}, which no job's config has; use a "
            f"param key as the children record it, e.g. model.n_neighbors:max"
        )
    if len(names) > 1:
        raise SettingsError(
            f"mlflow.experiment_name differs between the jobs ({', '.join(sorted(names))}): a "
            f"sweep is one parent run in one experiment; sweep each experiment on its own"
        )
    return names.pop()


def first_values(config: DictConfig) -> list[str]:
    """For our Optuna sweeper, one override per key it samples, at its first value (a choice's
    first, a range's low end): composing them checks that every key exists before any run. The
    other values are checked in their jobs, which fail as FAILED children."""
    if config.hydra.sweeper._target_ != OUR_OPTUNA:
        return []
    from optuna.distributions import CategoricalDistribution

    from hydra_plugins.sweeps_optuna_sweeper._core import search_space

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + task_overrides(config)
    space, _ = search_space(arguments)
    return [
        f"{key}={dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low}"
        for key, dist in space.items()
    ]


def experiment_name(cfg: DictConfig) -> str:
    """`cfg`'s mlflow.experiment_name, resolved as Hydra would for that job (it may use
    `${hydra:runtime.choices.model}`, which reads the running job's Hydra config)."""
    if "${hydra:" in str(unresolved(cfg.mlflow)["experiment_name"]):
        HydraConfig.instance().set_config(cfg)
    return str(cfg.mlflow.experiment_name)


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
