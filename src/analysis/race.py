"""The race's elimination rule: after a round, which configurations still in the race are
significantly worse than the leader on every fold run so far.

Design (issue 37, `sweep.race=true`). A grid is run in rounds of one CV repeat (`cv.folds`
folds, the same splits for every configuration, as a full run has them), up to `cv.repeats`
rounds. After each round the leader is the best mean of the selection metric's folds (ties: the
earlier job); every other configuration still in the race is compared with it on all the folds
run so far by the verdict's test (the one-sided corrected resampled t-test), the p-values
Holm-adjusted over the comparisons, and those below `sweep.race_alpha` (0.01: stricter than
`sweep.alpha`, because the test is repeated every round) leave the race. The rule reads only
fold scores, in job order, so the same folds give the same eliminations on every launcher and
in any order the jobs end. Its error under repeated testing is measured, not assumed
(tests/analysis/test_race.py, tests/benchmarks/race_replay.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from src.analysis.verdict import p_value_better
from src.ml.stats import holm

DEFAULT_RACE_ALPHA = 0.01


@dataclass(frozen=True)
class Elimination:
    """Why a configuration left the race: the leader it lost to and the Holm-adjusted p."""

    leader: int
    p_value: float


def leader_of(folds: Mapping[int, Sequence[float]], direction: str) -> int:
    """The configuration with the best mean fold score (ties: the smallest job index)."""
    sign = -1.0 if direction == "minimize" else 1.0
    return min(folds, key=lambda i: (-sign * float(np.mean(folds[i])), i))


def eliminate(
    folds: Mapping[int, Sequence[float]],
    sizes: tuple[int, int],
    direction: str,
    alpha: float = DEFAULT_RACE_ALPHA,
) -> dict[int, Elimination]:
    """The configurations (by job index) that leave the race after a round: each one's folds so
    far (all equally many), the folds' training and test rows, the sweep's direction."""
    if len(folds) < 2:
        return {}
    leader = leader_of(folds, direction)
    others = sorted(i for i in folds if i != leader)
    raw = [p_value_better(list(folds[leader]), list(folds[i]), sizes, direction) for i in others]
    adjusted = holm(raw)
    return {i: Elimination(leader, p) for i, p in zip(others, adjusted, strict=True) if p < alpha}
