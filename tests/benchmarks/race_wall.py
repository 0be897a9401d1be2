"""Wall time against fold-fits: the same grid run in full and raced (`sweep.race=true`), each a
real sweep (`python -m src.train`, basic launcher, a fresh sqlite store), timed end to end; the
race's wall-time ratio beside its fold-fit ratio (race_fold_fits / race_full_fold_fits, as its
parent records them). Issue 37's goal: within 0.1 of each other.

A host's speed drifts by several percent over minutes, so `--pairs N` runs N pairs, full then
raced and raced then full in turn, and prints each pair and the median ratios.

    PYTHONPATH=. nice -n 10 .venv/bin/python tests/benchmarks/race_wall.py [--repeats 10]
        [--pairs 5] [-- extra overrides, e.g. hydra/launcher=joblib]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
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
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("extra", nargs="*")
    args = parser.parse_args()
    common = [*GRID, f"cv.repeats={args.repeats}", *LEAN, *args.extra]
    print(
        "pair | full s | raced s | wall-time ratio | fold-fit ratio | difference | full CPU s | "
        "raced CPU s | CPU-time ratio | eliminated",
        flush=True,
    )
    walls, cpus = [], []
    for pair in range(1, args.pairs + 1):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "full").mkdir()
            (Path(tmp) / "race").mkdir()
            raced = [*common, "sweep.race=true"]
            if pair % 2:  # full first, then raced first: a drift of the host's speed cancels
                full_s, full_cpu, _ = timed_sweep(Path(tmp) / "full", common)
                race_s, race_cpu, race = timed_sweep(Path(tmp) / "race", raced)
            else:
                race_s, race_cpu, race = timed_sweep(Path(tmp) / "race", raced)
                full_s, full_cpu, _ = timed_sweep(Path(tmp) / "full", common)
        fits = race["race_fold_fits"] / race["race_full_fold_fits"]
        walls.append(race_s / full_s)
        cpus.append(race_cpu / full_cpu)
        print(
            f"{pair} | {full_s:.0f} | {race_s:.0f} | {race_s / full_s:.2f} | {fits:.2f} | "
            f"{race_s / full_s - fits:+.2f} | {full_cpu:.0f} | {race_cpu:.0f} | "
            f"{race_cpu / full_cpu:.2f} | {race['n_eliminated']:.0f}",
            flush=True,
        )
    if args.pairs > 1:
        print(
            f"median of {args.pairs} pairs: wall-time ratio {statistics.median(walls):.3f}, "
            f"CPU-time ratio {statistics.median(cpus):.3f}"
        )


if __name__ == "__main__":
    main()
