"""The launches: jobs submitted as Hydra's submitit and Ray launchers submit them, then every job
waited for. A job whose process died before it returned (killed, its node lost) comes back as
the launcher's error for that job, which the app's handler (`lost_job`) makes a FAILED child;
the stock launchers raise it instead, ending the sweep with its other jobs unaccounted for.

The Ray launch also leaves `object_store_memory` unset (hydra-ray-launcher 1.2.2 sets it, and
Ray refuses it when connecting to a running cluster: hydra issue 2893), and asks Ray not to
rerun a task whose worker died (`max_retries: 0`, unless set): `sweep.resume` reruns it, as a
job that failed.

A local submitit job watches the process that launched it: submitit's controller process, the
job's parent, outlives a launching process killed outright (SIGKILL, the out-of-memory killer),
so the job itself ends (KILLED) within seconds rather than computing on. A SLURM job runs on
another host and is the cluster's to cancel (`scancel`); a resume is refused while its RUNNING
child's heartbeat is fresh.

Interrupted while waiting (Ctrl-C, or SIGTERM, which the exit guard makes one, also under Ray,
whose `ray.init` would make it exit at once), the launching process cancels the jobs still
running and gives them a moment to end their runs KILLED before the exit guard closes the
sweep: no job goes on computing, and no child turns FINISHED, after its sweep was closed
without it.
"""

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from . import lost_job

log = logging.getLogger(__name__)

Submit = Callable[[Sequence[str], int], Future]  # a job's overrides and number -> its return

CANCEL_GRACE_S = 15.0  # how long cancelled jobs get to end their runs before the sweep closes
WATCH_EVERY_S = 1.0  # how often a local submitit job checks that its launching process lives
STOP_GRACE_S = 10.0  # after its SIGINT, how long such a job may take to end its run KILLED


def wait_for(
    result: Callable[[], Any], launcher: Any, overrides: Sequence[str], idx: int
) -> JobReturn:
    """Job `idx`'s return, or, if its process died, what `lost_job` makes of the error."""
    try:
        return result()
    except Exception as e:  # noqa: BLE001 - any error of the wait is this one job's
        return lost_job(job_config(launcher, overrides, idx), e)


def wait_all(
    waits: Sequence[Callable[[], JobReturn]], cancel: Callable[[], None]
) -> list[JobReturn]:
    """Every job's return, in order; interrupted, `cancel` the jobs first, then re-raise."""
    try:
        return [wait() for wait in waits]
    except KeyboardInterrupt:
        log.warning("Interrupted: cancelling the jobs still running")
        cancel()
        raise


def job_config(launcher: Any, overrides: Sequence[str], idx: int) -> DictConfig:
    """Job `idx`'s composed config, as the launchers compose it."""
    assert launcher.config is not None and launcher.hydra_context is not None
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(
        launcher.config, list(overrides)
    )
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"job_id_for_{idx}"  # the worker sets its own
        sweep_config.hydra.job.num = idx
    return sweep_config


def log_jobs(job_overrides: Sequence[Sequence[str]], first: int) -> None:
    """Each job's number and overrides, as Hydra's launchers log them."""
    for idx, overrides in enumerate(job_overrides, start=first):
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")


def submitit_executor(launcher: Any, cluster: str) -> Any:
    """hydra-submitit-launcher 1.2's executor, with the sweep folder made."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    assert launcher.config is not None
    params = dict(launcher.params)
    init_keys = {"max_num_timeout"}
    init_params = {"folder": params["submitit_folder"]}
    init_params |= {f"{cluster}_{k}": v for k, v in params.items() if k in init_keys}
    executor = submitit.AutoExecutor(cluster=cluster, **init_params)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{
            k if k in base else f"{cluster}_{k}": v
            for k, v in params.items()
            if k not in init_keys | {"submitit_folder"}
        }
    )
    log.info(f"Submitit '{cluster}' sweep output dir : {launcher.config.hydra.sweep.dir}")
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in launcher.config.hydra.sweep:
        os.chmod(sweep_dir, mode=int(str(launcher.config.hydra.sweep.mode), 8))
    if cluster == "local":  # its jobs are this host's processes: they watch this one
        launcher.launching = (os.getpid(), start_time(os.getpid()))
    return executor


def submitit_params(overrides: Sequence[str], idx: int) -> tuple[Any, ...]:
    """The arguments of job `idx` for the launcher's `__call__` in the job's process."""
    return (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())


def launch_submitit(
    launcher: Any, cluster: str, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> Sequence[JobReturn]:
    """hydra-submitit-launcher 1.2's launch, waiting for every job."""
    executor = submitit_executor(launcher, cluster)
    log_jobs(job_overrides, initial_job_idx)
    job_params = [
        submitit_params(overrides, idx)
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx)
    ]
    jobs = executor.map_array(launcher, *zip(*job_params, strict=True))
    waits = [
        partial(wait_for, partial(first_result, job), launcher, overrides, idx)
        for idx, (job, overrides) in enumerate(
            zip(jobs, job_overrides, strict=True), initial_job_idx
        )
    ]
    return wait_all(waits, partial(cancel_submitit, jobs))


@contextmanager
def submitit_pool(launcher: Any, cluster: str) -> Iterator[Submit]:
    """Submit jobs one by one (overrides, job number -> the future of its return), each a
    submitit job of its own; leaving on an error (Ctrl-C) cancels those still running."""
    executor = submitit_executor(launcher, cluster)
    jobs: list[Any] = []

    def start(overrides: Sequence[str], idx: int) -> Callable[[], JobReturn]:
        log_jobs([overrides], idx)
        jobs.append(executor.submit(launcher, *submitit_params(overrides, idx)))
        return jobs[-1].result

    with waiting(launcher, start, partial(cancel_submitit, jobs)) as submit:
        yield submit


@contextmanager
def waiting(
    launcher: Any,
    start: Callable[[Sequence[str], int], Callable[[], JobReturn]],
    cancel: Callable[[], None],
) -> Iterator[Submit]:
    """`submit` for jobs that `start` starts (returning how to wait for its return): a daemon
    thread waits for each (it never holds the process's exit), and a job whose process died is
    `lost_job`'s, as in `wait_for`. Leaving on an error, `cancel` the jobs still running: their
    errors are then the interrupt's, not lost jobs (no FAILED child is made for a job
    cancelled)."""
    stopping = threading.Event()

    def wait(
        result: Callable[[], JobReturn], future: Future, overrides: Sequence[str], idx: int
    ) -> None:
        try:  # a future always ends
            try:
                value = result()
            except Exception as e:
                if stopping.is_set():
                    raise
                value = lost_job(job_config(launcher, overrides, idx), e)
            future.set_result(value)
        except BaseException as e:  # noqa: BLE001 - the job's error is its future's
            future.set_exception(e)

    def submit(overrides: Sequence[str], idx: int) -> Future:
        future: Future = Future()
        args = (start(overrides, idx), future, overrides, idx)
        threading.Thread(target=wait, args=args, name=f"job-wait-{idx}", daemon=True).start()
        return future

    try:
        yield submit
    except BaseException:
        log.warning("Interrupted: cancelling the jobs still running")
        stopping.set()
        cancel()
        raise


def start_time(pid: int) -> str:
    """A process's start time (in clock ticks since boot, from /proc): with its pid, it names the
    process (a pid the system reused is another start time); "" when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # field 22; the name before ")" may hold spaces


def watch_launching_process(pid: int, started: str) -> None:
    """In a local submitit job: once the process that launched it is gone (killed outright, it
    could not cancel its jobs; submitit's controller process, the job's parent, lives on), end
    the job as a cancel would (SIGINT: its run ends KILLED), then exit."""
    if pid == os.getpid():
        return

    def watch() -> None:
        while start_time(pid) == started:
            time.sleep(WATCH_EVERY_S)
        log.warning(f"The launching process {pid} is gone: ending this job")
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(STOP_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="launcher-watchdog", daemon=True).start()


def cancel_submitit(jobs: Sequence[Any]) -> None:
    """Cancel the submitit jobs not done (SIGINT locally, scancel on SLURM); wait for them a
    while."""
    for job in jobs:
        if not job.done():
            job.cancel(check=False)
    deadline = time.monotonic() + CANCEL_GRACE_S
    while any(not job.done() for job in jobs) and time.monotonic() < deadline:
        time.sleep(0.2)


def first_result(job: Any) -> JobReturn:
    """A submitit job's return (a job array task returns a list of one)."""
    return job.results()[0]


def ray_task(launcher: Any) -> Any:
    """The remote function that runs a job, on the cluster `ray.init` reaches, with the sweep
    folder made."""
    import ray

    setup_globals()
    assert launcher.config is not None and launcher.hydra_context is not None
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log.info(f"Ray Launcher sweep output dir: {sweep_dir}")
    init = OmegaConf.to_container(launcher.ray_cfg.init, resolve=True)
    remote = OmegaConf.to_container(launcher.ray_cfg.remote, resolve=True)
    assert isinstance(init, dict) and isinstance(remote, dict)
    if not ray.is_initialized():
        sigterm = signal.getsignal(signal.SIGTERM)
        ray.init(**{str(k): v for k, v in init.items()})
        if sigterm is not None:  # ray.init makes SIGTERM exit at once, without cancelling
            signal.signal(signal.SIGTERM, sigterm)
    remote.setdefault("max_retries", 0)
    return ray.remote(**{str(k): v for k, v in remote.items()})(run_on_ray)


def launch_ray(
    launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> Sequence[JobReturn]:
    """hydra-ray-launcher 1.2's launch on the cluster `ray.init` reaches, waiting for every job."""
    import ray

    task = ray_task(launcher)
    log.info(f"Ray Launcher is launching {len(job_overrides)} jobs")
    log_jobs(job_overrides, initial_job_idx)
    configs = [
        job_config(launcher, overrides, idx)
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx)
    ]
    state = Singleton.get_state()
    runs = [
        task.remote(launcher.hydra_context, config, launcher.task_function, state)
        for config in configs
    ]
    waits = [
        partial(wait_for, partial(ray.get, run), launcher, overrides, idx)
        for idx, (run, overrides) in enumerate(
            zip(runs, job_overrides, strict=True), initial_job_idx
        )
    ]
    return wait_all(waits, partial(cancel_ray, runs))


@contextmanager
def ray_pool(launcher: Any) -> Iterator[Submit]:
    """Submit jobs one by one (overrides, job number -> the future of its return), each a Ray
    task; leaving on an error (Ctrl-C) cancels those still running."""
    import ray

    task = ray_task(launcher)
    state = Singleton.get_state()
    runs: list[Any] = []

    def start(overrides: Sequence[str], idx: int) -> Callable[[], JobReturn]:
        log_jobs([overrides], idx)
        config = job_config(launcher, overrides, idx)
        run = task.remote(launcher.hydra_context, config, launcher.task_function, state)
        runs.append(run)

        def result() -> JobReturn:
            return ray.get(run)  # type: ignore[no-any-return]

        return result

    with waiting(launcher, start, partial(cancel_ray, runs)) as submit:
        yield submit


def cancel_ray(runs: Sequence[Any]) -> None:
    """Cancel the Ray tasks not done (a KeyboardInterrupt in each); wait for them a while."""
    import ray

    for run in runs:
        ray.cancel(run)
    ray.wait(list(runs), num_returns=len(runs), timeout=CANCEL_GRACE_S)


def run_on_ray(
    hydra_context: HydraContext,
    sweep_config: DictConfig,
    task_function: TaskFunction,
    singleton_state: dict[Any, Any],
) -> JobReturn:
    """One job on a Ray worker: Hydra's state restored, then the job run as Hydra runs it."""
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    return run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=sweep_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
