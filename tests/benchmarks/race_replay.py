"""Replay the race (src/analysis/race.py) on full runs' folds: for each case (data x model grid)
and split seed, every configuration's cv_accuracy on all cv.folds x cv.repeats folds, then the
race's eliminations round by round on those same folds, against the full run's verdict (Holm,
sweep.alpha 0.05). A race on the same folds eliminates exactly what the replay does (the race
runs the same splits in the same order: tests/sweep/test_race.py checks it on real sweeps).

    PYTHONPATH=. .venv/bin/python tests/benchmarks/race_replay.py [--seeds 20] [--cases a,b]

Prints one row per case: false eliminations (eliminated, yet equivalent_to_best in the full
run) over all configurations of all seeds, eliminated configurations that the full run finds
significantly worse, the race winner equivalent_to_best in the full run, the median share of
folds a significantly worse configuration ran, and the fold-fits against the full run's.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from src.analysis.race import eliminate, leader_of
from src.analysis.verdict import p_value_better
from src.ml.stats import holm

FOLDS, REPEATS, ALPHA, RACE_ALPHA = 5, 10, 0.05, 0.01


@dataclass
class Case:
    name: str
    data: Callable[[int], tuple]  # split seed -> X, y (training split)
    models: list  # unfitted estimators, one per configuration


def heart(seed: int) -> tuple:
    from hydra import compose, initialize_config_dir

    from src.ml.data import load_dataset
    from tests.helpers import HEART_CSV, REPO

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", ["data=heart", f"data.path={HEART_CSV}", f"seed={seed}"])
    data = load_dataset(cfg.data)
    return data.X_train, data.y_train, cfg


def heart_pipelines(model: str, overrides: list[list[str]]) -> list:
    from hydra import compose, initialize_config_dir

    from src.ml.data import load_dataset
    from src.ml.pipeline import build_pipeline
    from tests.helpers import HEART_CSV, REPO

    pipelines = []
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for extra in overrides:
            cfg = compose("config", [f"model={model}", "data=heart", f"data.path={HEART_CSV}",
                                     *extra])  # fmt: skip
            data = load_dataset(cfg.data)
            pipelines.append(build_pipeline(cfg.model, data.X_train, data.categorical, []))
    return pipelines


def heart_xy(seed: int) -> tuple:
    X, y, _ = heart(seed)
    return X, y


def synthetic_xy(seed: int) -> tuple:
    X, y = make_classification(n_samples=300, n_features=20, n_informative=4, n_redundant=2,
                               class_sep=0.8, random_state=seed)  # fmt: skip
    return X, y


def fold_scores(models: list, X, y, seed: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Accuracy of every model on every fold (configurations x folds), and the fold sizes. The
    models are pipelines that share their preprocessing (it does not depend on the model's
    params): it is fitted once per fold, as each pipeline would fit it."""
    cv = RepeatedStratifiedKFold(n_splits=FOLDS, n_repeats=REPEATS, random_state=seed)
    splits = list(cv.split(X, y))
    scores = np.empty((len(models), len(splits)))
    take = (lambda a, i: a.iloc[i]) if hasattr(X, "iloc") else (lambda a, i: a[i])
    for f, (train, test) in enumerate(splits):
        prep = clone(models[0][:-1]).fit(take(X, train), take(y, train))
        X_train, X_test = prep.transform(take(X, train)), prep.transform(take(X, test))
        for m, model in enumerate(models):
            fitted = clone(model[-1]).fit(X_train, take(y, train))
            scores[m, f] = fitted.score(X_test, take(y, test))
    return scores, (len(splits[0][0]), len(splits[0][1]))


def full_verdict(scores: np.ndarray, sizes: tuple[int, int]) -> tuple[int, set[int]]:
    """The full run's best and the configurations significantly worse than it (Holm, 0.05)."""
    best = leader_of({i: scores[i] for i in range(len(scores))}, "maximize")
    others = [i for i in range(len(scores)) if i != best]
    p = [p_value_better(list(scores[best]), list(scores[i]), sizes, "maximize") for i in others]
    return best, {i for i, q in zip(others, holm(p), strict=True) if q < ALPHA}


def replay(scores: np.ndarray, sizes: tuple[int, int], alpha: float) -> dict[int, int]:
    """The race on these folds: configuration -> the round it was eliminated after."""
    alive, out = list(range(len(scores))), {}
    for r in range(REPEATS - 1):
        n = (r + 1) * FOLDS
        gone = eliminate({i: scores[i, :n] for i in alive}, sizes, "maximize", alpha)
        out |= {i: r + 1 for i in gone}
        alive = [i for i in alive if i not in gone]
    return out


def cases() -> dict[str, Case]:
    knn = [[f"model.n_neighbors={k}", f"model.weights={w}", f"model.metric={m}"]
           for k in range(3, 16, 2) for w in ("uniform", "distance")
           for m in ("euclidean", "manhattan", "chebyshev")]  # fmt: skip
    trees = [[f"model.random_state={s}", "+model.max_features=sqrt"] for s in range(10)]
    c_grid = [[f"model.C={c}"] for c in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 100)]
    return {
        "heart_knn_grid": Case("heart_knn_grid", heart_xy, heart_pipelines("knn", knn)),
        "heart_null_trees": Case(
            "heart_null_trees", heart_xy, heart_pipelines("decision_tree", trees)
        ),  # fmt: skip
        "heart_lr_C": Case("heart_lr_C", heart_xy, heart_pipelines("logistic_regression", c_grid)),
        "synthetic_lr_C": Case(
            "synthetic_lr_C",
            synthetic_xy,
            [
                make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
                for c in np.logspace(-4, 2, 13)
            ],
        ),  # fmt: skip
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--cases", default="")
    parser.add_argument("--alphas", default=str(RACE_ALPHA))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    chosen = [c for c in cases().values() if not args.cases or c.name in args.cases.split(",")]
    alphas = [float(a) for a in args.alphas.split(",")]
    print(
        "case | race alpha | configs x seeds | false eliminations | eliminated & sig. worse "
        "| winner equivalent | median folds share of sig. worse | fold-fits ratio"
    )
    for case in chosen:
        runs = []
        for seed in range(args.seeds):
            X, y = case.data(seed)
            runs.append(fold_scores(case.models, X, y, seed))
        for alpha in alphas:
            false = worse_out = n = out_total = winners = 0
            shares, fits, full = [], 0, 0
            for scores, sizes in runs:
                best, worse = full_verdict(scores, sizes)
                out = replay(scores, sizes, alpha)
                survivors = {i: scores[i] for i in range(len(scores)) if i not in out}
                winner = leader_of(survivors, "maximize")
                n += len(scores)
                out_total += len(out)
                false += sum(1 for i in out if i not in worse and i != best)
                worse_out += sum(1 for i in out if i in worse)
                winners += winner == best or winner not in worse
                shares += [out.get(i, REPEATS) / REPEATS for i in worse]
                fits += sum(out.get(i, REPEATS) * FOLDS for i in range(len(scores)))
                full += len(scores) * REPEATS * FOLDS
            median = f"{np.median(shares):.2f}" if shares else "-"
            print(
                f"{case.name} | {alpha:g} | {n} | {false} ({false / n:.1%}) | "
                f"{worse_out} of {out_total} | {winners} of {len(runs)} | {median} | "
                f"{fits / full:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
