"""The launch itself: the stock joblib launcher's pool and jobs, with Hydra's state pickled once
per launch and restored once per worker.

The stock launcher sends Hydra's whole state with every job (its config, context, task function
and singletons) and every job restores it with `Singleton.set_state`, which re-executes every
Hydra plugin module. Here that state is pickled once per launch, and a worker restores it on its
first job of the launch; its later jobs share it, as jobs share it in-process under Hydra's
basic launcher. The jobs, their ids, numbers, directories and returns are the stock launcher's.

A search that asks a trial whenever one ends (our Optuna sweeper) submits its jobs one by one
(`pool`) to a reusable loky executor, the kind of worker joblib's loky backend runs, with the same
state, restore and watchdog.
"""

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Any

import cloudpickle
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from joblib import Parallel, delayed, effective_n_jobs
from joblib.externals.loky import get_reusable_executor
from omegaconf import DictConfig, open_dict

from .joblib_launcher import SweepsJoblibLauncher

log = logging.getLogger(__name__)

# per worker process: (launch key, hydra context, sweep config, task function) of the launch
# whose state this process holds
_worker: tuple[str, HydraContext, DictConfig, TaskFunction] | None = None
_watching: list[int] = []  # per worker process: the launching process its watchdog watches
WATCH_EVERY_S = 1.0
STOP_GRACE_S = 10.0  # after its SIGINT, how long a worker may take to end its run KILLED


def joblib_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """joblib.Parallel's arguments from the launcher's options, as the stock launcher makes them:
    always the loky backend (threads are incompatible with Hydra), counts as ints."""
    kwargs = {k: v for k, v in options.items() if k != "_target_"}
    kwargs["backend"] = "loky"
    for key in ("pre_dispatch", "batch_size", "max_nbytes"):
        value = kwargs.get(key)
        if value:
            with contextlib.suppress(ValueError):  # e.g. pre_dispatch="2*n_jobs"
                kwargs[key] = int(value)
    return kwargs


def prepare_launch(launcher: SweepsJoblibLauncher) -> Path:
    """Hydra's globals and logging in the launching process; the sweep folder, made."""
    setup_globals()
    assert launcher.config is not None
    assert launcher.task_function is not None
    assert launcher.hydra_context is not None
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    return sweep_dir


def launch_state(launcher: SweepsJoblibLauncher) -> tuple[bytes, bytes]:
    """Hydra's state and the job's (context, config, task function), pickled once a launch."""
    return (
        cloudpickle.dumps(Singleton.get_state()),
        cloudpickle.dumps((launcher.hydra_context, launcher.config, launcher.task_function)),
    )


def launch(
    launcher: SweepsJoblibLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> Sequence[JobReturn]:
    """Run the jobs on a loky pool; their returns, in order."""
    sweep_dir = prepare_launch(launcher)

    kwargs = joblib_kwargs(dict(launcher.joblib))
    log.info(
        "Joblib.Parallel({}) is launching {} jobs".format(
            ",".join(f"{k}={v}" for k, v in kwargs.items()), len(job_overrides)
        )
    )
    log.info(f"Launching jobs, sweep output dir : {sweep_dir}")
    for idx, overrides in enumerate(job_overrides):
        log.info("\t#{} : {}".format(idx, " ".join(filter_overrides(overrides))))

    key, state, launcher_pid = uuid.uuid4().hex, launch_state(launcher), os.getpid()
    runs = Parallel(**kwargs)(
        delayed(execute_job)(initial_job_idx + idx, list(overrides), key, state, launcher_pid)
        for idx, overrides in enumerate(job_overrides)
    )
    assert isinstance(runs, list)
    for run in runs:
        assert isinstance(run, JobReturn)
    return runs


@contextlib.contextmanager
def pool(
    launcher: SweepsJoblibLauncher, slots: int
) -> Iterator[Callable[[Sequence[str], int], Future]]:
    """Submit jobs one by one (overrides, job number -> the future of its return) to a loky
    executor of the launcher's `n_jobs` workers (`slots`: the jobs the caller keeps running;
    those beyond the workers wait in the queue). Leaving on an error (Ctrl-C), the workers are
    interrupted as a Ctrl-C in the terminal interrupts them (SIGINT: a running job ends its run
    KILLED; one that just finished still returns), then killed after STOP_GRACE_S."""
    sweep_dir = prepare_launch(launcher)
    workers = effective_n_jobs(launcher.joblib.get("n_jobs") or 1)
    key, state, pid = uuid.uuid4().hex, launch_state(launcher), os.getpid()
    executor = get_reusable_executor(max_workers=workers)
    log.info(f"A loky pool of {workers} workers runs each job as it is asked, sweep output dir "
             f": {sweep_dir}")  # fmt: skip
    if slots > workers:
        log.warning(f"{slots} jobs kept running for {workers} workers: {slots - workers} of "
                    f"them wait in the pool's queue")  # fmt: skip

    submitted: list[Future] = []

    def submit(overrides: Sequence[str], idx: int) -> Future:
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        submitted.append(executor.submit(execute_job, idx, list(overrides), key, state, pid))
        return submitted[-1]

    try:
        yield submit
    except BaseException:
        log.warning("Interrupted: stopping the jobs still running")
        for process in multiprocessing.active_children():  # this launch's workers
            with contextlib.suppress(ProcessLookupError, TypeError):  # gone; not started
                os.kill(process.pid, signal.SIGINT)  # type: ignore[arg-type]
        wait([f for f in submitted if not f.done()], timeout=STOP_GRACE_S)
        executor.shutdown(wait=True, kill_workers=True)
        raise


def watch_launcher(launcher_pid: int) -> None:
    """In a worker the launching process started: once that process is gone (killed outright,
    it could not stop its workers), interrupt the running job as Ctrl-C would (its run ends
    KILLED), and exit. A worker would otherwise compute on, and a resume would meet its
    RUNNING runs."""
    if _watching or os.getpid() == launcher_pid or os.getppid() != launcher_pid:
        return  # watched already; a job in the launching process; or not its child

    def watch() -> None:
        while os.getppid() == launcher_pid:  # an orphan is given another parent
            time.sleep(WATCH_EVERY_S)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(STOP_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="launcher-watchdog", daemon=True).start()
    _watching.append(launcher_pid)


def execute_job(
    idx: int, overrides: list[str], key: str, state: tuple[bytes, bytes], launcher_pid: int
) -> JobReturn:
    """Run one job in a worker; restore the launch's Hydra state first if this worker lacks it."""
    global _worker
    watch_launcher(launcher_pid)
    setup_globals()
    if _worker is None or _worker[0] != key:
        singleton_state, job_state = state
        # restore the singletons first: set_state re-executes every plugin module, redefining
        # their config classes, and the configs unpickled after it refer to the new classes
        Singleton.set_state(cloudpickle.loads(singleton_state))
        hydra_context, config, task_function = cloudpickle.loads(job_state)
        _worker = (key, hydra_context, config, task_function)
    _, hydra_context, config, task_function = _worker
    sweep_config = hydra_context.config_loader.load_sweep_config(config, overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    return run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=task_function,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
