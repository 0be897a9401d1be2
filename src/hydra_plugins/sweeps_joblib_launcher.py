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

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cloudpickle
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_joblib_launcher import joblib_launcher
from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from joblib import Parallel, delayed
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

# per worker process: (launch key, hydra context, sweep config, task function) of the launch
# whose state this process holds
_worker: tuple[str, HydraContext, DictConfig, TaskFunction] | None = None


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

        joblib_cfg = self.joblib
        joblib_cfg["backend"] = "loky"  # as the stock launcher: threads are incompatible with Hydra
        process_joblib_cfg(joblib_cfg)
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
        runs = Parallel(**joblib_cfg)(
            delayed(execute_job)(initial_job_idx + idx, list(overrides), key, state)
            for idx, overrides in enumerate(job_overrides)
        )
        assert isinstance(runs, list)
        for run in runs:
            assert isinstance(run, JobReturn)
        return runs


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
