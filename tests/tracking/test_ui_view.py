"""The MLflow UI view of a sweep when the installed UI would not read it: a plain link, why."""

from __future__ import annotations

from dataclasses import replace

from mlflow.tracking import MlflowClient

from src.tracking import ui_view
from src.tracking.ui_view import (
    PAGE,
    SweepView,
    best_of,
    charts_note,
    search_filter,
    store_view,
)


def test_a_ui_that_does_not_read_the_format_gets_the_plain_link(tracking_uri, monkeypatch) -> None:
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("views")
    parent = client.create_run(experiment).info.run_id
    view = SweepView(experiment, parent, "knn #1", "cv_accuracy_mean", "maximize",
                     ("model.n_neighbors",), ("model.n_neighbors",), (), None, ())  # fmt: skip
    ui_view.unsupported.cache_clear()
    monkeypatch.setattr(ui_view, "UI_MARKERS", (*ui_view.UI_MARKERS, "a marker of no MLflow"))
    try:
        path, reason = store_view(client, view)
    finally:
        ui_view.unsupported.cache_clear()
    assert path == f"#/experiments/{experiment}/runs?compareRunsMode=CHART"
    assert reason is not None and "does not read shared views as 3.17's does" in reason
    assert not any(
        k.startswith(ui_view.VIEW_TAG_PREFIX) for k in client.get_experiment(experiment).tags
    )
    monkeypatch.undo()
    path, reason = store_view(client, view)  # the shipped UI reads it
    assert reason is None and f"viewStateShareKey={parent}" in path


def test_more_children_than_the_ui_loads_are_filtered_to_the_best() -> None:
    """The UI loads 100 runs at first: past that, the view's filter keeps the best 100 by the
    selection metric, in the sweep's direction."""
    scores = [i / 1000 for i in range(250)]
    assert best_of(scores[:PAGE], "maximize") == (None, PAGE)
    assert best_of(scores, "maximize") == (0.15, 100)
    assert best_of(scores, "minimize") == (0.099, 100)
    # a tie across the page's end is left out (the page would show some of it), unless the
    # best score alone fills more than a page
    assert best_of([*scores, 0.15, 0.15], "maximize") == (0.151, 99)
    assert best_of([*scores, 0.249, 0.249], "maximize") == (0.152, 100)
    assert best_of([0.9] * 101 + [0.1], "maximize") == (0.9, 101)
    assert best_of([0.1] * 150 + [0.2] * 5, "minimize") == (0.1, 150)
    view = SweepView("1", "abc", "knn #1", "cv_accuracy_mean", "maximize", (), (), (), None, (),
                     cutoff=0.15)  # fmt: skip
    assert search_filter(view) == (
        "tags.mlflow.parentRunId = 'abc' and metrics.`cv_accuracy_mean` >= 0.15"
    )
    assert search_filter(replace(view, direction="minimize", cutoff=0.1 + 0.2)) == (
        "tags.mlflow.parentRunId = 'abc' and metrics.`cv_accuracy_mean` <= 0.30000000000000004"
    )  # the value exactly as stored, so the 100th itself is in
    assert search_filter(replace(view, cutoff=None)) == "tags.mlflow.parentRunId = 'abc'"


def test_the_note_says_why_the_charts_show_fewer_than_the_ui_loads() -> None:
    """A tie across the page's end leaves fewer than a page charted: the note says so, and does
    not call that number the most the UI loads."""
    assert charts_note(100, 10_000, "m") == (
        "its charts show the best 100 of 10,000 children by m: the most the UI loads at once"
    )
    fewer = charts_note(28, 10_000, "m")
    assert fewer.startswith("its charts show the best 28 of 10,000 children by m: the UI loads")
    assert "tied at the next score" in fewer and "the most" not in fewer
    assert charts_note(150, 155, "m") == (
        "its charts show 100 of the 150 children tied at the best m: the most the UI loads at once"
    )
