"""`sweep.race=true`: a grid raced in rounds, each round one CV repeat of every configuration
still in the race (`SweepsRaceSweeper`, swapped in for Hydra's basic sweeper by the app).

Which configurations leave the race is the app's to say: it hands the sweeper a judge in the
launching process before the sweep starts (`judge_rounds`); without one the sweeper refuses to
race. A job learns its round, and the run its earlier rounds recorded, from these environment
variables, set for it through `hydra.job.env_set` (so a job on any launcher sees them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ROUND_ENV = "HYDRA_RACE_ROUND"  # the round this job runs: 0, 1, ... (one CV repeat each)
RUN_ENV = "HYDRA_RACE_RUN"  # the run id the configuration's first round returned

# (round, [(job index, its job's return value), ...] in job order) -> the job indices that
# go on to the next round
Judge = Callable[[int, list[tuple[int, Any]]], set[int]]
_judges: list[Judge] = []


def judge_rounds(judge: Judge | None) -> None:
    """Make `judge` what decides, after each round, who goes on (None: no race may run)."""
    _judges[:] = [] if judge is None else [judge]


def judge(round_index: int, results: list[tuple[int, Any]]) -> set[int]:
    """The judge's decision on a round's `results`; an error when the app gave no judge."""
    if not _judges:
        raise RuntimeError(
            "hydra/sweeper=race needs the app's judge (sweep.race=true in src.train)"
        )
    return _judges[0](round_index, results)
