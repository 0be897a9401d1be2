"""Hydra's joblib launcher, with each worker process set up once per launch instead of per job.

`hydra/launcher=joblib` selects this launcher wherever this package is installed: its config
replaces hydra-joblib-launcher's in Hydra's ConfigStore under the same name (Hydra imports plugin
modules in path order, and this one comes after hydra_joblib_launcher). It is that plugin's
`JoblibLauncher` with the same options and defaults, the same loky process pool and the same
jobs, ids and returns; setting `hydra.launcher._target_` to the stock class runs the stock one.

What differs is what a job costs in a worker. The stock launcher sends Hydra's whole state with
every job (its config, context, task function and singletons, ~15 ms to pickle in the launching
process), and every job restores it with `Singleton.set_state`, which re-executes every Hydra
plugin module (~50 ms here). This one pickles that state once per launch, and each worker
restores it once, on its first job of the launch; later jobs in that worker share it, as jobs
share it in-process under Hydra's basic launcher.

Workers start faster too: the pool forks them from one server process that has imported the
app once (multiprocessing's forkserver, with the app's modules preloaded), where loky would start
each worker as a new interpreter importing everything itself (~3-4 s of CPU each for an app that
imports mlflow and scikit-learn). They are still fresh processes that never ran a job or held a
connection, and they get loky's thread limits (`OMP_NUM_THREADS` and the like: cores / workers).
`run_in_worker` runs other work that needs those imports on one of them (the sweep callback's
parent run and summary), so the launching process need not import it too.

It lives in the `hydra_plugins` namespace because Hydra instantiates launchers only from there
(pyproject.toml maps `hydra_plugins` to src/hydra_plugins). No `from __future__ import
annotations`: Hydra's plugin scan executes this module before it is in sys.modules, and
dataclasses cannot resolve string annotations then.
"""

import contextlib
import logging
import multiprocessing
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cloudpickle
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_joblib_launcher import joblib_launcher
from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from joblib import Parallel, delayed, effective_n_jobs
from joblib._parallel_backends import LokyBackend
from joblib.externals.loky.backend import context as loky_context
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

# per worker process: (launch key, hydra context, sweep config, task function) of the launch
# whose state this process holds
_worker: tuple[str, HydraContext, DictConfig, TaskFunction] | None = None
_prestart: list[tuple[threading.Thread, list[int]]] = []  # launching process: workers starting
_preloaded: list[str] = []  # launching process: the modules its forkserver imports
_FORKSERVER = "forkserver" in multiprocessing.get_all_start_methods()
T = TypeVar("T")


@dataclass
class SweepsJoblibLauncherConf(JobLibLauncherConf):
    """hydra-joblib-launcher's options and defaults, for this launcher."""

    _target_: str = "hydra_plugins.sweeps_joblib_launcher.SweepsJoblibLauncher"


ConfigStore.instance().store(
    group="hydra/launcher",
    name="joblib",
    node=SweepsJoblibLauncherConf,
    provider="mlflow-hydra-sweeps",
)


class SweepsJoblibLauncher(joblib_launcher.JoblibLauncher):
    """hydra-joblib-launcher's launcher; a worker restores Hydra's state once per launch."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """Run the jobs on a loky pool of `n_jobs` workers; their returns, in order."""
        setup_globals()
        assert self.config is not None
        assert self.task_function is not None
        assert self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)

        joblib_cfg = joblib_kwargs(self.joblib)
        log.info(
            "Joblib.Parallel({}) is launching {} jobs".format(
                ",".join(f"{k}={v}" for k, v in joblib_cfg.items()), len(job_overrides)
            )
        )
        log.info(f"Launching jobs, sweep output dir : {sweep_dir}")
        for idx, overrides in enumerate(job_overrides):
            log.info("\t#{} : {}".format(idx, " ".join(filter_overrides(overrides))))

        key = uuid.uuid4().hex
        state = (
            cloudpickle.dumps(Singleton.get_state()),
            cloudpickle.dumps((self.hydra_context, self.config, self.task_function)),
        )
        limits = thread_limits(joblib_cfg)
        finish_prestart()  # the pool it started is the one Parallel reuses now
        with forked_workers():  # if prestart made no pool
            runs = Parallel(**joblib_cfg)(
                delayed(execute_job)(initial_job_idx + idx, list(overrides), key, state, limits)
                for idx, overrides in enumerate(job_overrides)
            )
        assert isinstance(runs, list)
        for run in runs:
            assert isinstance(run, JobReturn)
        return runs


def joblib_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """joblib.Parallel's arguments from the launcher's options, as the stock launcher makes them."""
    kwargs = {k: v for k, v in options.items() if k != "_target_"}
    kwargs["backend"] = "loky"  # as the stock launcher: threads are incompatible with Hydra
    process_joblib_cfg(kwargs)
    return kwargs


def pool_kwargs(launcher_config: DictConfig) -> dict[str, Any]:
    """joblib.Parallel's arguments from the launcher's config node, as `launch` makes them from
    its options: equal arguments are what lets `prestart`, `run_in_worker` and the launch share
    one pool."""
    options = OmegaConf.to_container(launcher_config, resolve=True)
    assert isinstance(options, dict)
    return joblib_kwargs(options)


def thread_limits(kwargs: dict[str, Any]) -> dict[str, str]:
    """The environment loky gives each worker of this pool (`OMP_NUM_THREADS` and the like set
    to cores / workers unless the environment sets them), from joblib's own method: loky passes
    it only to workers it starts itself, not to forked ones."""
    return LokyBackend()._prepare_worker_env(max(1, effective_n_jobs(kwargs.get("n_jobs"))))


def start_forkserver(modules: Sequence[str]) -> None:
    """Start the process the workers will fork from, importing `modules` (the app's slow
    imports) once, now, while this process goes on; its pools fork their workers from it.
    Nothing else starts: a sweep that stops before its launch leaves only this process, which
    ends with it. Once per process; without forkserver on the platform, nothing."""
    if not _FORKSERVER or _preloaded:
        return
    from multiprocessing import forkserver

    _preloaded.extend(modules)
    forkserver.set_forkserver_preload(_preloaded)
    forkserver.ensure_running()


@contextlib.contextmanager
def forked_workers() -> Iterator[None]:
    """Within: a new loky pool forks its workers from the forkserver (see `start_forkserver`;
    started by the pool, with nothing imported, if not started before) instead of starting each
    one as a new interpreter."""
    if not _FORKSERVER:
        yield
        return
    previous = loky_context.get_start_method()
    loky_context.set_start_method("forkserver", force=True)
    try:
        yield
    finally:
        loky_context.set_start_method(previous, force=True)


def prestart(launcher_config: DictConfig) -> None:
    """Start the workers of the coming launch now, in a thread, so they start up while the
    launching process still prepares the sweep; `launch` waits for them, and Parallel reuses
    the pool because it gets the same arguments."""
    if _prestart:
        return
    kwargs = pool_kwargs(launcher_config)
    n_workers = effective_n_jobs(kwargs.get("n_jobs"))
    started: list[int] = []

    def start() -> None:
        try:
            with forked_workers():
                started.extend(Parallel(**kwargs)(delayed(os.getpid)() for _ in range(n_workers)))
        except Exception as e:  # the launch starts its workers itself and reports what fails
            log.debug(f"Pre-starting joblib workers failed: {e!r}")

    thread = threading.Thread(target=start, name="joblib-prestart", daemon=True)
    thread.start()
    _prestart.append((thread, started))


def run_in_worker(launcher_config: DictConfig, function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` on a worker of the pool this launcher's launches use (the one `prestart`
    started, else a new one): for work that needs what the workers have imported and the
    launching process has not."""
    finish_prestart()  # one pool: Parallel reuses it for the same arguments
    with forked_workers():
        (result,) = Parallel(**pool_kwargs(launcher_config))([delayed(function)(*args)])
    return result


def finish_prestart() -> list[int]:
    """Wait until the workers `prestart` started are up; their pids (none if none started)."""
    pids: list[int] = []
    while _prestart:
        thread, started = _prestart.pop()
        thread.join()
        pids += started
    return pids


def _limit_threads(limits: dict[str, str]) -> None:
    os.environ.update(limits)  # for libraries loaded from now on
    try:  # and those already loaded where the worker was forked from
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    apis = {"openmp": limits["OMP_NUM_THREADS"], "blas": limits["OPENBLAS_NUM_THREADS"]}
    threadpool_limits({api: int(n) for api, n in apis.items() if n.isdigit()})


def execute_job(
    idx: int, overrides: list[str], key: str, state: tuple[bytes, bytes], limits: dict[str, str]
) -> JobReturn:
    """Run one job in a worker; restore the launch's Hydra state first if this worker lacks it."""
    global _worker
    setup_globals()
    if _worker is None or _worker[0] != key:
        _limit_threads(limits)
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
