"""How often the dominance test shows an equal configuration dominated: configurations that
differ in nothing (two objectives, normal fold scores), the share of them shown dominated.
`PYTHONPATH=. .venv/bin/python tests/benchmarks/pareto_null.py [--trials 1000]`"""

from __future__ import annotations

import argparse

import numpy as np

from src.analysis.pareto import Objective, shown_dominating

# (n_train, n_test): ~0 correction (the plain paired t-test, exact for independent folds), and
# the heart data's 5-fold split (193 and 48 rows), whose correction assumes overlapping folds
SPLITS = {"plain paired t-test": (10**9, 1), "corrected (heart's 5-fold sizes)": (193, 48)}


def rate(n_configs: int, n_folds: int, sizes: tuple[int, int], trials: int, seed: int) -> float:
    """The share of configurations shown dominated, over `trials` simulated sweeps."""
    rng = np.random.default_rng(seed)
    ids = [f"c{i}" for i in range(n_configs)]
    shown = 0
    for _ in range(trials):
        objectives = []
        for metric, direction, mean, sd in (
            ("cv_accuracy_mean", "maximize", 0.8, 0.02),
            ("cv_fit_time_mean", "minimize", 0.5, 0.05),
        ):
            folds = {i: list(rng.normal(mean, sd, n_folds)) for i in ids}
            means = {i: float(np.mean(v)) for i, v in folds.items()}
            objectives.append(Objective(metric, direction, means, folds))
        result = shown_dominating(
            objectives, ids, dict.fromkeys(ids, 0), dict.fromkeys(ids, sizes), 0.05
        )
        shown += sum(bool(v) for v in result.values())
    return shown / (trials * n_configs)


def main() -> None:
    """Print the rate for each split correction, number of configurations and folds."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=1000)
    args = parser.parse_args()
    print("| test | configurations | folds | shown dominated (alpha 0.05) |")
    print("|---|---|---|---|")
    for name, sizes in SPLITS.items():
        for n_configs, n_folds in ((4, 10), (12, 5), (12, 50)):
            share = rate(n_configs, n_folds, sizes, args.trials, seed=n_configs * 100 + n_folds)
            print(f"| {name} | {n_configs} | {n_folds} | {share:.2%} |")


if __name__ == "__main__":
    main()
