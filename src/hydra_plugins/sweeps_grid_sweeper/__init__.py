"""A grid as Hydra's basic sweeper makes it (the same grid, batches and job numbers), without
its batch check (the app composed every job before), and on a resume without the jobs an
earlier attempt finished (`SweepsGridSweeper`, swapped in for Hydra's basic sweeper by the app).

Which jobs finished, and what they returned, is the app's to say: it hands the sweeper a
function in the launching process before the sweep starts (`skip_jobs`); without one, every
job is launched, as Hydra's basic sweeper launches them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# a batch's jobs (override lists) -> position in the batch -> the return value of the job an
# earlier attempt finished (those jobs are not launched)
Finished = Callable[[Sequence[Sequence[str]]], dict[int, Any]]
_finished: list[Finished] = []


def skip_jobs(finished: Finished | None) -> None:
    """Make `finished` what says which of a batch's jobs are not launched (None: none)."""
    _finished[:] = [] if finished is None else [finished]


def finished_jobs(batch: Sequence[Sequence[str]]) -> dict[int, Any]:
    """The batch's jobs an earlier attempt finished, by position: their return values."""
    return _finished[0](batch) if _finished else {}


def launch_numbered(
    launcher: Any, batch: Sequence[Sequence[str]], numbers: Sequence[int]
) -> list[Any]:
    """Launch a batch whose jobs carry these numbers (their folders, their `job_number`): one
    launch per run of consecutive numbers (a launcher numbers a launch's jobs from its first
    on), the returns in batch order."""
    returns: list[Any] = []
    start = 0
    for end in range(1, len(batch) + 1):
        if end == len(batch) or numbers[end] != numbers[end - 1] + 1:
            returns += launcher.launch(batch[start:end], initial_job_idx=numbers[start])
            start = end
    return returns
