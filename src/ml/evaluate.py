"""Cross-validate, fit and score a pipeline; the metric names here are the ones MLflow records."""

from __future__ import annotations

import pickle
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    make_scorer,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import RepeatedStratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline

from src.ml.data import Dataset

_UNSAFE_KEY_CHARS = re.compile(r"[^\w\-. /]")
# the scores cross-validated on the training split; each is logged per fold as `cv_<name>`
# (step = the fold's index in split order) and as `cv_<name>_mean` / `cv_<name>_std`
CV_SCORES = ("accuracy", "precision", "recall", "f1", "roc_auc")
# what a configuration costs: the seconds to fit each CV fold (`cv_fit_time` per fold, as
# cross_validate measures it, so children pair them fold by fold like the scores), the
# milliseconds per row to predict the test split, the fitted pipeline's pickled size in bytes
FIT_TIME = "cv_fit_time"
COST_METRICS = (f"{FIT_TIME}_mean", "predict_ms_per_row", "model_bytes")
FOLD_METRICS = (*(f"cv_{name}" for name in CV_SCORES), FIT_TIME)
TEST_METRICS = ("test_accuracy", "precision", "recall", "f1_score", "roc_auc")  # the test split's
# every single-valued metric a child records, besides per-class ones (what sweep.metric can name
# with sweep.select_on_test; without it, only the cv_<name>_mean)
METRICS = (
    *(f"cv_{name}_{stat}" for name in CV_SCORES for stat in ("mean", "std")),
    "test_accuracy", "precision", "recall", "f1_score", "roc_auc", "training_time_s",
    "tn", "fp", "fn", "tp", f"{FIT_TIME}_std", *COST_METRICS,
)  # fmt: skip
PER_CLASS_METRIC = re.compile(r"class_.+_(precision|recall|f1)")


@dataclass
class Evaluation:
    """Metrics of a fitted pipeline plus what the plots need."""

    metrics: dict[str, float]
    classes: list
    y_pred: np.ndarray
    y_score: np.ndarray | None  # class probabilities on the test split, columns in `classes` order
    confusion: np.ndarray = field(repr=False)
    fold_scores: dict[str, list[float]] = field(default_factory=dict)  # cv_<name> -> per fold
    fold_sizes: tuple[int, int] = (0, 0)  # training and test rows of the first fold


def evaluate(
    pipeline: Pipeline,
    data: Dataset,
    folds: int,
    seed: int,
    repeats: int = 1,
    repeat: int | None = None,
) -> Evaluation:
    """Stratified K-fold CV (repeated `repeats` times; with `repeat`, that repeat's folds only)
    of the five CV scores on the training split, then fit on it and score on the test split."""
    fold_scores, fold_sizes = cross_validation(pipeline, data, folds, seed, repeats, repeat)

    started = time.perf_counter()
    pipeline.fit(data.X_train, data.y_train)
    training_time = time.perf_counter() - started

    classes = list(pipeline.classes_)
    started = time.perf_counter()
    y_pred = pipeline.predict(data.X_test)
    predict_ms_per_row = (time.perf_counter() - started) * 1000 / max(len(data.X_test), 1)
    y_score = pipeline.predict_proba(data.X_test) if hasattr(pipeline, "predict_proba") else None
    metrics = {
        **{
            f"{key}_{stat}": float(f(v))
            for key, v in fold_scores.items()
            for stat, f in (("mean", np.mean), ("std", np.std))
        },
        "test_accuracy": float(accuracy_score(data.y_test, y_pred)),
        **_averaged_scores(data.y_test, y_pred, classes),
        "roc_auc": _roc_auc(data.y_test, y_score, classes),
        **_per_class_scores(data.y_test, y_pred, classes),
        "training_time_s": training_time,
        "predict_ms_per_row": predict_ms_per_row,
        "model_bytes": float(len(pickle.dumps(pipeline))),
    }
    confusion = confusion_matrix(data.y_test, y_pred, labels=classes)
    if len(classes) == 2:
        tn, fp, fn, tp = confusion.ravel()
        metrics.update(tn=float(tn), fp=float(fp), fn=float(fn), tp=float(tp))
    return Evaluation(metrics, classes, y_pred, y_score, confusion, fold_scores, fold_sizes)


def cross_validation(
    pipeline: Pipeline,
    data: Dataset,
    folds: int,
    seed: int,
    repeats: int = 1,
    repeat: int | None = None,
) -> tuple[dict[str, list[float]], tuple[int, int]]:
    """The five CV scores and the fit time per fold (cv_<name> -> values in split order,
    cv_fit_time in seconds) and the first fold's training and test rows. With `repeat`
    (0-based), only that repeat's `folds` folds: the same splits as in the full `repeats`,
    since the repeats are drawn in order from one seed."""
    splits = cv_splits(data, folds, seed, repeats, repeat)
    scores = cross_validate(
        pipeline, data.X_train, data.y_train, cv=splits, error_score="raise",
        scoring=cv_scorers(sorted(np.unique(data.y_train))), return_indices=True,
    )  # fmt: skip
    first = scores["indices"]
    fold_sizes = (len(first["train"][0]), len(first["test"][0]))
    per_fold = {f"cv_{name}": [float(v) for v in scores[f"test_{name}"]] for name in CV_SCORES}
    per_fold[FIT_TIME] = [float(v) for v in scores["fit_time"]]
    return per_fold, fold_sizes


def cv_splits(
    data: Dataset, folds: int, seed: int, repeats: int, repeat: int | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, test) indices of repeated stratified K-fold on the training split; with
    `repeat`, only that repeat's, drawn up to its end (a race's round), and kept: every
    configuration of a round in this process runs the same."""
    if repeat is None:
        cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
        return list(cv.split(data.X_train, data.y_train))
    key = (data.train_fingerprint, folds, seed, repeats, repeat)
    if key not in _round_splits:
        cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
        drawn = cv.split(data.X_train, data.y_train)
        _round_splits[key] = list(islice(drawn, repeat * folds, (repeat + 1) * folds))
        while len(_round_splits) > 4:
            _round_splits.popitem(last=False)
    return _round_splits[key]


# per process: the splits of the last few race rounds (a round's configurations share them)
_round_splits: OrderedDict[tuple, list[tuple[np.ndarray, np.ndarray]]] = OrderedDict()


def cv_scorers(classes: list) -> dict:
    """The CV scorers, averaged as the test metrics are: binary on the positive (last) class,
    multiclass macro (ROC AUC one-vs-rest)."""
    average = _averaging(classes)
    auc = "roc_auc" if len(classes) == 2 else "roc_auc_ovr"
    return {
        "accuracy": "accuracy",
        "precision": make_scorer(precision_score, **average),
        "recall": make_scorer(recall_score, **average),
        "f1": make_scorer(f1_score, **average),
        "roc_auc": auc,
    }


def class_key(label: object) -> str:
    """A label as it appears in a metric key (`class_<label>_precision`)."""
    return _UNSAFE_KEY_CHARS.sub("_", str(label))


def _averaging(classes: list) -> dict[str, Any]:
    """How precision, recall and F1 average, in CV and on the test split alike: binary on the
    positive (last) class, macro over the classes otherwise."""
    if len(classes) == 2:
        return {"average": "binary", "pos_label": classes[-1], "zero_division": 0}
    return {"average": "macro", "zero_division": 0}


def _averaged_scores(y_true, y_pred, classes: list) -> dict[str, float]:
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, **_averaging(classes)
    )
    return {"precision": float(precision), "recall": float(recall), "f1_score": float(f1)}


def _per_class_scores(y_true, y_pred, classes: list) -> dict[str, float]:
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0, average=None
    )
    scores: dict[str, float] = {}
    for label, p, r, f in zip(classes, precision, recall, f1, strict=True):
        key = class_key(label)
        scores |= {f"class_{key}_precision": p, f"class_{key}_recall": r, f"class_{key}_f1": f}
    return {k: float(v) for k, v in scores.items()}


def _roc_auc(y_true, y_score: np.ndarray | None, classes: list) -> float:
    """Binary: AUC of the positive (last) class; multiclass: macro one-vs-rest. NaN if undefined."""
    if y_score is None or len(np.unique(y_true)) < 2:
        return float("nan")
    try:
        if len(classes) == 2:
            return float(roc_auc_score(y_true, y_score[:, 1], labels=classes))
        return float(roc_auc_score(y_true, y_score, labels=classes, multi_class="ovr"))
    except ValueError:
        return float("nan")
