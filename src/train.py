"""The Hydra entry point: `python -m src.train [-m] [overrides]` runs one job, or a sweep."""

from __future__ import annotations

import os
import signal
import sys

import hydra
from omegaconf import DictConfig

from src.ml.targets import TargetError
from src.sweep.checks import check_typed_hydra_targets
from src.sweep.credentials import RedactingStream
from src.sweep.job import train
from src.sweep.task import run_task
from src.tracking.interrupts import first_stop_signal


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | tuple[float, ...]:
    """One job of a run or a sweep."""
    return run_task(train, cfg)


if __name__ == "__main__":
    sys.stderr = RedactingStream(sys.stderr)  # type: ignore[assignment]  # Hydra's own errors
    try:  # Hydra makes its callbacks before any hook of ours: their typed targets, first
        check_typed_hydra_targets(sys.argv[1:])
    except TargetError as e:
        sys.exit(f"Not started: {e}")
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM: the exit guard closes the sweep at exit
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        signum = first_stop_signal() or signal.SIGINT
        print(f"Interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        sys.exit(128 + signum)  # as a shell reports a process its signal ended
