"""End to end: `mlflow ui` on loopback shows a finished sweep's metrics in its chart view, and
each child's per-fold scores as a line by step."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from src.analysis.ranking import load_summary
from src.analysis.report import sweep_view
from src.tracking.store import DEFAULT_UI_URL
from src.tracking.ui_view import VIEW_TAG_PREFIX

from ..helpers import (
    REPO,
    all_runs,
    browse,
    close_banners,
    grow_sweep,
    mlflow_process,
    new_store,
    train_in_process,
)

pytestmark = [  # run by `make test` / CI via `pytest -m slow`; its module fixture set up once
    pytest.mark.slow,
    pytest.mark.xdist_group("ui"),
]

SCREENSHOTS = REPO / "tests" / "screenshots"
# each plotly chart on the page: its axes' types and x title, and its traces' names and sizes
PLOTLY_AXES = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => ({
    x: p._fullLayout.xaxis && p._fullLayout.xaxis.type,
    y: p._fullLayout.yaxis && p._fullLayout.yaxis.type,
    x_title: p._fullLayout.xaxis && p._fullLayout.xaxis.title && p._fullLayout.xaxis.title.text,
    traces: (p._fullData || []).map(d => d.name || ''),
    points: (p._fullData || []).map(d => (d.x || []).length),
}))"""


@pytest.fixture(scope="module")
def ui_store(migrated_store, tmp_path_factory) -> tuple[str, Path]:
    """The store of the UI tests, and the folder of its sweeps."""
    tmp = tmp_path_factory.mktemp("ui")
    return new_store(migrated_store, tmp), tmp


@pytest.fixture(scope="module")
def mlflow_ui(ui_store):
    """Two finished sweeps in one experiment (the first is the one charted), and `mlflow ui`
    serving their store on a loopback port; the URL and each sweep's printed UI link."""
    tracking_uri, tmp = ui_store
    links = []
    swept = (
        ["model.n_neighbors=3,5,7,9,11,13", "model.weights=uniform,distance"],
        ["model.n_neighbors=4,8"],
    )
    for extra in swept:
        result = train_in_process(
            tracking_uri,
            "-m",
            "model=knn",
            *extra,
            "data=wine",
            "mlflow.log_model=false",
            f"hydra.sweep.dir={tmp}/sweep",
        )
        assert result.returncode == 0, result.stderr
        (link,) = [line for line in result.stdout.splitlines() if line.startswith("MLflow UI: ")]
        links.append(link.removeprefix("MLflow UI: "))
    args = ["ui", "--backend-store-uri", tracking_uri, "--workers", "1"]
    with mlflow_process(args, tmp / "ui.log", timeout=90) as url:
        yield url, links


def sweeps(tracking_uri: str) -> list[tuple[Run, list[Run]]]:
    """Each sweep's parent and children, in the order they ran."""
    runs = all_runs(tracking_uri)
    parents = sorted((r for r in runs if "sweep" in r.data.tags), key=lambda r: r.info.start_time)
    return [
        (p, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id])
        for p in parents
    ]


def test_each_sweeps_link_opens_its_own_chart_view(mlflow_ui, ui_store, tmp_path) -> None:
    url, links = mlflow_ui
    tracking_uri, sweeps_dir = ui_store
    (first, first_children), (second, second_children) = sweeps(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment(first.info.experiment_id)
    for parent, link in ((first, links[0]), (second, links[1])):
        path = client.get_run(parent.info.run_id).data.tags["ui_link_path"]
        assert link == f"{DEFAULT_UI_URL}/{path}"  # what `make ui` serves
        assert f"viewStateShareKey={parent.info.run_id}" in path
        assert f"{VIEW_TAG_PREFIX}{parent.info.run_id}" in experiment.tags  # two views
    assert links[1] in (sweeps_dir / "sweep" / "sweep_summary.md").read_text()  # the last one's
    # the first sweep: 12 children, n_neighbors and weights swept. Its section: a bar of the
    # selection metric, a parallel-coordinates chart, a scatter for n_neighbors (weights is not
    # numeric), and the per-fold cv_accuracy by step; then the 5 test metrics in their own
    sweep_charts, test_charts = 4, 5

    def visit(page) -> None:
        page.goto(links[0].replace(DEFAULT_UI_URL, url))
        page.get_by_text("You're viewing a shared view").first.wait_for(timeout=90_000)
        section = f"Sweep {first.info.run_name}: the best 10"
        page.get_by_text(section).first.wait_for(timeout=60_000)
        page.wait_for_timeout(3000)  # the section's chart count settles as the charts load
        body = page.inner_text("body")
        assert re.search(rf"{re.escape(section)}\s*\({sweep_charts}\)", body), body[:3000]
        tests = f"Sweep {first.info.run_name}: test metrics"
        assert re.search(rf"{re.escape(tests)}\s*\({test_charts}\)", body), body[:3000]
        assert body.index(section) < body.index(tests) < body.index("Model metrics")
        for title in ("Parallel Coordinates", "Showing all runs", "model.n_neighbors"):
            page.get_by_text(title).first.wait_for(state="attached", timeout=30_000)
        table = page.get_by_text(f"{len(first_children)} matching runs").first
        table.wait_for(timeout=30_000)
        assert page.get_by_text(first.info.run_name, exact=True).count() == 0  # children only
        for child in first_children:
            page.get_by_text(child.info.run_name).first.wait_for(timeout=10_000)
        shown = page.inner_text("body")
        for child in second_children:  # not another sweep's (n_neighbors 4 and 8)
            assert child.info.run_name.split(" weights")[0] not in shown, child.info.run_name
        page.get_by_text("Model metrics").first.wait_for(timeout=10_000)  # and nothing else
        assert "Model metrics\n(0)" in page.inner_text("body")
        # what the charts draw, read from plotly: the best 10 of the 12 in the bar and the
        # scatter (a linear axis: the UI has no log axis for a param), 10 runs' folds by step
        plots = page.evaluate(PLOTLY_AXES)
        bar, scatter, folds = (
            next(p for p in plots if p["x_title"] == title)
            for title in ("Click to enter X axis title", "model.n_neighbors", "Step")
        )
        assert bar["points"] == [10] and bar["y"] == "category"
        assert scatter["points"] == [10] and (scatter["x"], scatter["y"]) == ("linear", "linear")
        assert len(folds["traces"]) >= 10 and set(folds["points"]) == {5}  # 5 folds each
        assert len({t.removesuffix(" (cv_accuracy)") for t in folds["traces"]}) == 10
        close_banners(page)
        page.screenshot(path=str(tmp_path / "sweep_view.png"))
        # the same view as a table: the swept params and the selection metric as columns
        page.goto(links[0].replace(DEFAULT_UI_URL, url).replace("=CHART", "=TABLE"))
        headers = page.locator('[role="columnheader"]')
        headers.filter(has_text="cv_accuracy_mean").first.wait_for(timeout=30_000)
        names = {headers.nth(i).inner_text().strip() for i in range(headers.count())}
        assert {"model.n_neighbors", "model.weights", "cv_accuracy_mean"} <= names, names

    assert browse(url, visit) == []
    keep_screenshots(tmp_path, "sweep_view.png")


def keep_screenshots(tmp_path: Path, *shots: str) -> None:
    """Check the screenshots are real pictures; copy them to tests/screenshots on request."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for shot in shots:
        assert (tmp_path / shot).stat().st_size > 20_000
        if os.environ.get("UPDATE_SCREENSHOTS"):
            shutil.copy(tmp_path / shot, SCREENSHOTS / shot)


def test_chart_view_shows_the_sweep_metrics_on_open(mlflow_ui, ui_store, tmp_path) -> None:
    mlflow_ui, _ = mlflow_ui
    tracking_uri, _ = ui_store
    # the latest sweep (2 children): its rows come first, within the 10 runs charted by default
    parent, children = sweeps(tracking_uri)[-1]
    experiment = MlflowClient(tracking_uri).get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    def visit(page) -> None:
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

    assert browse(mlflow_ui, visit) == []
    keep_screenshots(tmp_path, "chart_view.png", "fold_lines.png")


def test_a_sweep_of_10000_children_charts_its_best_100(migrated_store, tmp_path) -> None:
    """More children than the UI loads at once (its first 100): the view is filtered to the best
    100 by the selection metric, the link says so, and the page opens on them with its charts
    drawn (the count it shows is the filter's, and true). The store is made fast: a real sweep
    of 4, then copies of its children to 10,000 (the time to open it: tests/benchmarks)."""
    uri = new_store(migrated_store, tmp_path)
    overrides = ["model=knn", "model.n_neighbors=3,5", "model.weights=uniform,distance"]
    result = train_in_process(
        uri, "-m", *overrides, "data=wine", "mlflow.log_model=false",
        f"hydra.sweep.dir={tmp_path}/sweep",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    client = MlflowClient(uri)
    ((parent, children),) = sweeps(uri)
    small = load_summary(client, parent)
    copies = grow_sweep(tmp_path / "mlflow.db", parent.info.run_id, 10_000)
    by_id = small.table.set_index("run_id")
    rows = [
        by_id.loc[original].to_dict()
        | {"run_id": run_id, "run_name": f"copy {i + len(children)}", small.metric: score}
        for i, (run_id, (original, score)) in enumerate(copies.items())
    ]
    table = pd.concat([small.table, pd.DataFrame(rows)], ignore_index=True)
    table = table.sort_values(small.metric, ascending=False, ignore_index=True)
    table["rank"] = pd.array(range(1, len(table) + 1), dtype="Int64")
    link = sweep_view(client, uri, replace(small, table=table))
    said = "its charts show the best 100 of 10,000 children by cv_accuracy_mean"
    assert said in str(link), str(link)
    best = list(table["run_name"].head(10))
    with mlflow_process(["ui", "--backend-store-uri", uri, "--workers", "1"], tmp_path / "ui.log",
                        timeout=90) as url:  # fmt: skip

        def visit(page) -> None:
            page.goto(link.url.replace(DEFAULT_UI_URL, url))
            page.get_by_text("100 matching runs").first.wait_for(timeout=60_000)
            page.get_by_text("Parallel Coordinates").first.wait_for(timeout=30_000)
            page.wait_for_timeout(3000)
            plots = page.evaluate(PLOTLY_AXES)
            bar = next(p for p in plots if p["x_title"] == "Click to enter X axis title")
            assert bar["points"] == [10]  # the best 10 of the loaded, best first
            shown = page.inner_text("body")
            for name in best:
                assert name in shown, name
            assert "Load more" not in shown  # the filter holds the best 100 only
            page.screenshot(path=str(tmp_path / "sweep_view_10000.png"))

        assert browse(url, visit) == []
    keep_screenshots(tmp_path, "sweep_view_10000.png")
