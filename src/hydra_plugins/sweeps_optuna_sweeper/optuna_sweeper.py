"""The sweeper class Hydra's plugin scan finds: light to import (no Optuna), its work in `_core`."""

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class SweepsOptunaSweeper(Sweeper):
    """Hydra's Optuna sweeper's options, on a current Optuna: `n_jobs` trials running at once,
    each asked as soon as one ends (or in batches: `batches`), run by whatever launcher the app
    has, told back to a study that may persist."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: DictConfig | None,
        user_attrs: DictConfig | None = None,
        batches: bool = False,
    ) -> None:
        self.options = {
            "sampler": sampler,
            "direction": direction,
            "storage": storage,
            "study_name": study_name,
            "n_trials": n_trials,
            "n_jobs": n_jobs,
            "max_failure_rate": max_failure_rate,
            "params": params,
            "user_attrs": user_attrs,
            "batches": batches,
        }
        self.setup_args: dict[str, Any] = {}

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        """Keep what launching needs; the launcher is made when the sweep starts."""
        self.setup_args = {
            "hydra_context": hydra_context,
            "task_function": task_function,
            "config": config,
        }

    def sweep(self, arguments: list[str]) -> Any:
        """Search: ask trials, launch them, tell their results to the study."""
        from . import _core

        return _core.sweep(self.options, self.setup_args, arguments)
