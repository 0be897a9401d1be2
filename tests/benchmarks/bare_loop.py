"""The floor: the same work as a sweep job (fit, 5-fold CV, test metrics), no tracking at all.

`python tests/benchmarks/bare_loop.py HEART_CSV` runs the benchmark grid in one process.
"""

from __future__ import annotations

import itertools
import sys

from omegaconf import OmegaConf

from src.ml.data import load_dataset
from src.ml.evaluate import evaluate
from src.ml.pipeline import build_pipeline

NEIGHBORS = range(1, 25)
WEIGHTS = ("uniform", "distance")
METRICS = ("euclidean", "manhattan", "chebyshev")


def main(heart_csv: str) -> None:
    """Run every config of the grid once."""
    data_cfg = OmegaConf.create(
        {
            "name": "heart",
            "source": "uci_heart",
            "path": heart_csv,
            "url": "",
            "target": "num",
            "test_size": 0.2,
            "random_state": 42,
        }
    )
    for k, weights, metric in itertools.product(NEIGHBORS, WEIGHTS, METRICS):
        data = load_dataset(data_cfg)
        model = OmegaConf.create(
            {
                "_target_": "sklearn.neighbors.KNeighborsClassifier",
                "n_neighbors": k,
                "weights": weights,
                "metric": metric,
            }
        )
        evaluate(build_pipeline(model, data.X_train, data.categorical), data, folds=5, seed=42)


if __name__ == "__main__":
    main(sys.argv[1])
