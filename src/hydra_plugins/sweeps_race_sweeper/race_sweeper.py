"""The sweeper class Hydra's plugin scan finds: light to import, its work in `_core`."""

from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # private: see README
from omegaconf import DictConfig


class SweepsRaceSweeper(BasicSweeper):
    """Hydra's basic sweeper's grid and options, run in `rounds` rounds: every round launches
    the configurations still in the race (a later round in at most `blocks` jobs; None: one
    job per configuration), and the app's judge says who goes on."""

    def __init__(
        self,
        max_batch_size: int | None,
        params: DictConfig | None = None,
        rounds: int = 1,
        blocks: int | None = None,
    ) -> None:
        super().__init__(max_batch_size, params)  # type: ignore[arg-type]
        self.rounds, self.blocks = rounds, blocks

    def sweep(self, arguments: list[str]) -> Any:
        """Race the grid: round after round, launch the survivors, then ask the judge."""
        from . import _core

        return _core.race(self, arguments)
