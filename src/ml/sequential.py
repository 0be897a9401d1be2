"""Group-sequential boundaries: the level of each look of a test repeated as data accrue, so
that the chance of crossing any of them under the null is the overall alpha.

The looks' z statistics are taken as Brownian motion on the information scale (Jennison and
Turnbull, "Group Sequential Methods", 2000, ch. 2 and 19): corr(Z_j, Z_k) = sqrt(I_j / I_k).
The boundaries are Wang and Tsiatis's family z_k = C (I_k / I_K)^(shape - 1/2): shape 0 is
O'Brien and Fleming's (strict early, lenient late), shape 1/2 is Pocock's (the same level at
every look); C is solved for the overall alpha by numerical integration of the looks' joint
density (the recursion of Armitage, McPherson and Rowe, 1969).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats

POCOCK, OBRIEN_FLEMING = 0.5, 0.0
GRID = 401  # points of the integration grid at each look (3 decimals of Pocock's table)


def normal_pdf(x: np.ndarray) -> np.ndarray:
    """The standard normal density, as scipy's `norm.pdf` without its argument handling (a
    fourth of the time on the recursion's 401 x 401 grids)."""
    return np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)


def crossing_probability(z: Sequence[float], information: Sequence[float] | np.ndarray) -> float:
    """The chance, under the null, that Z_k >= z[k] at some look k (one-sided)."""
    info = np.asarray(information, dtype=float)
    upper = np.asarray(z, dtype=float) * np.sqrt(info)  # the boundary on the score scale
    s = np.linspace(-8 * np.sqrt(info[0]), upper[0], GRID)
    density = normal_pdf(s / np.sqrt(info[0])) / np.sqrt(info[0])  # the score's, below the bound
    total = float(stats.norm.sf(z[0]))
    for k in range(1, len(info)):
        step = np.sqrt(info[k] - info[k - 1])  # the score's increment is N(0, I_k - I_{k-1})
        weights = np.full(GRID, s[1] - s[0])
        weights[[0, -1]] /= 2  # the trapezoid rule
        mass = weights * density
        total += float(mass @ stats.norm.sf((upper[k] - s) / step))
        after = np.linspace(-8 * np.sqrt(info[k]), upper[k], GRID)
        density = normal_pdf((after[:, None] - s[None, :]) / step) @ mass / step
        s = after
    return total


def boundary(information: Sequence[float], alpha: float, shape: float = POCOCK) -> list[float]:
    """The z boundary of each look (one-sided): Wang and Tsiatis's `shape`, crossed at some
    look with probability `alpha` under the null."""
    info = np.asarray(information, dtype=float)
    if np.any(np.diff(info) <= 0) or info[0] <= 0:
        raise ValueError(f"information {list(info)}: positive and increasing, one per look")
    profile = (info / info[-1]) ** (shape - 0.5)
    c = optimize.brentq(
        lambda c: crossing_probability(c * profile, info) - alpha, 0.1, 12.0, xtol=1e-7
    )
    return [float(z) for z in c * profile]


def nominal_levels(
    information: Sequence[float], alpha: float, shape: float = POCOCK
) -> list[float]:
    """The one-sided p-value each look must be below: the boundary's tail areas."""
    return [float(stats.norm.sf(z)) for z in boundary(information, alpha, shape)]
