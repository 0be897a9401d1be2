"""The one door to the race sweeper (`hydra_plugins.sweeps_race_sweeper`, through its public
face): `sweep.race=true` swaps it in for Hydra's basic sweeper, hands it the judge that records
a later round's folds on the children and applies the elimination rule (src/analysis/race.py)
after every round, and tells a job its round and its block."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.sweeps_race_sweeper import (
    ROUND_ENV,
    RUN_ENV,
    Recorded,
    job_block,
    judge_rounds,
    round_overrides,
)
from src.analysis.race import eliminate, leader_of, race_levels
from src.analysis.verdict import fold_metric, p_value_better, split_record
from src.ml.objectives import objectives
from src.sweep.context import SweepContext
from src.sweep.overrides import job_key
from src.sweep.progress import job_outcomes, report_outcomes
from src.sweep.search import OUR_OPTUNA, prune_search
from src.tracking.child_run import RunScore, fold_values, log_round
from src.tracking.store import children_of, error_parts, record_error, with_retries

RACE_SWEEPER = "hydra_plugins.sweeps_race_sweeper.race_sweeper.SweepsRaceSweeper"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
# what an eliminated child records (with the metrics race_p_value and race_folds)
ELIMINATED_TAG = "race_eliminated_round"
RACE_FOLDS = "race_folds"  # a raced child's metric: the folds it has run (step = its round)
LEADER_TAGS = ("race_leader", "race_leader_run_id")
LEVEL_TAG = "sweep_race_level"  # the parent's: the level a round's Holm-adjusted p must be below


@dataclass(frozen=True)
class Race:
    """A sweep's race: its rounds (cv.repeats), folds a round, direction, alpha, metric."""

    rounds: int
    folds: int
    direction: str
    alpha: float
    metric: str


@dataclass(frozen=True)
class RoundFolds:
    """A configuration's later round as its block's job ran it: the run its first round made
    and its name, the round's fold scores (cv_<name> -> values in split order, as
    `cross_validation` gives them) and the folds' training and test rows. The judge records
    them on the run."""

    run_id: str
    name: str
    scores: dict[str, list[float]]
    sizes: tuple[int, int]


@dataclass(frozen=True)
class RoundError:
    """A configuration whose later round failed in its block's job (or whose block's job was
    lost): its run, and the error's type, message and traceback. The judge ends the run FAILED
    with them."""

    run_id: str
    error_type: str
    message: str
    traceback: str

    @classmethod
    def of(cls, run_id: str, error: BaseException) -> RoundError:
        """The round of `run_id` failed with `error`."""
        return cls(run_id, *error_parts(error))


def is_race(config: DictConfig) -> bool:
    """`sweep.race=true`."""
    return config.sweep.get("race", False) is True


def check_race(config: DictConfig) -> None:
    """`sweep.race=true` races a grid (Hydra's basic sweeper) or prunes an Optuna search; other
    sweepers, and resuming a pruned search, are refused before any run."""
    if not is_race(config):
        return
    sweeper = str(config.hydra.sweeper._target_)
    if sweeper not in (BASIC_SWEEPER, OUR_OPTUNA):
        raise ValueError(
            f"sweep.race=true races a grid (Hydra's basic sweeper) or prunes an Optuna search "
            f"(hydra/sweeper=optuna), not hydra.sweeper {sweeper.rsplit('.', 1)[-1]}: drop "
            f"sweep.race"
        )
    if sweeper == OUR_OPTUNA and config.sweep.get("resume") is not None:
        raise ValueError(
            "sweep.race=true with hydra/sweeper=optuna cannot sweep.resume yet (a trial "
            "interrupted mid-race would start a second child): drop sweep.race to resume"
        )


def use_race_sweeper(config: DictConfig, workers: int) -> None:
    """With `sweep.race=true`, the grid runs on the race sweeper, in `cv.repeats` rounds, a
    later round in as many jobs as the launcher runs at once (`workers`; Hydra makes the
    sweeper after the callback's `on_multirun_start`)."""
    if not is_race(config) or str(config.hydra.sweeper._target_) != BASIC_SWEEPER:
        return
    options = OmegaConf.to_container(config.hydra.sweeper, resolve=False)
    assert isinstance(options, dict)
    blocks = round_jobs(config, workers)
    options |= {"_target_": RACE_SWEEPER, "rounds": int(config.cv.repeats), "blocks": blocks}
    with read_write(config), open_dict(config):
        config.hydra.sweeper = OmegaConf.create(options)  # the basic sweeper's typed node


def round_jobs(config: DictConfig, workers: int) -> int | None:
    """How many jobs a later round of a race runs in at most: the launcher's `workers` (1 on
    Hydra's basic launcher, joblib's n_jobs), SLURM's array_parallelism; None, a job per
    configuration, on a launcher that names no number (Ray, submitit's local launcher)."""
    launcher = config.hydra.launcher
    if "array_parallelism" in launcher:
        return int(launcher.array_parallelism)
    if "n_jobs" in launcher or str(launcher._target_) == BASIC_LAUNCHER:
        return workers
    return None


def race_block(env: Mapping[str, str] = os.environ) -> list[tuple[str, list[str]]] | None:
    """The configurations a race's later-round job runs, (the run its first round made, its
    job's overrides) each; None for any other job."""
    return job_block(env)


def race_round(env: Mapping[str, str] = os.environ) -> tuple[int, str | None] | None:
    """The round this job runs in a race (0, 1, ...) and, after the first, the run its
    configuration's first round recorded; None outside a race."""
    if ROUND_ENV not in env:
        return None
    return int(env[ROUND_ENV]), env.get(RUN_ENV) or None


def start_race(config: DictConfig, ctx: SweepContext) -> None:
    """Hand the race sweeper the judge of this sweep, or the Optuna sweeper its pruner (in the
    launching process)."""
    if is_race(config):
        sweep = config.sweep
        ((metric, direction),) = objectives(sweep.metric, sweep.direction)  # one: checked
        race = Race(
            int(config.cv.repeats), int(config.cv.folds), direction, float(sweep.race_alpha), metric
        )
        if str(config.hydra.sweeper._target_) == OUR_OPTUNA:
            prune_search(partial(prune_round, ctx, race), race.rounds, round_overrides)
        else:
            judge = RaceJudge(ctx, race)
            judge_rounds(judge.judge_round, judge.recall)


def stop_race() -> None:
    """No judge, no pruner: a race sweeper started later in this process refuses to run, a
    search runs every trial on every fold."""
    judge_rounds(None)
    prune_search(None)


def recorded_score(client: MlflowClient, run_id: str, n_folds: int, metric: str) -> RunScore:
    """A configuration's first `n_folds` folds of the selection metric as an earlier attempt
    recorded them (fewer when it has fewer), as a round's job would have returned them."""
    run = with_retries(lambda: client.get_run(run_id))
    scores = fold_values(client, run_id, str(fold_metric(metric)))[:n_folds]
    sizes = (int(run.data.tags.get("cv.n_train", 0)), int(run.data.tags.get("cv.n_test", 0)))
    mean = sum(scores) / len(scores) if scores else math.nan
    return RunScore(mean, run_id, tuple(scores), sizes)


@dataclass
class RaceJudge:
    """The judge of a raced grid, in the launching process: it records each later round's folds
    on the children (one write a child a round), then eliminates, and says so."""

    ctx: SweepContext
    race: Race
    folds: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # run id -> so far
    names: dict[str, str] = field(default_factory=dict)  # run id -> its run name
    unfinished: set[str] = field(default_factory=set)  # runs an earlier attempt left FAILED
    level: float | None = None  # the level the parent records

    @cached_property
    def client(self) -> MlflowClient:
        """The sweep's store."""
        return MlflowClient(self.ctx.target.tracking_uri)

    def recall(self, jobs: list[list[str]]) -> dict[int, Recorded]:
        """What the earlier attempts of a resumed race recorded of each job: its child (matched
        by the job key its first round recorded), the rounds it completed (its folds logged)
        and the round after which it was eliminated."""
        if not self.ctx.resumed:
            return {}
        client = self.client
        parent = with_retries(lambda: client.get_run(str(self.ctx.target.parent_run_id)))
        children = {c.data.tags.get("job_key"): c for c in children_of(client, parent)}
        found = {}
        for index, job in enumerate(jobs):
            child = children.get(job_key(job))  # the round's environment is not in the key
            if child is None:
                continue
            rounds = int(child.data.metrics.get(RACE_FOLDS, 0)) // self.race.folds
            out = child.data.tags.get(ELIMINATED_TAG)
            found[index] = Recorded(child.info.run_id, rounds, int(out) if out else None)
            if child.info.status != "FINISHED":
                self.unfinished.add(child.info.run_id)
        return found

    def judge_round(self, round_index: int, results: list[tuple[int, Any]]) -> set[int]:
        """After a round: record a later round's folds (a failed one ends its child FAILED),
        eliminate the configurations significantly worse than the leader, record why on their
        runs, say it in one line; the job indices that go on. A job that failed (no fold
        scores) leaves the race as its FAILED child."""
        race, client = self.race, self.client
        n_folds = (round_index + 1) * race.folds
        # a str is the run of a round an earlier attempt ran (the plugin's `Earlier`: compared
        # as a str, since Hydra's plugin scan executes the plugin's module again, making its
        # classes anew)
        given = {
            i: recorded_score(client, v, n_folds, race.metric) if isinstance(v, str) else v
            for i, v in results
        }
        for value in given.values():  # a first round's folds: the ones the next go after
            if isinstance(value, RunScore) and value.fold_scores:
                self.folds[value.run_id] = value.fold_scores
        given |= self.record_round(round_index, given)
        entrants = {
            index: value
            for index, value in given.items()
            if isinstance(value, RunScore)
            and len(value.folds) == n_folds
            and all(map(math.isfinite, value.folds))
        }
        scores = {index: value.folds for index, value in entrants.items()}
        out = {}
        if len(entrants) >= 2 and round_index + 1 < race.rounds:  # the last: the verdict's turn
            sizes = next(iter(entrants.values())).sizes
            level = race_levels(race.rounds, race.folds, sizes, race.alpha)[round_index]
            if level != self.level:  # Pocock's: the same every round that may eliminate
                record_level(client, self.ctx, level)
                self.level = level
            out = eliminate(scores, sizes, race.direction, level)
        leader = leader_of(scores, race.direction) if scores else None
        leader_name = self.run_name(entrants[leader].run_id) if leader is not None else ""
        for index, why in out.items():
            leader_id = entrants[why.leader].run_id
            record_elimination(
                client, entrants[index].run_id, round_index, leader_id, why.p_value,
                self.run_name(leader_id),
            )  # fmt: skip
        failed = len(results) - len(entrants)
        head = f"Race round {round_index + 1}/{race.rounds} ({n_folds} folds each): "
        failures = f", {failed} failed" if failed else ""
        if round_index + 1 < race.rounds:
            said = (
                f"{len(out)} of {len(results)} eliminated{failures}, "
                f"{len(entrants) - len(out)} go on"
            )
        else:
            said = f"{len(entrants)} of {len(results)} ran every fold{failures}"
        print(head + said + (f"; leader {leader_name}" if leader_name else ""), flush=True)
        stops = self.ctx.max_failures
        last = round_index + 1 == race.rounds
        if stops is not None and not last and job_outcomes(self.ctx)[0] > stops:
            print(f"Race stopped after round {round_index + 1}: sweep.max_failures={stops} "
                  f"exceeded", flush=True)  # fmt: skip
            return set()
        return set(entrants) - set(out)

    def record_round(self, round_index: int, given: dict[int, Any]) -> dict[int, Any]:
        """Record a later round's results on their runs, a line each on the progress: the
        folds as the next steps (and the means so far) or the error (the run ends FAILED). The
        job indices recorded, each with its folds so far as a job's `RunScore` (None: failed)."""
        recorded: dict[int, Any] = {}
        lines = []
        metric = self.race.metric
        for index, value in given.items():
            if isinstance(value, RoundFolds):
                try:
                    score = self.record_folds(round_index, value)
                except RuntimeError as e:  # a round lost or run twice: not this round's folds
                    value = RoundError.of(value.run_id, e)
                else:
                    detail = f"round {round_index + 1}/{self.race.rounds} {metric}={score:.4f}"
                    self.names[value.run_id] = value.name
                    lines.append((value.name, "FINISHED", detail))
                    recorded[index] = score
            if isinstance(value, RoundError):
                self.record_failed(value)
                detail = f"round {round_index + 1}/{self.race.rounds} {value.error_type}: "
                lines.append((self.run_name(value.run_id), "FAILED", detail + value.message))
                recorded[index] = None
        if lines:
            report_outcomes(self.ctx, lines)
        return recorded

    def record_folds(self, round_index: int, result: RoundFolds) -> RunScore:
        """Append a round's folds to its run; the configuration's selection metric so far."""
        folds = self.race.folds
        earlier = self.so_far(result.run_id, list(result.scores))
        so_far = {}
        for key, new in result.scores.items():
            before = earlier.get(key, [])
            if len(before) != round_index * folds:
                raise RuntimeError(
                    f"race round {round_index + 1}: run {result.run_id} holds {len(before)} "
                    f"folds of {key}, not the {round_index * folds} of the rounds before"
                )
            so_far[key] = before + new
        last = round_index + 1 == self.race.rounds
        log_round(self.client, result.run_id, result.scores, so_far, round_index, folds, last)
        self.folds[result.run_id] = so_far
        if result.run_id in self.unfinished:  # an earlier attempt's failed round, run again
            self.unfinished.discard(result.run_id)
            with_retries(lambda: self.client.set_terminated(result.run_id, "FINISHED"))
        selected = so_far[str(fold_metric(self.race.metric))]
        return RunScore(sum(selected) / len(selected), result.run_id, tuple(selected), result.sizes)

    def so_far(self, run_id: str, keys: list[str]) -> dict[str, list[float]]:
        """A run's fold scores of these metrics so far: its first round's job returned them,
        or (a resumed race, a rerun after a failed round) read once from their histories (a
        raced child's fold-scores tag comes only with its last round), then kept."""
        if run_id not in self.folds:
            self.folds[run_id] = {k: fold_values(self.client, run_id, k) for k in keys}
        return self.folds[run_id]

    def run_name(self, run_id: str) -> str:
        """A child's run name (read once)."""
        if run_id not in self.names:
            client = self.client
            self.names[run_id] = str(with_retries(lambda: client.get_run(run_id)).info.run_name)
        return self.names[run_id]

    def record_failed(self, error: RoundError) -> None:
        """End a configuration's run FAILED with its round's error."""
        client = self.client
        record_error(client, error.run_id, error.error_type, error.message, error.traceback)
        with_retries(lambda: client.set_terminated(error.run_id, "FAILED"))
        self.unfinished.add(error.run_id)
        self.folds.pop(error.run_id, None)


def record_level(client: MlflowClient, ctx: SweepContext, level: float) -> None:
    """The parent records the level a round's test had to pass (Pocock's: the same each round
    that may eliminate), for the summary to say."""
    parent_id = str(ctx.target.parent_run_id)
    with_retries(lambda: client.set_tag(parent_id, LEVEL_TAG, f"{level:.2g}"))


def record_elimination(
    client: MlflowClient,
    run_id: str,
    round_index: int,
    leader_run_id: str,
    p_value: float,
    leader_name: str,
) -> None:
    """What an eliminated (or pruned) child records: the round after which it left, the leader
    it lost to (name and run) and the p-value of that comparison."""
    tags = {
        ELIMINATED_TAG: str(round_index + 1),
        LEADER_TAGS[0]: leader_name,
        LEADER_TAGS[1]: leader_run_id,
    }
    metrics = [Metric("race_p_value", p_value, int(time.time() * 1000), round_index)]
    batch = [RunTag(k, v) for k, v in tags.items()]
    with_retries(partial(client.log_batch, run_id, metrics=metrics, tags=batch))


def prune_round(
    ctx: SweepContext,
    race: Race,
    round_index: int,
    best_run_id: str,
    results: list[tuple[int, Any]],
) -> set[int]:
    """After a round of a search's trials: the trials significantly worse than the study's
    best trial on the same folds (the verdict's test at the race's level of the round, one
    comparison a trial: no Holm, and no other comparisons to moderate its variance with),
    recorded on their runs as an eliminated child's, said in one line each."""
    client = MlflowClient(ctx.target.tracking_uri)
    n_folds = (round_index + 1) * race.folds
    best = recorded_score(client, best_run_id, n_folds, race.metric)
    best_run = with_retries(lambda: client.get_run(best_run_id))
    if len(best.folds) < n_folds or not all(map(math.isfinite, best.folds)):
        return set()
    pruned = set()
    for number, value in results:
        if not isinstance(value, RunScore) or len(value.folds) != n_folds:
            continue
        run = with_retries(partial(client.get_run, value.run_id))
        if split_record(run) != split_record(best_run) or value.sizes != best.sizes:
            continue  # other folds (a study continued with another cv.seed): no pairing
        level = race_levels(race.rounds, race.folds, value.sizes, race.alpha)[round_index]
        record_level(client, ctx, level)
        p = p_value_better(list(best.folds), list(value.folds), value.sizes, race.direction)
        if p < level:
            record_elimination(
                client, value.run_id, round_index, best_run_id, p, str(best_run.info.run_name)
            )
            pruned.add(number)
            print(
                f"Trial {number} pruned after round {round_index + 1}/{race.rounds} ({n_folds} "
                f"folds): worse than the best trial's run {best_run.info.run_name} on the same "
                f"folds (p={p:.2g} < {level:.3g})",
                flush=True,
            )
    return pruned
