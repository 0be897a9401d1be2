"""Asynchronous against batched Optuna searches: the same random search (a seeded RandomSampler
proposes the same trials whatever their order of ending) of random forests from 10 to 500 trees
on the heart data, on 2 joblib workers, once with a trial asked as soon as one ends and once in
batches of 2 (`hydra.sweeper.batches=true`), each a real sweep in its own sqlite store. Reported:
the sweep's wall time, and how busy the 2 workers were: the children's run time over 2 x the
search's span (first child start to last child end). Issue 39's goals: >= 90% busy, and the
asynchronous search ends sooner.

    PYTHONPATH=. nice -n 10 .venv/bin/python tests/benchmarks/async_search.py [--trials 40]
        [--pairs 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers import HEART_CSV, REPO, sweep_runs

SEARCH = [
    "-m", "sweeps=random_forest_optuna", "data=heart", f"data.path={HEART_CSV}",
    "mlflow.log_plots=false", "mlflow.log_model=false", "hydra/sweeper/sampler=random",
    "hydra.sweeper.params={model.n_estimators: 'int(interval(10,500))'}",
    "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
]  # fmt: skip
WORKERS = 2


def timed_search(folder: Path, trials: int, batches: bool) -> dict[str, float]:
    """One search in its own store: wall time, span, busy fraction, children's time range."""
    folder.mkdir()
    uri = f"sqlite:///{folder}/mlflow.db"
    env = os.environ | {"MLFLOW_TRACKING_URI": uri}
    command = [
        sys.executable, "-m", "src.train", *SEARCH, f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.batches={str(batches).lower()}", f"hydra.sweep.dir={folder}/sweep",
    ]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stdout[-2000:] + result.stderr[-2000:])
    _, children = sweep_runs(uri)
    assert len(children) == trials and {c.info.status for c in children} == {"FINISHED"}
    first = min(c.info.start_time for c in children)
    last = max(c.info.end_time for c in children)
    ran = sum(c.info.end_time - c.info.start_time for c in children)
    durations = sorted(c.info.end_time - c.info.start_time for c in children)
    return {
        "wall_s": seconds,
        "span_s": (last - first) / 1000,
        "busy": ran / (WORKERS * (last - first)),
        "shortest_s": durations[0] / 1000,
        "longest_s": durations[-1] / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    print("pair | mode | wall s | search span s | workers busy | child s (shortest-longest)")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(args.pairs):
            for batches in (True, False):
                mode = "batches of 2" if batches else "asynchronous"
                got = timed_search(Path(tmp) / f"{pair}-{mode[:5]}", args.trials, batches)
                print(
                    f"| {pair + 1} | {mode} | {got['wall_s']:.1f} | {got['span_s']:.1f} | "
                    f"{got['busy']:.1%} | {got['shortest_s']:.1f}-{got['longest_s']:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
