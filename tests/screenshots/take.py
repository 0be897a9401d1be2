"""Remake the README's pictures of heart sweeps: `.venv/bin/python tests/screenshots/take.py`.

Runs knn_grid and logistic_regression_grid on the shipped heart data into a fresh store under a
temporary folder, and model_comparison into another (as the README's example runs it alone);
copies the grids' sweep PNGs, the best logistic regression's feature importance and
model_comparison.png here, and screenshots each grid's MLflow UI view in Chromium at 1600x1000
(as tests/test_ui.py drives it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from mlflow.tracking import MlflowClient  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from tests.helpers import CHROMIUM, CHROMIUM_ARGS, mlflow_process  # noqa: E402

HERE = Path(__file__).parent
HEART = ["data=heart", f"data.path={REPO / 'tests/data/heart_cleveland.csv'}"]
SWEEPS = ("knn_grid", "logistic_regression_grid")
SWEEP_PNGS = ("metric_vs_params", "parallel_coordinates", "parameter_importance", "verdict")


def run(uri: str, *args: str) -> None:
    """`python -m <args>` against the store, from the repository."""
    env = {"MLFLOW_TRACKING_URI": uri, "PATH": str(Path(sys.executable).parent)}
    subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, check=True)


def main() -> None:
    """Make every picture."""
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        for sweep in SWEEPS:
            run(uri, "src.train", f"sweeps={sweep}", *HEART, f"hydra.sweep.dir={tmp}/{sweep}")
        for sweep in SWEEPS:
            for png in SWEEP_PNGS:
                shutil.copy(Path(tmp, sweep, f"{png}.png"), HERE / f"{sweep}_{png}.png")
        families = f"sqlite:///{tmp}/families.db"
        run(families, "src.train", "sweeps=model_comparison", *HEART, f"hydra.sweep.dir={tmp}/mc")
        run(families, "src.summary", "--compare", "--out", f"{tmp}/compare")
        shutil.copy(Path(tmp, "compare", "model_comparison.png"), HERE / "model_comparison.png")
        client = MlflowClient(uri)
        parents = {
            r.info.run_name.split(" #")[0]: r
            for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
            if r.data.tags.get("sweep") == "true"
        }
        best = parents["logistic_regression_grid"].data.tags["best_run_id"]
        plots = client.download_artifacts(best, "plots", tmp)
        shutil.copy(Path(plots, "feature_importance.png"), HERE / "feature_importance.png")
        args = ["ui", "--backend-store-uri", uri, "--workers", "1"]
        with (
            mlflow_process(args, Path(tmp, "ui.log"), timeout=90) as url,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            for sweep in SWEEPS:
                parent = parents[sweep]
                page.goto(f"{url}/{parent.data.tags['ui_link_path']}")
                section = f"Sweep {parent.info.run_name}: the best 10"
                page.get_by_text(section).first.wait_for(timeout=90_000)
                page.wait_for_timeout(5000)  # the charts draw
                for label in ("Hide banner", "Close"):  # the shared-view banner, the assistant
                    shown = page.locator(f'[aria-label="{label}"]:visible')
                    if shown.count():
                        shown.first.click()
                page.wait_for_timeout(1500)
                page.screenshot(path=str(HERE / f"ui_{sweep}.png"))
            browser.close()


if __name__ == "__main__":
    main()
