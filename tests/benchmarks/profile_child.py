"""Where a child's milliseconds go: `python tests/benchmarks/profile_child.py [--repo OTHER]`.

Samples a 48-job KNN sweep of the heart data (lean, then full) with py-spy, then gives each
sample to the first part of a job whose function is on its stack (the work, the plots, the
model, the writes to the store, Hydra's job wrapper, the sweep's start and end, imports), in ms
per job. `--repo` profiles another checkout (its own `.venv`, as `bench.py --against`).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEART = REPO / "tests" / "data" / "heart_cleveland.csv"
GRID = ["model=knn", "model.n_neighbors=range(1,25)", "model.weights=uniform,distance"]
N_JOBS = 48
RATE = 200  # samples per second
LEAN = ["mlflow.log_plots=false", "mlflow.log_model=false"]
# (part, a frame that marks it), the first that matches a sample's stack takes the sample;
# a function by name and package, not module, so that another checkout's layout matches too
PARTS = [
    ("the work: CV, fit, test metrics", "evaluate (src/"),
    ("permutation importance", "permutation_importances"),
    ("the three plots (drawn, written)", "save_child_plots"),
    ("the model (MLflow's log_model)", "log_model (src/"),
    ("params, metrics, artifacts (one batch, one upload)", "log_results"),
    ("the run created and ended", "job_run (src/"),
    ("the job's checks, data, pipeline", "prepare (src/"),
    ("the rest of the task", "train (src/"),
    ("the task wrapper (progress, failure policy)", "run_task"),
    ("Hydra's job wrapper (configs, .hydra files, logging)", "run_job (hydra/core/utils.py"),
    ("the sweep's start (checks, store, parent)", "on_multirun_start"),
    ("the sweep's end (summary, plots, view)", "on_multirun_end"),
    ("imports", "_find_and_load"),
    ("the heartbeat thread (waiting)", "Heartbeat._beat"),
]


def profile(repo: Path, mode: str, extra: list[str], work: Path) -> collections.Counter:
    """Samples per part of one sweep of `repo`'s code, under py-spy."""
    python = repo / ".venv" / "bin" / "python"
    raw, db = work / f"{mode}.txt", work / f"{mode}.db"
    shutil.copyfile(work / "template.db", db)  # a user's store exists already: no migration
    store = f"sqlite:///{db}"
    command = [
        str(REPO / ".venv" / "bin" / "py-spy"), "record", "-r", str(RATE), "-f", "raw",
        "-o", str(raw), "--", str(python), "-m", "src.train", "-m", *GRID, "data=heart",
        f"data.path={HEART}", f"hydra.sweep.dir={work}/{mode}", *extra,
    ]  # fmt: skip
    env = os.environ | {"MLFLOW_TRACKING_URI": store, "PYTHONPATH": str(repo)}
    subprocess.run(command, cwd=repo, env=env, check=True, capture_output=True)
    parts: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        part = next((name for name, mark in PARTS if mark in stack), "other")
        parts[part] += int(count)
    return parts


def main() -> None:
    """Profile lean and full; print ms per job by part as a Markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", type=Path, default=REPO)
    repo = parser.parse_args().repo.resolve()
    work = Path(tempfile.mkdtemp(prefix="profile-child-"))
    template = f"sqlite:///{work}/template.db"
    migrate = (
        "from src.tracking.store import ensure_experiment as e; "
        f"e({template!r}, 'heart-classification')"
    )
    subprocess.run([sys.executable, "-c", migrate], cwd=REPO, check=True, capture_output=True)
    lean, full = profile(repo, "lean", LEAN, work), profile(repo, "full", [], work)
    print(f"{repo}: ms per job of a {N_JOBS}-job sweep (py-spy, {RATE} samples/s)\n")
    print("| part | lean | full |\n|---|---|---|")
    for name in [name for name, _ in PARTS] + ["other"]:
        print(f"| {name} | {lean[name] * 1000 / RATE / N_JOBS:.0f} | "
              f"{full[name] * 1000 / RATE / N_JOBS:.0f} |")  # fmt: skip
    total = {m: sum(c.values()) - c["the heartbeat thread (waiting)"] for m, c in
             (("lean", lean), ("full", full))}  # fmt: skip
    print(f"| **the process, heartbeat aside** | {total['lean'] * 1000 / RATE / N_JOBS:.0f} | "
          f"{total['full'] * 1000 / RATE / N_JOBS:.0f} |")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
