"""Train and evaluate one configuration as an MLflow run: `python -m src.train [-m] [overrides]`.

Light on purpose: Hydra composes the config before mlflow and scikit-learn load (src.job, on
the first job or when the sweep validates its jobs), so under hydra/launcher=joblib the sweep
starts its workers while this process is still importing.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from src.sweep import run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Hydra entry point: one job of a run or a sweep."""
    from src.job import train

    return run_task(train, cfg)


if __name__ == "__main__":
    main()
