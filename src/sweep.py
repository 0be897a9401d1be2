"""A Hydra multirun as one MLflow parent run: the callback that owns the parent, and job wiring.

The parent is created before any job starts; its id travels to every job inside this callback
object, which Hydra's launchers pickle into whatever process runs the job (a joblib worker, a
cluster node), and `on_job_start` hands it to the task.

mlflow, and the modules of ours that import it, are imported where they are used: Hydra imports
this module before the sweep starts, and `on_multirun_start` starts hydra/launcher=joblib's
workers first thing, so that they import (~4 s) while this process validates the jobs
(tests/test_launcher.py checks that importing it and src.train loads neither mlflow nor
scikit-learn). With those workers, the parent's MLflow work (`open_sweep`, `finish_parent_run`)
runs on one of them, and the launching process never imports mlflow; otherwise it runs here.
"""

from __future__ import annotations

import atexit
import fcntl
import gc
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src import composition

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


PROGRESS_FILE = ".sweep_progress.tsv"
MIN_JOBS_FOR_PLOT_PROCESS = 16  # below, its start (~0.8 s) outweighs ~0.1 s a job
# what a joblib worker imports before its first job: the work, and the store's ~1 s
WORKER_MODULES = ("src.job", "mlflow.store.tracking.sqlalchemy_store")
GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)
_gc_settled: list[bool] = []  # per process: settle_gc has run
T = TypeVar("T")


def launcher_workers(*, _root_: DictConfig) -> int:
    """`${workers:}`: how many jobs the launcher runs at once (1 for Hydra's basic launcher),
    so an Optuna sweep asks for trials in batches that keep every worker busy."""
    n_jobs = OmegaConf.select(_root_, "hydra.launcher.n_jobs", default=1)
    if n_jobs is None:
        return 1
    cpus = os.cpu_count() or 1
    return max(1, cpus + 1 + int(n_jobs)) if int(n_jobs) < 0 else int(n_jobs)  # joblib's -1 = all


OmegaConf.register_new_resolver("workers", launcher_workers, replace=True)
_current: SweepContext | None = None  # set by on_job_start in the process that runs the job


@dataclass(frozen=True)
class RunTarget:
    """Where a job's run goes: the store, the experiment, and the parent run when in a sweep.
    Here, not in src.tracking, so that the launching process can hold one without importing
    MLflow."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None


@dataclass(frozen=True)
class SweepContext:
    """What every job of a sweep needs to know, built once in the launching process."""

    target: RunTarget
    sweep_dir: str
    n_jobs: int | None
    started_at: float
    max_failures: int | None
    swept: tuple[str, ...] = ()  # the keys that vary between jobs: what a run name shows
    finished: dict[str, float] = field(default_factory=dict)  # resumed: job key -> its metric


def current_sweep() -> SweepContext | None:
    """The sweep the current job belongs to, or None for a single run."""
    return _current


def run_task(task: Callable[[DictConfig], float], cfg: DictConfig) -> float:
    """Run one job. In a sweep: a job finished by an earlier attempt (sweep.resume) is skipped,
    a failed job is reported and the sweep goes on, returning NaN so no sweeper takes it for a
    result, and once sweep.max_failures is exceeded the jobs not yet started are skipped."""
    ctx = current_sweep()
    if ctx is None:
        return task(cfg)
    if _exit_guard.get("signal"):  # a signal's KeyboardInterrupt can be swallowed by a __del__
        raise KeyboardInterrupt(f"signal {_exit_guard['signal']}: the sweep is stopping")
    from src.recovery import job_key

    overrides = job_overrides()
    name = child_run_name(cfg, overrides, ctx.swept)
    key = job_key(overrides)
    if key in ctx.finished:
        report_progress(ctx, name, "SKIPPED", "(finished in an earlier attempt)")
        return ctx.finished[key]
    if ctx.max_failures is not None and failures_so_far(ctx) > ctx.max_failures:
        report_progress(ctx, name, "SKIPPED", f"(sweep.max_failures={ctx.max_failures} exceeded)")
        return float("nan")
    try:
        value = task(cfg)
    except Exception as e:
        report_progress(ctx, name, "FAILED", detail=f"{type(e).__name__}: {e}")
        return float("nan")
    report_progress(ctx, name, "FINISHED", detail=f"{cfg.sweep.metric}={value:.4f}")
    return value


def settle_gc() -> None:
    """After the first job of this process: collect, freeze what survived (modules, caches,
    the sweep's configs) out of the garbage collector's reach, and collect the young
    generation less often. A job allocates a great many short-lived containers (OmegaConf
    nodes, matplotlib artists, SQLAlchemy rows); with the defaults the collector ran ~5,900
    times in a 144-job sweep, its older passes over 280,000+ long-lived objects: ~8% of the
    sweep. Old generations are still collected, so garbage cycles do not accumulate."""
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
    return list(HydraConfig.get().overrides.task)


def model_choice(cfg: DictConfig) -> str:
    """The chosen `model` option (e.g. `knn`), or the estimator's class name outside Hydra."""
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("model")
        if choice:
            return str(choice)
    return str(cfg.model._target_).rsplit(".", 1)[-1]


def child_run_name(cfg: DictConfig, overrides: list[str], swept: tuple[str, ...] = ()) -> str:
    """A short readable run name: `knn n_neighbors=5 weights=distance`; in a sweep only the
    swept keys are named, since the others are the same for every child."""
    parts = [model_choice(cfg)]
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in ("model", "sweeps", "mlflow") or key.startswith(
            ("hydra", "mlflow.", "data.path")
        ):
            continue
        if swept and key not in swept:
            continue
        parts.append(f"{key.removeprefix('model.')}={value}")
    return " ".join(parts)


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


def _duration(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}min"


def expand_jobs(config: DictConfig) -> list[list[str]] | None:
    """Every job's override list for Hydra's basic sweeper; None for sweepers that decide later."""
    if _is_search(config):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def validate_jobs(config: DictConfig, jobs: list[list[str]] | None) -> None:
    """Compose every job's config and build its model and data, so that bad input fails before
    the parent run exists. Composition goes through `composition.CachingConfigLoader` (once per
    distinct set of group choices), which then serves the launcher and Hydra's own batch check
    the same configs from its cache."""
    from src.data import load_frame
    from src.pipeline import build_estimator

    loader = composition.install()
    if jobs is None:  # the sweeper picks values later: check what is fixed already
        parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
        jobs = [[str(o.input_line) for o in parsed if not o.is_sweep_override()]]
    seen_data: set[str] = set()
    for job in jobs:
        cfg = loader.load_sweep_config(config, job)
        build_estimator(cfg.model)
        data_key = OmegaConf.to_yaml(cfg.data, resolve=True)
        if data_key not in seen_data:
            seen_data.add(data_key)
            load_frame(cfg.data)


class MlflowSweepCallback(Callback):
    """Owns the sweep's parent run: creates it before jobs start and closes it at the end."""

    def __init__(self) -> None:
        self.context: SweepContext | None = None
        # hydra/launcher=joblib with 2+ workers: its config. The parent's MLflow work then runs
        # on one of its workers, forked with MLflow imported, and this process never imports it
        self.workers: DictConfig | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Start the joblib workers, validate the jobs, then create the store, the experiment
        and the parent run."""
        from hydra_plugins.sweeps_joblib_launcher import (  # Hydra's plugin scan imported it
            SweepsJoblibLauncher,
            prestart,
            start_forkserver,
        )

        ours = f"{SweepsJoblibLauncher.__module__}.{SweepsJoblibLauncher.__qualname__}"
        if config.hydra.launcher._target_ == ours and launcher_workers(_root_=config) > 1:
            # first: what its workers fork from imports MLflow and the work (~4 s, once) while
            # this process validates the jobs
            start_forkserver(WORKER_MODULES)
            self.workers = config.hydra.launcher
        try:
            jobs = expand_jobs(config)
            n_jobs = len(jobs) if jobs is not None else config.hydra.sweeper.get("n_trials")
            if uses_plot_process(config, n_jobs):  # first: it starts up while the sweep does
                from src.plots import start_renderer

                start_renderer()
            validate_jobs(config, jobs)
            if self.workers is not None:  # valid: the workers start
                prestart(self.workers)
            # resolved here, where Hydra resolved it (`${now:...}` differs in another process)
            sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
            target, finished = self._run(open_sweep, config, jobs, sweep_dir, os.getpid())
        except (ValueError, HydraException, OmegaConfBaseException) as e:
            _not_started(e)
        self.context = SweepContext(
            target=target,
            sweep_dir=str(sweep_dir),
            n_jobs=n_jobs,
            started_at=time.time(),
            max_failures=config.sweep.max_failures,
            swept=tuple(
                k for k, v in swept_values(config).items() if len(v) > 1 or _is_search(config)
            ),
            finished=finished,
        )
        print(
            f"Sweep parent run {target.parent_run_id} in experiment "
            f"{config.mlflow.experiment_name!r} ({n_jobs or 'unknown number of'} jobs) at "
            f"{target.tracking_uri}",
            flush=True,
        )
        _install_exit_guard(self.context)

    def _run(self, function: Callable[..., T], config: DictConfig, *args: Any) -> T:
        """`function(config, *args)` here, or with hydra/launcher=joblib on one of its workers
        (which have MLflow imported; what they print goes to this process's stdout), there with
        Hydra's resolvers registered, as here."""
        if self.workers is None:
            return function(config, *args)
        from hydra_plugins.sweeps_joblib_launcher import run_in_worker

        return run_in_worker(self.workers, _as_in_hydra, function, config, *args)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Hand the sweep context to the task in whatever process runs this job."""
        global _current
        _current = self.context
        os.environ.pop("MLFLOW_RUN_ID", None)  # an inherited run id would hijack the child

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Forget the sweep context, so a reused worker process starts the next job clean, and
        drop the job's configs from its JobReturn: Hydra's sweeper keeps every JobReturn to the
        end (memory grew ~170 MB over 1,000 jobs) and joblib pickles them back to the launching
        process; the sweepers read only `return_value`, and MLflow holds the configs."""
        global _current
        if _current is not None:
            job_return.cfg = None
            job_return.hydra_cfg = None
        _current = None
        settle_gc()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Close the parent: FINISHED unless every job failed; exit non-zero if any failed."""
        _stop_renderer()
        if self.context is None:
            return
        # Nothing the sweep left (imports, configs, its jobs' returns) is garbage the summary
        # needs collected: frozen, the collector walks only what the summary allocates (the
        # summary took ~1.35 s instead of ~1.0 when the jobs ran in workers, where settle_gc did
        # not run in this process), and Python's last collection at exit skips it too (~1.3 s).
        gc.freeze()
        try:
            self._close_parent(config)
        finally:
            gc.freeze()  # and what the summary left

    def _close_parent(self, config: DictConfig) -> None:
        assert self.context is not None
        try:
            counts = self._run(finish_parent_run, config, self.context)
        except Exception as e:  # the children are safe in MLflow; say why the summary is missing
            from mlflow.tracking import MlflowClient

            from src import tracking

            client = MlflowClient(self.context.target.tracking_uri)
            parent_id = self.context.target.parent_run_id
            tracking.record_failure(client, parent_id, e)
            tracking.with_retries(lambda: client.set_terminated(parent_id, "FAILED"))
            _exit_guard["context"] = None
            raise SystemExit(
                f"Summarising sweep {parent_id} failed: {type(e).__name__}: {e}"
            ) from e
        _exit_guard["context"] = None
        if counts["n_failed"]:
            skipped = (self.context.n_jobs or 0) - counts["n_children"]
            stop = f" ({skipped} not started: sweep.max_failures)" if skipped > 0 else ""
            raise SystemExit(
                f"{counts['n_failed']} of {counts['n_children']} jobs failed{stop}; their "
                f"tracebacks are the artifact error/traceback.txt of each FAILED child run of "
                f"{self.context.target.parent_run_id}"
            )


def uses_plot_process(config: DictConfig, n_jobs: int | None) -> bool:
    """Whether child plots get a process of their own (`mlflow.plot_process`): only when this
    process runs the jobs (Hydra's basic launcher); `auto` also wants a second core and jobs
    enough to repay the process's start."""
    setting = config.mlflow.get("plot_process", "auto")
    in_process = str(config.hydra.launcher._target_).endswith("BasicLauncher")
    if not (config.mlflow.log_plots and in_process) or setting is False:
        return False
    if setting is True:
        return True
    if setting != "auto":
        raise ValueError(f"mlflow.plot_process={setting!r}: expected auto, true or false")
    many = n_jobs is None or n_jobs >= MIN_JOBS_FOR_PLOT_PROCESS
    return (os.cpu_count() or 1) >= 2 and many


def _stop_renderer() -> None:
    if "src.plots" in sys.modules:  # plots imported: a renderer may run
        sys.modules["src.plots"].stop_renderer()


def _not_started(e: Exception) -> NoReturn:
    _stop_renderer()
    from hydra_plugins.sweeps_joblib_launcher import finish_prestart

    finish_prestart()  # joblib workers may be starting: let them come up, to end cleanly at exit
    # Hydra only warns about a callback's exception; SystemExit stops the sweep here, before any
    # run exists
    raise SystemExit(f"Sweep not started: {e}") from e


def _as_in_hydra(function: Callable[..., T], config: DictConfig, *args: Any) -> T:
    """`function(config, *args)` in another process, with Hydra's resolvers (`${now:...}` and
    the like) registered, as in the launching process."""
    from hydra.core.utils import setup_globals

    setup_globals()
    return function(config, *args)


class SweepSetupError(ValueError):
    """The tracking store, or the sweep that sweep.resume names, cannot be opened."""


def open_sweep(
    config: DictConfig, jobs: list[list[str]] | None, sweep_dir: Path, owner_pid: int
) -> tuple[RunTarget, dict[str, float]]:
    """Open the store and the experiment, end runs whose process is gone, and create the parent
    run (of process `owner_pid`, writing to `sweep_dir`), or reopen the one sweep.resume names;
    the parent's run target, and the finished jobs' results (job key -> metric) when resuming."""
    from mlflow.tracking import MlflowClient

    from src import tracking
    from src.recovery import mark_stale_runs, reopen_sweep, resume_parent
    from src.summary import SummaryError

    try:
        uri = tracking.resolve_tracking_uri(config.mlflow.tracking_uri)
        experiment_id = tracking.ensure_experiment(uri, config.mlflow.experiment_name)
    except tracking.TrackingError as e:
        raise SweepSetupError(str(e)) from e
    commit, dirty = tracking.git_info()
    base = RunTarget(uri, experiment_id, None, commit, dirty)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(uri)
    for run in mark_stale_runs(client, experiment_id):
        print(
            f"Marked stale run {run.info.run_name!r} ({run.info.run_id}) FAILED: its "
            f"process is gone",
            flush=True,
        )
    finished: dict[str, float] = {}
    if config.sweep.resume:
        try:
            parent = resume_parent(client, experiment_id, str(config.sweep.resume))
        except SummaryError as e:
            raise SweepSetupError(str(e)) from e
        parent_id = parent.info.run_id
        finished = reopen_sweep(client, parent)
        print(f"Resuming sweep {parent_id}: {len(finished)} finished jobs are kept", flush=True)
    else:
        parent_id = create_parent_run(config, base, jobs, sweep_dir, owner_pid)
    return RunTarget(uri, experiment_id, parent_id, commit, dirty), finished


def create_parent_run(
    config: DictConfig,
    base: RunTarget,
    jobs: list[list[str]] | None,
    sweep_dir: Path,
    owner_pid: int | None = None,
) -> str:
    """The parent run: tagged as a sweep, with the swept keys and their values as params, and
    as a run of process `owner_pid` (by default this one)."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    from src import tracking

    swept = swept_values(config)
    name = f"sweep {config.hydra.runtime.choices.get('model', '')} " + " ".join(
        f"{k.removeprefix('model.')}={','.join(v)}" for k, v in swept.items()
    )
    client = MlflowClient(base.tracking_uri)
    tags = {
        "sweep": "true",
        "sweep_dir": str(sweep_dir),
        "sweeper": str(config.hydra.sweeper._target_),
        "launcher": str(config.hydra.launcher._target_),
        "hydra_overrides": " ".join(config.hydra.overrides.task),
        "sweep_metric": str(config.sweep.metric),
        "sweep_direction": str(config.sweep.direction),
    }
    run = tracking.with_retries(
        lambda: client.create_run(
            base.experiment_id,
            run_name=name[:250],
            tags=tracking.run_tags(base, name[:250], tags, owner_pid),
        )
    )
    params = [
        Param(tracking.mlflow_key(f"sweep.{k}"), ",".join(v)[:6000]) for k, v in swept.items()
    ]
    params.append(Param("sweep.n_jobs", str(len(jobs) if jobs is not None else "unknown")))
    sampler = OmegaConf.select(config, "hydra.sweeper.sampler")
    if sampler is not None:  # a search sweeper (Optuna): record how it searches
        params += [
            Param("sweep.sampler", str(sampler.get("_target_", "")).rsplit(".", 1)[-1]),
            Param("sweep.sampler_seed", str(sampler.get("seed"))),
            Param("sweep.n_trials", str(config.hydra.sweeper.get("n_trials"))),
            Param("sweep.direction", str(config.hydra.sweeper.get("direction"))),
        ]
    tracking.with_retries(lambda: client.log_batch(run.info.run_id, params=params))
    return run.info.run_id


def _is_search(config: DictConfig) -> bool:
    """A sweeper that picks values as it goes (Optuna): every param of its space is swept."""
    return not str(config.hydra.sweeper._target_).endswith("BasicSweeper")


def swept_values(config: DictConfig) -> dict[str, list[str]]:
    """The swept keys and the values each takes (the sweeper's params, then the command line,
    which wins); a continuous search space is kept as written, e.g. `interval(0.1,10)`."""
    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    swept: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        if not override.is_sweep_override():
            swept.pop(override.key_or_group, None)  # a later single value replaces a sweep
            continue
        key = override.key_or_group
        if override.is_discrete_sweep():
            swept[key] = [str(v) for v in override.sweep_string_iterator()]
        else:
            swept[key] = [str(override.input_line).partition("=")[2]]
    return swept


def finish_parent_run(config: DictConfig, ctx: SweepContext) -> dict[str, int]:
    """Summarise the sweep onto the parent and into the sweep folder, run the registry gate if
    asked (registry.enabled), then end the parent."""
    from mlflow.tracking import MlflowClient

    from src import tracking
    from src.summary import summarize_sweep

    parent_id = ctx.target.parent_run_id
    client = MlflowClient(ctx.target.tracking_uri)
    summary = summarize_sweep(ctx.target.tracking_uri, parent_id, Path(ctx.sweep_dir))
    record_search_result(client, ctx, summary)
    if config.registry.enabled and summary.best is not None:
        from src.register import default_model_name, describe, register_best

        name = config.registry.name or default_model_name(str(config.mlflow.experiment_name))
        decision = register_best(client, summary, name, config.registry.min_improvement)
        print(describe(decision), flush=True)
    counts = summary.counts
    all_failed = counts["n_children"] > 0 and counts["n_finished"] == 0
    stopped = ctx.max_failures is not None and counts["n_failed"] > ctx.max_failures
    status = "FAILED" if all_failed or stopped else "FINISHED"
    if stopped:
        reason = f"stopped by sweep.max_failures={ctx.max_failures}: {counts['n_failed']} failed"
        tracking.with_retries(lambda: client.set_tag(parent_id, "end_reason", reason))
    tracking.with_retries(lambda: client.set_terminated(parent_id, status))
    finished, failed, total = counts["n_finished"], counts["n_failed"], counts["n_children"]
    counted = f"{finished} finished, {failed} failed of {total} children"
    lines = [f"Sweep {parent_id} {status}: {counted}"]
    best = summary.best
    if best is not None:
        score = f"{summary.metric}={best[summary.metric]:.4f}"
        lines.append(f"Best: {best['run_name']} ({best['run_id']}) {score}")
    files = Path(ctx.sweep_dir) / "sweep_summary.md"
    lines.append(f"Summary: {files} (and on the parent run, under summary/)")
    print("\n".join(lines), flush=True)  # at once: this may run in a joblib worker
    return counts


def record_search_result(client: MlflowClient, ctx: SweepContext, summary: Any) -> None:
    """A search sweeper's own verdict (Optuna's optimization_results.yaml) on the parent: the best
    value, the best params, and the child run that holds that trial."""
    from mlflow.entities import Metric, RunTag

    from src import tracking

    results = Path(ctx.sweep_dir) / "optimization_results.yaml"
    if not results.is_file():
        return
    verdict = OmegaConf.load(results)
    best_params = {str(k): str(v) for k, v in verdict.get("best_params", {}).items()}
    table = summary.table
    match = table[table["status"] == "FINISHED"]
    for key, value in best_params.items():
        if key in match:
            match = match[match[key].astype(str) == value]
    tags = {"search_best_params": json.dumps(best_params)}
    if len(match):
        tags["search_best_run_id"] = str(match.iloc[0]["run_id"])
    parent_id = ctx.target.parent_run_id
    now = int(time.time() * 1000)
    metrics = []
    if verdict.get("best_value") is not None:
        metrics.append(Metric("search_best_value", float(verdict.best_value), now, 0))
    tracking.with_retries(
        lambda: client.log_batch(
            parent_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()]
        )
    )
    tracking.with_retries(lambda: client.log_artifact(parent_id, str(results), "summary"))


_exit_guard: dict[str, Any] = {"context": None}


def _install_exit_guard(ctx: SweepContext) -> None:
    """If the process ends before `on_multirun_end` (an error, Ctrl-C, SIGTERM), what finished
    is still summarised, and the parent and any child still RUNNING end KILLED."""
    _exit_guard["context"] = ctx
    if not _exit_guard.get("installed"):
        atexit.register(_close_parent_on_exit)
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler, None):
                signal.signal(signum, _raise_keyboard_interrupt)
        _exit_guard["installed"] = True


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    # also remembered: if this exception is raised inside a __del__ or a GC callback, Python
    # only prints it, so run_task checks the flag before every job
    _exit_guard["signal"] = signum
    raise KeyboardInterrupt(f"signal {signum}")


def _close_parent_on_exit() -> None:
    ctx: SweepContext | None = _exit_guard.get("context")
    if ctx is None:
        return
    _exit_guard["context"] = None
    # An interrupt inside a store call leaves that call's unfinished read open in the frames of
    # its traceback, which Python keeps until exit (sys.last_traceback); on sqlite it holds a
    # lock every write below would wait on, then fail ("database is locked": parent RUNNING)
    sys.last_type = sys.last_value = sys.last_traceback = None
    gc.collect()
    from mlflow.tracking import MlflowClient

    from src.summary import children_of, summarize_sweep

    parent_id = ctx.target.parent_run_id
    try:
        client = MlflowClient(ctx.target.tracking_uri)
        parent = client.get_run(parent_id)
        if parent.info.status != "RUNNING":
            return
        reason = "interrupted before the sweep finished"
        for child in children_of(client, parent):
            if child.info.status == "RUNNING":  # its worker was stopped with the sweep
                client.set_tag(child.info.run_id, "end_reason", reason)
                client.set_terminated(child.info.run_id, "KILLED")
        try:
            summarize_sweep(ctx.target.tracking_uri, parent_id, Path(ctx.sweep_dir))
        finally:
            client.set_tag(parent_id, "end_reason", reason)
            client.set_terminated(parent_id, "KILLED")
        print(
            f"Sweep parent run {parent_id} ended KILLED; the summary of what finished is in "
            f"{ctx.sweep_dir}",
            file=sys.stderr,
        )
    except Exception as e:  # noqa: BLE001 - at exit, report rather than raise
        print(f"Could not close sweep {parent_id}: {e}", file=sys.stderr)
