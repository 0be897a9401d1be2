"""The plain floor: the benchmark grid's work in a script of scikit-learn and pandas alone.

The same fit, 5-fold CV of five scores and test metrics as a sweep job, the data read once,
nothing of this project imported: what a user's own loop would cost.
`python tests/benchmarks/plain_loop.py CSV [--accuracy-only]` (--accuracy-only: CV of the
accuracy alone, the floor before the five CV scores)
"""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.model_selection import (
    StratifiedKFold,
    cross_val_score,
    cross_validate,
    train_test_split,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NEIGHBORS = range(1, 25)
CATEGORICAL = ["cp", "restecg", "slope", "thal", "ca"]  # as conf/data/heart.yaml one-hot encodes
WEIGHTS = ("uniform", "distance")
METRICS = ("euclidean", "manhattan", "chebyshev")


FIVE_SCORES = ("accuracy", "precision", "recall", "f1", "roc_auc")


def main(heart_csv: str, accuracy_only: bool = False) -> None:
    """Run every config of the grid once."""
    frame = pd.read_csv(heart_csv, na_values="?", skipinitialspace=True)
    y = (frame.pop("num") > 0).astype(int)
    X = frame.astype("float64")
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=42
    )
    numeric = [c for c in X.columns if c not in CATEGORICAL]
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=42)
    for k, weights, metric in itertools.product(NEIGHBORS, WEIGHTS, METRICS):
        preprocess = ColumnTransformer(
            [("numeric", Pipeline([("impute", SimpleImputer(strategy="median")),
                                   ("scale", StandardScaler())]), numeric),
             ("categorical", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                                       ("encode", OneHotEncoder(handle_unknown="ignore",
                                                                sparse_output=False))]),
              CATEGORICAL)]
        )  # fmt: skip
        model = KNeighborsClassifier(n_neighbors=k, weights=weights, metric=metric)
        pipeline = Pipeline([("preprocess", preprocess), ("model", model)])
        if accuracy_only:
            scores = cross_val_score(pipeline, X_train, y_train, cv=cv, scoring="accuracy")
        else:
            every = cross_validate(pipeline, X_train, y_train, cv=cv, scoring=FIVE_SCORES)
            scores = every["test_accuracy"]
        pipeline.fit(X_train, y_train)
        y_pred = pipeline.predict(X_test)
        y_score = pipeline.predict_proba(X_test)
        _ = (
            float(np.mean(scores)),
            accuracy_score(y_test, y_pred),
            precision_recall_fscore_support(y_test, y_pred, average="binary", zero_division=0),
            precision_recall_fscore_support(y_test, y_pred, average=None, zero_division=0),
            roc_auc_score(y_test, y_score[:, 1]),
            confusion_matrix(y_test, y_pred),
        )


if __name__ == "__main__":
    main(sys.argv[1], "--accuracy-only" in sys.argv[2:])
