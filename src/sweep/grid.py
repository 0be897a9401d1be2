"""The one door to the grid sweeper (`hydra_plugins.sweeps_grid_sweeper`, through its public
face): a grid sweep runs on it, and a resumed one tells it which jobs finished in an earlier
attempt (they are reported SKIPPED here, in the launching process, and not launched)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.sweeps_grid_sweeper import skip_jobs
from src.sweep.context import SweepContext
from src.sweep.overrides import child_run_name, job_key
from src.sweep.progress import FINISHED_EARLIER, report_outcomes
from src.sweep.racing import BASIC_SWEEPER, is_race

GRID_SWEEPER = "hydra_plugins.sweeps_grid_sweeper.grid_sweeper.SweepsGridSweeper"


def use_grid_sweeper(config: DictConfig, ctx: SweepContext) -> None:
    """A grid (Hydra's basic sweeper, not raced) runs on the grid sweeper: without Hydra's
    batch check (the callback's checks composed every job already), and on a resume without
    the jobs that finished in an earlier attempt. Hydra makes the sweeper after the callback's
    `on_multirun_start`."""
    skip_jobs(None)
    if is_race(config) or str(config.hydra.sweeper._target_) != BASIC_SWEEPER:
        return
    options = OmegaConf.to_container(config.hydra.sweeper, resolve=False)
    assert isinstance(options, dict)
    with read_write(config), open_dict(config):
        config.hydra.sweeper = OmegaConf.create(options | {"_target_": GRID_SWEEPER})
    if ctx.finished:  # a resume: a new sweep has nothing to look up, report or skip
        skip_jobs(partial(finished_in_batch, ctx, config))


def finished_in_batch(
    ctx: SweepContext, config: DictConfig, batch: Sequence[Sequence[str]]
) -> dict[int, float | tuple[float, ...]]:
    """The batch's jobs an earlier attempt finished, by position: their recorded results; each
    is reported SKIPPED, as a job skipped by its worker would be."""
    found = {
        position: ctx.finished[key]
        for position, key in enumerate(job_key(list(job)) for job in batch)
        if key in ctx.finished
    }
    names = [child_run_name(config, list(batch[position]), ctx.swept) for position in found]
    report_outcomes(ctx, [(name, "SKIPPED", FINISHED_EARLIER) for name in names])
    return found
