"""The race's elimination rule: after a round, which configurations still in the race are
significantly worse than the leader on every fold run so far.

Design (issue 37, `sweep.race=true`). A grid is run in rounds of one CV repeat (`cv.folds`
folds, the same splits for every configuration, as a full run has them), up to `cv.repeats`
rounds. After each round but the last the leader is the best mean of the selection metric's
folds (ties: the earlier job); every other configuration still in the race is compared with it
on all the folds run so far by the verdict's test (the one-sided corrected resampled t-test),
each comparison's fold variance moderated by the round's other comparisons (Smyth's empirical
Bayes, limma's: a round of 5 folds gives a variance 4 degrees of freedom, too few to show what
the verdict's 50 folds will), the p-values Holm-adjusted over the comparisons, and those below
the round's level leave the race. The levels are a group-sequential boundary (Pocock's,
src/ml/sequential.py) that spends `sweep.race_alpha` (0.025) over the rounds that may
eliminate, on the information the corrected test's model of CV folds gives each round. The
rule reads only fold scores, in job order, so the same folds give the same eliminations on
every launcher and in any order the jobs end. Its error is measured, not assumed
(tests/analysis/test_race.py, tests/benchmarks/race_replay.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from src.ml.sequential import POCOCK, nominal_levels
from src.ml.stats import holm, moderated_ttests

DEFAULT_RACE_ALPHA = 0.025


@dataclass(frozen=True)
class Elimination:
    """Why a configuration left the race: the leader it lost to and the Holm-adjusted p."""

    leader: int
    p_value: float


def leader_of(folds: Mapping[int, Sequence[float]], direction: str) -> int:
    """The configuration with the best mean fold score (ties: the smallest job index)."""
    sign = -1.0 if direction == "minimize" else 1.0
    return min(folds, key=lambda i: (-sign * float(np.mean(folds[i])), i))


def information(rounds: int, folds: int, sizes: tuple[int, int]) -> list[float]:
    """What each round's test knows, in the model of CV folds behind the corrected t-test
    (Nadeau and Bengio, 2003): the inverse variance of n folds' mean difference is
    1 / (1/n + n_test/n_train), up to a factor. The folds of one dataset share its noise, so
    information grows slowly: the first of 10 rounds of 5 folds has 60% of the last's."""
    n_train, n_test = sizes
    return [1 / (1 / (r * folds) + n_test / n_train) for r in range(1, rounds + 1)]


@cache  # the same for every round of a sweep
def race_levels(
    rounds: int, folds: int, sizes: tuple[int, int], alpha: float, shape: float = POCOCK
) -> list[float]:
    """The level of each round that may eliminate (every round but the last, the verdict's):
    a group-sequential boundary that spends `alpha` over those rounds."""
    if rounds < 2:
        return []
    return nominal_levels(information(rounds - 1, folds, sizes), alpha, shape)


def eliminations(
    folds: Mapping[int, Sequence[float]],
    sizes: tuple[int, int],
    direction: str,
    rounds: int,
    alpha: float = DEFAULT_RACE_ALPHA,
) -> dict[int, int]:
    """A whole race replayed on every configuration's folds of every round (in round order):
    configuration -> the round it was eliminated after."""
    n = {len(f) for f in folds.values()}.pop()
    per_round = n // rounds
    levels = race_levels(rounds, per_round, sizes, alpha)
    alive, out = sorted(folds), dict[int, int]()
    for r, level in enumerate(levels):
        m = (r + 1) * per_round
        gone = eliminate({i: folds[i][:m] for i in alive}, sizes, direction, level)
        out |= {i: r + 1 for i in gone}
        alive = [i for i in alive if i not in gone]
    return out


def eliminate(
    folds: Mapping[int, Sequence[float]],
    sizes: tuple[int, int],
    direction: str,
    level: float,
) -> dict[int, Elimination]:
    """The configurations (by job index) that leave the race after a round: each one's folds so
    far (all equally many), the folds' training and test rows, the sweep's direction, and the
    round's level (`race_levels`) that the Holm-adjusted p-value must be below."""
    if len(folds) < 2:
        return {}
    leader = leader_of(folds, direction)
    others = sorted(i for i in folds if i != leader)
    sign = -1.0 if direction == "minimize" else 1.0
    raw = moderated_ttests(
        sign * np.asarray(folds[leader], dtype=float),
        [sign * np.asarray(folds[i], dtype=float) for i in others],
        *sizes,
    )
    adjusted = holm(raw)
    return {i: Elimination(leader, p) for i, p in zip(others, adjusted, strict=True) if p < level}
