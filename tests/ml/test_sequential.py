"""Group-sequential boundaries (src/ml/sequential.py) against published tables (Jennison and
Turnbull, "Group Sequential Methods", 2000, tables 2.1 and 2.3: Pocock's and O'Brien and
Fleming's constants, two-sided 0.05, equally spaced looks) and against scipy's multivariate
normal for the unequal information of a race."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from src.ml.sequential import (
    OBRIEN_FLEMING,
    POCOCK,
    boundary,
    crossing_probability,
    nominal_levels,
)

# K looks -> the constant: Pocock's boundary is C at every look, O'Brien and Fleming's is
# C sqrt(K / k) at look k (two-sided 0.05: one-sided 0.025, the other side's crossings
# below 1e-5 of probability)
POCOCK_TABLE = {1: 1.960, 2: 2.178, 3: 2.289, 4: 2.361, 5: 2.413, 10: 2.555}
OBF_TABLE = {2: 1.977, 3: 2.004, 4: 2.024, 5: 2.040, 10: 2.087}


@pytest.mark.parametrize(("looks", "constant"), POCOCK_TABLE.items())
def test_pococks_constants(looks: int, constant: float) -> None:
    z = boundary(range(1, looks + 1), 0.025, POCOCK)
    assert z == pytest.approx([constant] * looks, abs=0.002)


@pytest.mark.parametrize(("looks", "constant"), OBF_TABLE.items())
def test_obrien_flemings_constants(looks: int, constant: float) -> None:
    z = boundary(range(1, looks + 1), 0.025, OBRIEN_FLEMING)
    expected = [constant * np.sqrt(looks / k) for k in range(1, looks + 1)]
    assert z == pytest.approx(expected, abs=0.002)


@pytest.mark.parametrize("shape", [POCOCK, OBRIEN_FLEMING])
def test_a_races_boundary_is_crossed_with_alpha_by_scipys_multivariate_normal(
    shape: float,
) -> None:
    """9 looks of a 10-round race of 5 heart folds: information far from equally spaced."""
    info = 1 / (1 / (5 * np.arange(1, 10)) + 49 / 193)  # src.analysis.race.information
    z = np.array(boundary(info, 0.05, shape))
    cov = np.sqrt(np.minimum.outer(info, info) / np.maximum.outer(info, info))
    none = stats.multivariate_normal(np.zeros(9), cov, seed=1).cdf(z)
    assert 1 - none == pytest.approx(0.05, abs=5e-4)
    assert crossing_probability(z, info) == pytest.approx(0.05, abs=1e-6)
    levels = nominal_levels(info, 0.05, shape)
    assert levels == pytest.approx(list(stats.norm.sf(z)))
    # one look's level is below alpha: the looks pay for each other
    assert max(levels) < 0.05


def test_one_look_is_the_plain_test() -> None:
    assert nominal_levels([3.0], 0.01) == pytest.approx([0.01], rel=1e-5)


def test_information_must_grow() -> None:
    with pytest.raises(ValueError, match="positive and increasing"):
        boundary([1.0, 1.0], 0.05)
