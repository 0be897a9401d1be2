"""End to end: `mlflow ui` on loopback shows a finished sweep's metrics in its chart view, and
each child's per-fold scores as a line by step."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from playwright.sync_api import sync_playwright

from .conftest import REPO, mlflow_process, sweep_runs

pytestmark = pytest.mark.slow  # run by `make test` / CI via `pytest -m slow`

CHROMIUM = "/usr/bin/chromium"
# as the machine's own probe starts it: no sandbox as root, and no background network traffic
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "tests" / "screenshots"


@pytest.fixture
def mlflow_ui(run_train, tracking_uri, tmp_path):
    """A finished sweep, and `mlflow ui` serving its store on a loopback port."""
    result = run_train(
        "-m",
        "model=knn",
        "model.n_neighbors=3,7,11",
        "model.weights=uniform,distance",
        "data=wine",
        "mlflow.log_model=false",
    )
    assert result.returncode == 0, result.stderr
    args = ["ui", "--backend-store-uri", tracking_uri, "--workers", "1"]
    with mlflow_process(args, tmp_path / "ui.log", timeout=90) as url:
        yield url


def test_chart_view_shows_the_sweep_metrics_on_open(mlflow_ui, tracking_uri, tmp_path) -> None:
    assert Path(CHROMIUM).exists(), "Debian's chromium is required: apt-get install chromium"
    parent, children = sweep_runs(tracking_uri)
    experiment = MlflowClient(tracking_uri).get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 950})

            def loopback_only(route) -> None:  # the UI must need nothing beyond our server
                if route.request.url.startswith(mlflow_ui):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", loopback_only)
            page.goto(
                f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs?compareRunsMode=CHART"
            )
            # the parent's own metrics are charted as soon as the page opens
            page.get_by_text("Model metrics").first.wait_for(timeout=90_000)
            page.get_by_text("best_cv_accuracy_mean").first.wait_for(timeout=30_000)
            search = page.get_by_placeholder("Search metric charts")
            for metric in ("best_test_accuracy", "best_roc_auc", "n_children", "n_failed"):
                search.fill(metric)  # the grid is virtualised: filter to bring each chart in
                page.get_by_text(metric, exact=True).first.wait_for(timeout=15_000)
            search.fill("")
            assert page.get_by_text(parent.info.run_name).count() >= 1
            close = page.get_by_role("button", name="Close")
            if close.count():
                close.first.click()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(tmp_path / "chart_view.png"))
            # expand the parent (the button in its name cell): each child's cv_accuracy by fold
            name = page.get_by_text(parent.info.run_name, exact=True).first
            name.locator("xpath=ancestor::div[.//button][1]").locator("button").first.click()
            page.get_by_text(children[0].info.run_name, exact=True).first.wait_for(timeout=30_000)
            search.fill("cv_accuracy")
            title = page.get_by_text("cv_accuracy", exact=True).first
            title.wait_for(timeout=30_000)
            card = page.get_by_test_id("experiment-view-compare-runs-card").filter(has=title)
            card.get_by_text("Step", exact=True).wait_for(timeout=30_000)  # a line chart by step
            legend = card.first.inner_text()
            for child in children:
                assert f"{child.info.run_name} (cv_accuracy)" in legend
            page.wait_for_timeout(1500)
            page.screenshot(path=str(tmp_path / "fold_lines.png"))
        finally:
            browser.close()
    assert outside == []
    SCREENSHOTS.mkdir(exist_ok=True)
    for shot in ("chart_view.png", "fold_lines.png"):
        assert (tmp_path / shot).stat().st_size > 20_000
        if os.environ.get("UPDATE_SCREENSHOTS"):
            shutil.copy(tmp_path / shot, SCREENSHOTS / shot)
