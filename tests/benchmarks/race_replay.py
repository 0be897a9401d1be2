"""Replay the race (src/analysis/race.py) on full runs' folds: for each case (data x model grid)
and split seed, every configuration's cv_accuracy on all cv.folds x cv.repeats folds, then the
race's eliminations round by round on those same folds, against the full run's verdict (Holm,
sweep.alpha 0.05). A race on the same folds eliminates exactly what the replay does (the race
runs the same splits in the same order: tests/sweep/test_race.py checks it on real sweeps).

    PYTHONPATH=. .venv/bin/python tests/benchmarks/race_replay.py [--seeds 20 | --seed-list 42]
        [--cases a,b] [--rules pocock:0.1,obf:0.1,fixed:0.01] [--cache DIR]

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
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from src.analysis.race import DEFAULT_RACE_ALPHA, eliminate, leader_of, race_levels
from src.analysis.verdict import p_value_better
from src.ml.sequential import OBRIEN_FLEMING, POCOCK
from src.ml.stats import holm

FOLDS, REPEATS, ALPHA = 5, 10, 0.05


@dataclass
class Case:
    name: str
    data: Callable[[int], tuple]  # split seed -> X, y (training split)
    models: list  # unfitted estimators, one per configuration


def data_overrides(data: str) -> list[str]:
    from tests.helpers import HEART_CSV

    return ["data=heart", f"data.path={HEART_CSV}"] if data == "heart" else [f"data={data}"]


def conf_xy(data: str) -> Callable[[int], tuple]:
    """Split seed -> the training split of a dataset of conf/data, as a sweep with `seed` has it."""

    def xy(seed: int) -> tuple:
        from hydra import compose, initialize_config_dir

        from src.ml.data import load_dataset
        from tests.helpers import REPO

        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("config", [*data_overrides(data), f"seed={seed}"])
        loaded = load_dataset(cfg.data)
        return loaded.X_train, loaded.y_train

    return xy


def conf_pipelines(data: str, model: str, overrides: list[list[str]]) -> list:
    """The pipelines a sweep's jobs build, one per configuration."""
    from hydra import compose, initialize_config_dir

    from src.ml.data import load_dataset
    from src.ml.pipeline import build_pipeline
    from tests.helpers import REPO

    pipelines = []
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for extra in overrides:
            cfg = compose("config", [f"model={model}", *data_overrides(data), *extra])
            loaded = load_dataset(cfg.data)
            pipelines.append(build_pipeline(cfg.model, loaded.X_train, loaded.categorical, []))
    return pipelines


def synthetic_xy(seed: int) -> tuple:
    """A synthetic training split: 300 rows, 4 informative features of 20."""
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


def levels(rule: str, sizes: tuple[int, int]) -> list[float]:
    """The levels of the rounds that may eliminate: `pocock:0.025` (the sweep's rule, Pocock's
    boundary spending 0.025), `obf:0.1` (O'Brien and Fleming's), `fixed:0.01` (one level a
    round, the rule before the boundary); `plain-` before any of them: the verdict's test
    without moderated variances (the rule before them)."""
    name, alpha = rule.removeprefix("plain-").split(":")
    if name == "fixed":
        return [float(alpha)] * (REPEATS - 1)
    shape = {"pocock": POCOCK, "obf": OBRIEN_FLEMING}[name]
    return race_levels(REPEATS, FOLDS, sizes, float(alpha), shape)


def replay(scores: np.ndarray, sizes: tuple[int, int], rule: str) -> dict[int, int]:
    """The race on these folds: configuration -> the round it was eliminated after."""
    alive, out = list(range(len(scores))), {}
    for r, level in enumerate(levels(rule, sizes)):
        n = (r + 1) * FOLDS
        folds = {i: scores[i, :n] for i in alive}
        if rule.startswith("plain-"):
            gone = plain_eliminate(folds, sizes, level)
        else:
            gone = eliminate(folds, sizes, "maximize", level)
        out |= {i: r + 1 for i in gone}
        alive = [i for i in alive if i not in gone]
    return out


def plain_eliminate(folds: dict[int, np.ndarray], sizes: tuple[int, int], level: float) -> set:
    """The rule with the verdict's test as it is (each comparison's own fold variance)."""
    leader = leader_of(folds, "maximize")
    others = [i for i in folds if i != leader]
    p = [p_value_better(list(folds[leader]), list(folds[i]), sizes, "maximize") for i in others]
    return {i for i, q in zip(others, holm(p), strict=True) if q < level}


def cases() -> dict[str, Case]:
    knn = [[f"model.n_neighbors={k}", f"model.weights={w}", f"model.metric={m}"]
           for k in range(3, 16, 2) for w in ("uniform", "distance")
           for m in ("euclidean", "manhattan", "chebyshev")]  # fmt: skip
    trees = [[f"model.random_state={s}", "+model.max_features=sqrt"] for s in range(10)]
    c_grid = [[f"model.C={c}"] for c in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 100)]
    heart = conf_xy("heart")
    return {
        "heart_knn_grid": Case("heart_knn_grid", heart, conf_pipelines("heart", "knn", knn)),
        "heart_null_trees": Case(
            "heart_null_trees", heart, conf_pipelines("heart", "decision_tree", trees)
        ),  # fmt: skip
        "heart_lr_C": Case(
            "heart_lr_C", heart, conf_pipelines("heart", "logistic_regression", c_grid)
        ),  # fmt: skip
        "breast_cancer_knn_grid": Case(
            "breast_cancer_knn_grid",
            conf_xy("breast_cancer"),
            conf_pipelines("breast_cancer", "knn", knn),
        ),
        "wine_knn_grid": Case("wine_knn_grid", conf_xy("wine"), conf_pipelines("wine", "knn", knn)),
        # most configurations poor: an RBF SVM whose gamma is mostly far too large or too small
        "synthetic_svm_gamma": Case(
            "synthetic_svm_gamma",
            synthetic_xy,
            [make_pipeline(StandardScaler(), SVC(C=1.0, gamma=g)) for g in np.logspace(-5, 3, 17)],
        ),  # fmt: skip
        "synthetic_lr_C": Case(
            "synthetic_lr_C",
            synthetic_xy,
            [
                make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
                for c in np.logspace(-4, 2, 13)
            ],
        ),  # fmt: skip
    }


def measured(case: Case, seeds: list[int], cache: Path | None) -> list[tuple[np.ndarray, tuple]]:
    """Every seed's fold scores of a case (read from, or written to, `cache`)."""
    name = f"{len(seeds)}" if seeds == list(range(len(seeds))) else "_".join(map(str, seeds))
    path = cache / f"{case.name}_{name}.npz" if cache else None
    if path is not None and path.exists():
        saved = np.load(path)
        return [(saved[f"s{s}"], tuple(int(n) for n in saved[f"n{s}"])) for s in seeds]
    runs = []
    for seed in seeds:
        X, y = case.data(seed)
        runs.append(fold_scores(case.models, X, y, seed))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"s{s}": r[0] for s, r in zip(seeds, runs, strict=True)}
        sizes = {f"n{s}": np.array(r[1]) for s, r in zip(seeds, runs, strict=True)}
        np.savez(path, **arrays, **sizes)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=20, help="split seeds 0, 1, ...")
    parser.add_argument("--seed-list", default="", help="these split seeds instead, e.g. 42")
    parser.add_argument("--cases", default="")
    parser.add_argument("--rules", default=f"pocock:{DEFAULT_RACE_ALPHA}", help="see levels()")
    parser.add_argument("--cache", type=Path, default=None, help="a folder for the fold scores")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    every = cases()
    chosen = [every[name] for name in args.cases.split(",")] if args.cases else every.values()
    seeds = (
        [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    )
    print(
        "case | rule | configs x seeds | false eliminations | eliminated & sig. worse "
        "| winner equivalent | sig. worse configs | median folds share of sig. worse "
        "| fold-fits ratio"
    )
    for case in chosen:
        runs = measured(case, seeds, args.cache)
        for rule in args.rules.split(","):
            false = worse_out = n = out_total = winners = 0
            shares, fits, full = [], 0, 0
            for scores, sizes in runs:
                best, worse = full_verdict(scores, sizes)
                out = replay(scores, sizes, rule)
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
                f"{case.name} | {rule} | {n} | {false} ({false / n:.1%}) | "
                f"{worse_out} of {out_total} | {winners} of {len(runs)} | {len(shares)} | "
                f"{median} | {fits / full:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
