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

It lives in the `hydra_plugins` namespace because Hydra instantiates launchers only from there
(pyproject.toml maps `hydra_plugins` to src/hydra_plugins). No `from __future__ import
annotations`: Hydra's plugin scan executes this module before it is in sys.modules, and
dataclasses cannot resolve string annotations then.
"""

import importlib
import logging
import os
import sys
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

# per worker process: (launch key, hydra context, sweep config, task function) of the launch
# whose state this process holds
_worker: tuple[str, HydraContext, DictConfig, TaskFunction] | None = None
_prestart: list[tuple[threading.Thread, list[int]]] = []  # launching process: workers starting


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
        finish_prestart()  # the pool it started is the one Parallel reuses now
        runs = Parallel(**joblib_cfg)(
            delayed(execute_job)(initial_job_idx + idx, list(overrides), key, state)
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


def prestart(launcher_config: DictConfig, module: str | None = None) -> None:
    """Start the loky workers of the coming launch now, in a thread, each importing `module`
    (default: the module the app runs as, e.g. `python -m src.train`), so they start up while
    the launching process still prepares the sweep; `launch` waits for them, and Parallel reuses
    the pool because it gets the same arguments."""
    if _prestart:
        return
    options = OmegaConf.to_container(launcher_config, resolve=True)
    assert isinstance(options, dict)
    kwargs = joblib_kwargs(options)
    n_workers = effective_n_jobs(kwargs.get("n_jobs"))
    if module is None:
        main_spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = main_spec.name if main_spec is not None else None
    started: list[int] = []

    def start() -> None:
        try:
            started.extend(
                Parallel(**kwargs)(delayed(_start_worker)(module) for _ in range(n_workers))
            )
        except Exception as e:  # the launch starts its workers itself and reports what fails
            log.debug(f"Pre-starting joblib workers failed: {e!r}")

    thread = threading.Thread(target=start, name="joblib-prestart", daemon=True)
    thread.start()
    _prestart.append((thread, started))


def finish_prestart() -> list[int]:
    """Wait until the workers `prestart` started are up; their pids (none if none started)."""
    pids: list[int] = []
    while _prestart:
        thread, started = _prestart.pop()
        thread.join()
        pids += started
    return pids


def _start_worker(module: str | None) -> int:
    if module is not None:
        importlib.import_module(module)
    return os.getpid()


def execute_job(idx: int, overrides: list[str], key: str, state: tuple[bytes, bytes]) -> JobReturn:
    """Run one job in a worker; restore the launch's Hydra state first if this worker lacks it."""
    global _worker
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
