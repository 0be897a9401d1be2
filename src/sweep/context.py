"""What every job of a sweep knows about it (`SweepContext`), and which sweep this process runs.

The callback builds the context in the launching process, and Hydra's launchers carry it (inside
the pickled callback) to whatever process runs a job, where `on_job_start` makes it current.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from src.tracking.heartbeat import Heartbeat
from src.tracking.store import RunTarget

_current: SweepContext | None = None  # the running job's sweep, in the process that runs it


@dataclass(frozen=True)
class SweepContext:
    """What every job of a sweep needs to know, built once in the launching process."""

    target: RunTarget
    sweep_dir: str
    n_jobs: int | None
    started_at: float
    max_failures: int | None
    swept: tuple[str, ...] = ()  # the keys that vary between jobs: what a run name shows
    search: bool = False  # a sweeper that picks values as it goes (Optuna)
    finished: dict[str, float | tuple[float, ...]] = field(
        default_factory=dict
    )  # resumed: job key -> its metric
    rounds: int = 1  # a race's most rounds (sweep.race: cv.repeats)
    resumed: bool = False  # this attempt resumes an earlier one (sweep.resume)
    # this attempt of the sweep (a resume is another): its children carry it (store.ATTEMPT_TAG)
    attempt: str = field(default_factory=lambda: uuid.uuid4().hex)


def current_sweep() -> SweepContext | None:
    """The sweep the current job belongs to, or None for a single run."""
    return _current


def set_current_sweep(ctx: SweepContext | None) -> None:
    """Make `ctx` the sweep of the job this process runs next (None: no sweep)."""
    global _current
    _current = ctx


@dataclass
class Launch:
    """The sweep this process launches, from its parent's opening to its close: the context its
    jobs get and the parent's heartbeat. The callback owns it (the exit guard holds it while
    armed); it never travels to a job."""

    context: SweepContext
    heartbeat: Heartbeat
