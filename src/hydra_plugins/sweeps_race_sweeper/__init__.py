"""`sweep.race=true`: a grid raced in rounds, each round one CV repeat of every configuration
still in the race (`SweepsRaceSweeper`, swapped in for Hydra's basic sweeper by the app).

The first round is one job per configuration: each makes its configuration's child run. A later
round is at most `blocks` jobs (the launcher's workers), each running the round's folds of a
block of configurations and returning their scores; the app's judge records them on the
children and says which configurations go on. A round of cheap folds would otherwise cost more
in jobs than in folds.

Which configurations leave the race is the app's to say: it hands the sweeper a judge in the
launching process before the sweep starts (`judge_rounds`), and, when the sweep resumes, what
its earlier attempts recorded; without a judge the sweeper refuses to race. A job learns its
round, and (a later round's) the configurations of its block, from these environment
variables, set for it through `hydra.job.env_set` (so a job on any launcher sees them).
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

ROUND_ENV = "HYDRA_RACE_ROUND"  # the round this job runs: 0, 1, ... (one CV repeat each)
RUN_ENV = "HYDRA_RACE_RUN"  # the run id the configuration's first round returned
# a later round's block: its configurations' (run id, job overrides), JSON compressed, in
# URL-safe base64 (an override's value may hold quotes, commas and `${`, which Hydra would
# read; compressed, the line Hydra logs for the job is a fifth as long)
BLOCK_ENV = "HYDRA_RACE_BLOCK"


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


# (round, [(job index, its result or Earlier(run id)), ...] in job order) -> the job indices
# that go on to the next round; a result is the configuration's job's return value in the first
# round, its part of its block's return value after it
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


def block_overrides(block: list[tuple[str, list[str]]], round_index: int) -> list[str]:
    """The job that runs a later round of a block of configurations, each (the run its first
    round recorded, its job's overrides): the block's first configuration's job, with the round
    and the block in its environment."""
    payload = zlib.compress(json.dumps(block, separators=(",", ":")).encode(), 9)
    code = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    env = {ROUND_ENV: str(round_index), BLOCK_ENV: f"'{code}'"}
    return block[0][1] + [f"++hydra.job.env_set.{k}={v}" for k, v in env.items()]


def job_block(env: Mapping[str, str]) -> list[tuple[str, list[str]]] | None:
    """The block of configurations a later round's job runs, (run id, overrides) each, from
    its environment `env`; None for any other job."""
    code = env.get(BLOCK_ENV)
    if not code:
        return None
    payload = zlib.decompress(base64.urlsafe_b64decode(code + "=" * (-len(code) % 4)))
    return [(str(run_id), [str(o) for o in overrides]) for run_id, overrides in json.loads(payload)]
