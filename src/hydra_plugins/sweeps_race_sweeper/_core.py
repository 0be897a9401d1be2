"""The race: the grid expanded as Hydra's basic sweeper expands it, then round after round the
configurations still in the race launched as one batch (in `max_batch_size` chunks) through the
configured launcher, their returns handed to the app's judge in job order.

Job order, not completion order: the launcher returns a batch's results in the order it was
given, so the judge sees the same round on every launcher. A configuration keeps its job's
overrides in every round; the round and the run of its first round travel in its environment.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from . import ROUND_ENV, RUN_ENV, judge

log = logging.getLogger(__name__)


def round_overrides(job: list[str], round_index: int, run_id: str | None) -> list[str]:
    """A configuration's job in a round: its overrides, and the environment naming the round
    (and, after the first, the run its first round recorded)."""
    env = {ROUND_ENV: str(round_index)} | ({RUN_ENV: run_id} if run_id else {})
    return job + [f"++hydra.job.env_set.{k}={v}" for k, v in env.items()]


def race(sweeper: Any, arguments: list[str]) -> list[list[JobReturn]]:
    """Run the race; every round's returns, in launch order."""
    assert sweeper.config is not None and sweeper.launcher is not None
    params = [f"{k}={v}" for k, v in (sweeper.params or {}).items()] + list(arguments)
    parser = OverridesParser.create(config_loader=sweeper.hydra_context.config_loader)
    jobs = [job for batch in sweeper.split_arguments(parser.parse_overrides(params), None)
            for job in batch]  # fmt: skip
    sweep_dir = Path(str(sweeper.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(sweeper.config, sweep_dir / "multirun.yaml")
    alive = list(range(len(jobs)))
    run_ids: dict[int, str] = {}
    returns: list[list[JobReturn]] = []
    job_idx = 0  # every round's jobs get numbers of their own (their output folders)
    for round_index in range(int(sweeper.rounds)):
        results: list[tuple[int, Any]] = []
        size = sweeper.max_batch_size or len(alive)
        for start in range(0, len(alive), size):
            chunk = alive[start : start + size]
            batch = [round_overrides(jobs[i], round_index, run_ids.get(i)) for i in chunk]
            if round_index == 0:
                sweeper.validate_batch_is_legal(batch)
            done = sweeper.launcher.launch(batch, initial_job_idx=job_idx)
            job_idx += len(batch)
            returns.append(list(done))
            for index, result in zip(chunk, done, strict=True):
                value = result.return_value  # raises what ended the job, as the basic sweeper
                run_id = getattr(value, "run_id", None)
                if round_index == 0 and run_id is not None:
                    run_ids[index] = str(run_id)
                results.append((index, value))
        survivors = judge(round_index, results)
        alive = [i for i in alive if i in survivors]
        if not alive:
            break
    return returns
