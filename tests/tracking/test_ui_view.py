"""The MLflow UI view of a sweep when the installed UI would not read it: a plain link, why."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from src.tracking import ui_view
from src.tracking.ui_view import SweepView, store_view


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
