"""Wall time against fold-fits: the same grid run in full and raced (`sweep.race=true`), each a
real sweep (`python -m src.train`, basic launcher, a fresh sqlite store), timed end to end; the
race's wall-time ratio beside its fold-fit ratio (race_fold_fits / race_full_fold_fits, as its
parent records them). Issue 37's goal: within 0.1 of each other.

    PYTHONPATH=. nice -n 10 .venv/bin/python tests/benchmarks/race_wall.py [--repeats 10]
        [-- extra overrides, e.g. hydra/launcher=joblib]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers import HEART_CSV, REPO, sweep_runs

GRID = ["-m", "sweeps=knn_grid", "data=heart", f"data.path={HEART_CSV}"]
LEAN = ["mlflow.log_plots=false", "mlflow.log_model=false"]


def timed_sweep(folder: Path, overrides: list[str]) -> tuple[float, float, dict[str, float]]:
    """One sweep in its own store: its wall time, its CPU time (user and system, less
    sensitive than wall time to other jobs on the host) and its parent's metrics."""
    uri = f"sqlite:///{folder}/mlflow.db"
    env = os.environ | {"MLFLOW_TRACKING_URI": uri}
    command = [sys.executable, "-m", "src.train", *overrides, f"hydra.sweep.dir={folder}/sweep"]
    start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    if result.returncode != 0:
        raise SystemExit(result.stdout[-2000:] + result.stderr[-2000:])
    parent, _ = sweep_runs(uri)
    return seconds, cpu_s, parent.data.metrics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("extra", nargs="*")
    args = parser.parse_args()
    common = [*GRID, f"cv.repeats={args.repeats}", *LEAN, *args.extra]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "full").mkdir()
        (Path(tmp) / "race").mkdir()
        full_s, full_cpu, _ = timed_sweep(Path(tmp) / "full", common)
        race_s, race_cpu, race = timed_sweep(Path(tmp) / "race", [*common, "sweep.race=true"])
    fits = race["race_fold_fits"] / race["race_full_fold_fits"]
    print(
        "full s | raced s | wall-time ratio | fold-fit ratio | difference | full CPU s | "
        "raced CPU s | CPU-time ratio | eliminated"
    )
    print(
        f"{full_s:.0f} | {race_s:.0f} | {race_s / full_s:.2f} | {fits:.2f} | "
        f"{race_s / full_s - fits:+.2f} | {full_cpu:.0f} | {race_cpu:.0f} | "
        f"{race_cpu / full_cpu:.2f} | {race['n_eliminated']:.0f}"
    )


if __name__ == "__main__":
    main()
