"""The Hydra entry point: `python -m src.train [-m] [overrides]` runs one job, or a sweep."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from src.job import train
from src.sweep_jobs import run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """One job of a run or a sweep."""
    return run_task(train, cfg)


if __name__ == "__main__":
    main()
