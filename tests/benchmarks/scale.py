"""Reading a sweep of 10,000 children: `python tests/benchmarks/scale.py [--children 10000]`.

A real lean sweep of 8 decision trees (breast-cancer data), its children copied in the store to
`--children` (tests/helpers.py `grow_sweep`: fast, as the issue allows for tests of reading),
then, each as a whole process on that store: the end-of-sweep summary (`summarize_sweep`: the
children read and ranked, the verdict, files, plots, the parent's records, the UI view), the
CLI (`python -m src.summary --sweep ID`), and the MLflow UI opening the sweep's link in Chromium
until its charts are drawn. Prints a Markdown table (wall s, peak RSS MB) for
tests/benchmarks/README.md. The flatness of running 10,000 jobs is not this: it needs a real
sweep (README there).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.bench import timed  # noqa: E402
from tests.helpers import browse, grow_sweep, mlflow_process  # noqa: E402

GRID = ["model=decision_tree", "model.max_depth=2,4,6,8", "model.min_samples_leaf=1,5"]
LEAN = ["mlflow.log_plots=false", "mlflow.log_model=false"]
SUMMARIZE = """
import sys
from pathlib import Path
from src.analysis.report import summarize_sweep
summarize_sweep(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
"""


def ui_open_s(uri: str, path: str, work: Path) -> float:
    """Seconds from opening the sweep's link (`path`: after the host) until the page shows its
    charts' runs."""
    args = ["ui", "--backend-store-uri", uri, "--workers", "1"]
    with mlflow_process(args, work / "ui.log", timeout=120) as url:
        took: list[float] = []

        def visit(page) -> None:
            page.goto(url)  # the UI's own start (its bundle) is not the view's
            page.get_by_text("Experiments").first.wait_for(timeout=90_000)
            started = time.perf_counter()
            page.goto(f"{url}/{path}")
            page.get_by_text("matching runs").first.wait_for(timeout=120_000)
            page.get_by_text("Parallel Coordinates").first.wait_for(timeout=120_000)
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=120_000
            )
            took.append(time.perf_counter() - started)

        assert browse(url, visit) == []
    return took[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--children", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sweep-scale-") as tmp:
        work = Path(tmp)
        uri = f"sqlite:///{work}/mlflow.db"
        env = os.environ | {"MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO)}
        sweep = [sys.executable, "-m", "src.train", "-m", *GRID, *LEAN,
                 f"hydra.sweep.dir={work}/sweep"]  # fmt: skip
        subprocess.run(sweep, cwd=REPO, env=env, check=True, capture_output=True)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        (parent,) = client.search_runs(
            [e.experiment_id for e in client.search_experiments()], "tags.sweep = 'true'"
        )
        started = time.perf_counter()
        grow_sweep(work / "mlflow.db", parent.info.run_id, args.children)
        grown = time.perf_counter() - started
        rows = [(f"store grown to {args.children:,} children (test helper, not timed below)",
                 grown, 0)]  # fmt: skip
        summarize = [sys.executable, "-c", SUMMARIZE, uri, parent.info.run_id,
                     str(work / "summary")]  # fmt: skip
        rows.append(
            ("end-of-sweep summary (files, parent, plots, UI view)", *timed(summarize, env))
        )
        cli = [sys.executable, "-m", "src.summary", "--sweep", parent.info.run_id]
        rows.append(("`python -m src.summary --sweep ID`", *timed(cli, env)))
        path = client.get_run(parent.info.run_id).data.tags["ui_link_path"]
        rows.append(
            ("the UI link opened, its charts drawn (Chromium)", ui_open_s(uri, path, work), 0)
        )
        print("| step | wall s | peak RSS MB |")
        print("|---|---|---|")
        for name, wall, rss in rows:
            print(f"| {name} | {wall:.1f} | {rss or ''} |")


if __name__ == "__main__":
    main()
