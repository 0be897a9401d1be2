"""`sweep.race=true`: a grid raced in rounds, each round one CV repeat of every configuration
still in the race (`SweepsRaceSweeper`, swapped in for Hydra's basic sweeper by the app).

Which configurations leave the race is the app's to say: it hands the sweeper a judge in the
launching process before the sweep starts (`judge_rounds`), and, when the sweep resumes, what
its earlier attempts recorded; without a judge the sweeper refuses to race. A job learns its
round, and the run its earlier rounds recorded, from these environment variables, set for it
through `hydra.job.env_set` (so a job on any launcher sees them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

ROUND_ENV = "HYDRA_RACE_ROUND"  # the round this job runs: 0, 1, ... (one CV repeat each)
RUN_ENV = "HYDRA_RACE_RUN"  # the run id the configuration's first round returned


class Recorded(NamedTuple):
    """A configuration as an earlier attempt of the sweep left it: its run, the rounds it
    completed, and the round after which the race eliminated it (None: still in the race)."""

    run_id: str
    rounds: int
    eliminated_after: int | None = None


class Earlier(str):
    """In a round's results: the run id of a configuration whose round ran in an earlier
    attempt (its folds are in the store, not in a job's return value). Tell it by
    `isinstance(value, str)`: Hydra's plugin scan executes this module again, remaking the
    class."""


# (round, [(job index, its job's return value or Earlier(run id)), ...] in job order) -> the
# job indices that go on to the next round
Judge = Callable[[int, list[tuple[int, Any]]], set[int]]
# the grid's jobs (override lists) -> job index -> what earlier attempts recorded of it
Recall = Callable[[list[list[str]]], dict[int, Recorded]]
_judges: list[tuple[Judge, Recall | None]] = []


def judge_rounds(judge: Judge | None, recall: Recall | None = None) -> None:
    """Make `judge` what decides, after each round, who goes on, and `recall` what a resumed
    race starts from (None: no race may run)."""
    _judges[:] = [] if judge is None else [(judge, recall)]


def judge(round_index: int, results: list[tuple[int, Any]]) -> set[int]:
    """The judge's decision on a round's `results`; an error when the app gave no judge."""
    if not _judges:
        raise RuntimeError("the race sweeper needs the app's judge: sweep.race=true in src.train")
    return _judges[0][0](round_index, results)


def recall(jobs: list[list[str]]) -> dict[int, Recorded]:
    """What earlier attempts of this sweep recorded of each job (empty for a new sweep)."""
    found = _judges[0][1] if _judges else None
    return found(jobs) if found is not None else {}


def round_overrides(job: list[str], round_index: int, run_id: str | None) -> list[str]:
    """A configuration's job in a round: its overrides, and the environment naming the round
    (and, after the first, the run its first round recorded)."""
    env = {ROUND_ENV: str(round_index)} | ({RUN_ENV: run_id} if run_id else {})
    return job + [f"++hydra.job.env_set.{k}={v}" for k, v in env.items()]
