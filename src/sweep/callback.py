"""The Hydra callback that makes a multirun one MLflow parent run: only Hydra's hooks, each
delegating to the module that does the work.

Every hook that touches MLflow for the parent runs in the launching process, under every
launcher; a job's hooks run wherever its launcher runs it, with the sweep's context carried
inside this (pickled) callback object.
"""

from __future__ import annotations

import gc
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.sweeps_cluster_launchers import handle_lost_jobs
from src.sweep.checks import check_launcher, validate_jobs
from src.sweep.context import Launch, SweepContext, set_current_sweep
from src.sweep.credentials import CredentialsError, keep_credentials_out
from src.sweep.exit_guard import ExitGuard
from src.sweep.grid import use_grid_sweeper
from src.sweep.lost_job import lost_job
from src.sweep.overrides import expand_jobs, unresolved, varying_keys
from src.sweep.parent import fail_parent_run, finish_parent_run, open_sweep
from src.sweep.progress import job_outcomes, reset_progress
from src.sweep.racing import check_race, is_race, start_race, stop_race, use_race_sweeper
from src.sweep.search import check_sweeper_targets, is_search, mark_trials, search_size
from src.sweep.task import describe_error, settle_gc
from src.tracking.store import without_credentials


def launcher_workers(*, _root_: DictConfig) -> int:
    """`${workers:}`: how many jobs the launcher runs at once (1 for Hydra's basic launcher),
    so an Optuna sweep keeps every worker busy."""
    n_jobs = OmegaConf.select(_root_, "hydra.launcher.n_jobs", default=1)
    if n_jobs is None:
        return 1
    cpus = os.cpu_count() or 1
    return max(1, cpus + 1 + int(n_jobs)) if int(n_jobs) < 0 else int(n_jobs)  # joblib's -1 = all


OmegaConf.register_new_resolver("workers", launcher_workers, replace=True)
# Hydra's launchers this app replaces by its own (hydra_plugins/sweeps_*): the same options
OUR_LAUNCHERS = {
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher":
        "hydra_plugins.sweeps_joblib_launcher.joblib_launcher.SweepsJoblibLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher":
        "hydra_plugins.sweeps_cluster_launchers.submitit_launcher.SweepsLocalLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher":
        "hydra_plugins.sweeps_cluster_launchers.submitit_launcher.SweepsSlurmLauncher",
    "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher":
        "hydra_plugins.sweeps_cluster_launchers.ray_launcher.SweepsRayLauncher",
}  # fmt: skip


def use_our_launchers(config: DictConfig) -> None:
    """`hydra/launcher=joblib|submitit_local|submitit_slurm|ray` in this app runs our launcher,
    with the same options: Hydra instantiates the launcher after this callback's
    `on_multirun_start`. Only this app's sweeps (the ones with this callback) are affected, and a
    `hydra.launcher._target_=...` typed on the command line is kept."""
    typed = any(
        o.startswith("hydra.launcher._target_=") for o in unresolved(config.hydra.overrides.hydra)
    )
    ours = OUR_LAUNCHERS.get(str(config.hydra.launcher._target_))
    if ours is not None and not typed:
        with read_write(config), open_dict(config):
            config.hydra.launcher._target_ = ours


class MlflowSweepCallback(Callback):
    """Owns the sweep's parent run: creates it before jobs start and closes it at the end."""

    def __init__(self) -> None:
        self.context: SweepContext | None = None  # what every job gets (pickled with this)
        self.launch: Launch | None = None  # this process's: never pickled
        self.exit_guard: ExitGuard | None = None  # this process's, with the launch

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Keep a store's password out of what Hydra saves of a single run."""
        try:
            keep_credentials_out(config)
        except CredentialsError as e:  # Hydra only warns about a callback's exception
            raise SystemExit(f"Run not started: {e}") from e

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check every job, then open the store and the experiment and create the parent run."""
        use_our_launchers(config)
        try:
            keep_credentials_out(config)
            check_race(config)
            check_launcher(config)
            check_sweeper_targets(config)
            jobs = expand_jobs(config)
            n_jobs = len(jobs) if jobs is not None else search_size(config)
            experiment = validate_jobs(config, jobs)
            sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
            target, finished, heartbeat = open_sweep(config, jobs, sweep_dir, experiment)
            reset_progress(sweep_dir)
            use_race_sweeper(config, launcher_workers(_root_=config))
        except Exception as e:
            # Hydra only warns about a callback's exception and launches the jobs anyway:
            # SystemExit stops the sweep here, before any job and before any parent exists
            raise SystemExit(f"Sweep not started: {describe_error(e)}") from e
        self.context = SweepContext(
            target=target,
            sweep_dir=str(sweep_dir),
            n_jobs=n_jobs,
            started_at=time.time(),
            max_failures=config.sweep.max_failures,
            swept=varying_keys(config),
            search=is_search(config),
            finished=finished,
            rounds=int(config.cv.repeats) if is_race(config) else 1,
            resumed=bool(config.sweep.resume),
        )
        mark_trials(config, str(target.parent_run_id))
        start_race(config, self.context)
        use_grid_sweeper(config, self.context)
        handle_lost_jobs(partial(lost_job, self.context))  # our cluster launchers' lost jobs
        print(
            f"Sweep parent run {target.parent_run_id} in experiment "
            f"{experiment!r} ({n_jobs or 'unknown number of'} jobs) at "
            f"{without_credentials(target.tracking_uri)}",
            flush=True,
        )
        self.launch = Launch(self.context, heartbeat)
        self.exit_guard = ExitGuard(self.launch)
        self.exit_guard.arm()

    def __getstate__(self) -> dict[str, Any]:
        """What a job gets: the context, not this process's launch (its heartbeat thread)."""
        return {"context": self.context, "launch": None, "exit_guard": None}

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Hand the sweep context to the task in whatever process runs this job."""
        set_current_sweep(self.context)
        os.environ.pop("MLFLOW_RUN_ID", None)  # an inherited run id would hijack the child

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Forget the sweep context, so a reused worker process starts the next job clean, and
        drop the job's configs from its JobReturn: Hydra's sweeper keeps every JobReturn to the
        end and joblib pickles them back to the launching process; the sweepers read only
        `return_value`, and MLflow holds the configs."""
        if self.context is not None:
            job_return.cfg = None
            job_return.hydra_cfg = None
        set_current_sweep(None)
        settle_gc()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Close the parent: FINISHED unless every job failed; exit non-zero if any failed."""
        launch, guard = self.launch, self.exit_guard
        if launch is None or guard is None:
            return
        ctx = launch.context
        handle_lost_jobs(None)
        stop_race()
        # what the sweep left is not garbage: frozen, the collector walks only what the summary
        # allocates, and Python's last collection at exit skips it too
        gc.freeze()
        try:
            counts = finish_parent_run(config, launch)
        except Exception as e:  # the children are safe in MLflow; say why the summary is missing
            fail_parent_run(launch, e)
            guard.disarm()
            parent_id = ctx.target.parent_run_id
            failed, ended = job_outcomes(ctx)  # the closing count, from the progress file
            message = (
                f"Summarising sweep {parent_id} failed: {type(e).__name__}: {e}; "
                f"{failed} of {ctx.n_jobs or ended} jobs failed"
            )
            raise SystemExit(message) from e
        guard.disarm()
        gc.freeze()
        problems = []
        if counts["n_failed"]:
            problems.append(f"{counts['n_failed']} of {counts['n_children']} jobs failed")
        missing = (ctx.n_jobs or 0) - counts["n_children"]
        if missing > 0:
            stopped = ctx.max_failures is not None and counts["n_failed"] > ctx.max_failures
            why = "sweep.max_failures stopped the sweep" if stopped else "see the lines above"
            problems.append(f"{missing} of {ctx.n_jobs} jobs have no run ({why})")
        if problems:
            raise SystemExit(
                f"{'; '.join(problems)}. A failed job's traceback is the artifact "
                f"error/traceback.txt of its FAILED child run of {ctx.target.parent_run_id}"
            )
