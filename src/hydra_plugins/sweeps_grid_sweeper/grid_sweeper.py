"""The sweeper class Hydra's plugin scan finds: Hydra's basic sweeper, without its batch check
and without the jobs the app says an earlier attempt finished."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # private: see README
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from . import finished_jobs, launch_numbered


class SweepsGridSweeper(BasicSweeper):
    """Hydra's basic sweeper's grid and options; a job the app says finished in an earlier
    attempt is not launched (its return is the one recorded), and every launched job keeps the
    number it has in the grid (its output folder, its `job_number`). Hydra's batch check
    (`validate_batch_is_legal`: every job's config composed once more) is left out: the app
    swaps this sweeper in only after its own checks composed every job of the grid."""

    def sweep(self, arguments: list[str]) -> Any:
        """Launch the grid batch by batch, as the basic sweeper does, minus the finished jobs."""
        assert self.config is not None and self.launcher is not None
        assert self.hydra_context is not None
        params = [f"{k}={v}" for k, v in (self.params or {}).items()] + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides(params), self.max_batch_size)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns: list[Sequence[JobReturn]] = []
        first = 0  # the batch's first job number
        while not self.is_done():
            batch = self.get_job_batch()
            ended = {
                i: JobReturn(overrides=list(batch[i]), status=JobStatus.COMPLETED, _return_value=v)
                for i, v in finished_jobs(batch).items()
            }
            todo = [i for i in range(len(batch)) if i not in ended]
            launched = launch_numbered(
                self.launcher, [batch[i] for i in todo], [first + i for i in todo]
            )
            ended.update(zip(todo, launched, strict=True))
            results = [ended[i] for i in range(len(batch))]
            for result in results:
                _ = result.return_value  # raises what ended the job, as the basic sweeper
            first += len(batch)
            returns.append(results)
        return returns
