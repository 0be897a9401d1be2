"""The race: the grid expanded as Hydra's basic sweeper expands it, then round after round the
configurations still in the race launched as one batch (in `max_batch_size` chunks) through the
configured launcher, their results handed to the app's judge in job order.

The first round is a job per configuration. A later round deals the configurations to at most
`blocks` jobs, one by one in job order as cards are dealt (neighbours in a grid often cost
alike), and each job returns its block's results in the block's order.
Job order, not completion order: the launcher returns a batch's results in the order it was
given, so the judge sees the same round on every launcher, however the blocks fell. Hydra's
batch check (`validate_batch_is_legal`: every job's config composed once more) is left out, as
the grid sweeper leaves it out: the app races a grid only after its checks composed every job.
A resumed race starts from the last round every configuration still in it completed: that
round is judged again on the recorded folds (with the configurations it eliminated: the same
folds give the same decision), and only the rounds not yet run are launched.
Job numbers (a job's folder, its child's `job_number`) are the same in every attempt: the
first round's job of configuration i is job i, as in the grid, and a later round r's block b is
job r x (number of configurations) + b; a resume into the same sweep folder therefore writes
over no first-round job that finished, and over a later round's job folders only when it runs
that round again (its blocks dealt anew from the configurations still to run).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from hydra_plugins.sweeps_grid_sweeper import launch_numbered

from . import Earlier, block_overrides, judge, recall, round_overrides

log = logging.getLogger(__name__)


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
    earlier = recall(jobs)
    run_ids = {i: e.run_id for i, e in earlier.items()}
    done = {i: e.rounds for i, e in earlier.items()}
    out = {i: e.eliminated_after for i, e in earlier.items() if e.eliminated_after is not None}
    alive = [i for i in range(len(jobs)) if i not in out]
    start = min((done.get(i, 0) for i in alive), default=0)
    if start > 0:  # judge the last complete round again, with those it eliminated
        entrants = [i for i in range(len(jobs)) if i in alive or out[i] == start]
        survivors = judge(start - 1, [(i, Earlier(run_ids[i])) for i in entrants])
        alive = [i for i in alive if i in survivors]
    returns: list[list[JobReturn]] = []
    for round_index in range(start, int(sweeper.rounds)):
        if not alive:
            break
        results: list[tuple[int, Any]] = [
            (i, Earlier(run_ids[i])) for i in alive if done.get(i, 0) > round_index
        ]
        to_run = [i for i in alive if done.get(i, 0) <= round_index]
        if round_index == 0:  # a job per configuration: each makes its child
            blocks = [[i] for i in to_run]
        else:
            n = min(len(to_run), sweeper.blocks or len(to_run))
            blocks = [to_run[b::n] for b in range(n)]
        size = sweeper.max_batch_size or max(1, len(blocks))
        for first in range(0, len(blocks), size):
            chunk = blocks[first : first + size]
            if round_index == 0:
                numbers = [i for (i,) in chunk]
                batch = [round_overrides(jobs[i], 0, None) for (i,) in chunk]
            else:
                numbers = [round_index * len(jobs) + first + b for b in range(len(chunk))]
                batch = [
                    block_overrides([(run_ids[i], jobs[i]) for i in block], round_index)
                    for block in chunk
                ]  # fmt: skip
            ended = launch_numbered(sweeper.launcher, batch, numbers)
            returns.append(list(ended))
            for block, result in zip(chunk, ended, strict=True):
                value = result.return_value  # raises what ended the job, as the basic sweeper
                if round_index == 0:
                    (index,) = block
                    run_id = getattr(value, "run_id", None)
                    if run_id is not None:
                        run_ids[index] = str(run_id)
                    results.append((index, value))
                    continue
                # a later round's job returns one result per configuration of its block; any
                # other value (a job that failed or was lost whole) is every one's result
                parts = value if isinstance(value, list) and len(value) == len(block) else None
                results += [(i, value if parts is None else parts[k]) for k, i in enumerate(block)]
        survivors = judge(round_index, sorted(results, key=lambda r: r[0]))
        alive = [i for i in alive if i in survivors]
    return returns
