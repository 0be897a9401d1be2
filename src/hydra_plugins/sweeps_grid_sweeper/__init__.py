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
