"""Sweep summaries: files and tags at the end of a sweep, ranking, and `python -m src.summary`."""

from __future__ import annotations

import base64
import gc
import json
import time
import zlib

import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from src.tracking import store
from src.tracking.ui_view import VIEW_TAG_PREFIX

from .helpers import (
    BEST,
    hand_sweep,
    in_process,
    make_child,
    new_store,
    sweep_runs,
    train_in_process,
)

pytestmark = pytest.mark.xdist_group("summary")  # its module fixtures, set up once

SWEEP = [
    "-m",
    "model=knn",
    "model.n_neighbors=3,500,5,9",
    "model.weights=uniform,distance",
    "data=iris",
    "mlflow.log_model=false",
]


@pytest.fixture(scope="module")
def failed_sweep(migrated_store, tmp_path_factory) -> dict:
    """One real sweep of 8 jobs where the two n_neighbors=500 jobs fail."""
    tmp = tmp_path_factory.mktemp("summary")
    uri = new_store(migrated_store, tmp)
    result = train_in_process(uri, *SWEEP, f"hydra.sweep.dir={tmp}/sweep")
    return {"uri": uri, "result": result, "dir": tmp / "sweep"}


def test_sweep_with_failures_still_gets_a_complete_summary(failed_sweep) -> None:
    result, uri = failed_sweep["result"], failed_sweep["uri"]
    assert result.returncode != 0  # jobs failed: the command says so
    assert "2 of 8 jobs failed" in result.stderr
    parent, children = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert sorted(c.info.status for c in children) == ["FAILED"] * 2 + ["FINISHED"] * 6
    metrics = parent.data.metrics
    assert (metrics["n_children"], metrics["n_finished"], metrics["n_failed"]) == (8, 6, 2)
    table = pd.read_csv(failed_sweep["dir"] / "sweep_summary.csv")
    assert len(table) == 8 and set(table["run_id"]) == {c.info.run_id for c in children}
    assert list(table["status"][-2:]) == ["FAILED", "FAILED"]  # failures ranked last
    assert {"model.n_neighbors", "model.weights", "cv_accuracy_mean", "roc_auc"} <= set(table)
    markdown = (failed_sweep["dir"] / "sweep_summary.md").read_text()
    assert "## Failed or interrupted jobs" in markdown
    assert "n_neighbors=500" in markdown and "Expected n_neighbors <= n_samples_fit" in markdown
    pngs = ("metric_vs_params", "parallel_coordinates", "parameter_importance", "verdict")
    for name in (f"{png}.png" for png in pngs):
        assert (failed_sweep["dir"] / name).read_bytes()[:4] == b"\x89PNG"
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(parent.info.run_id, "summary")}
    assert {
        "summary/sweep_summary.csv",
        "summary/sweep_summary.md",
        "summary/metric_vs_params.png",
        "summary/parameter_importance.csv",
    } <= artifacts
    assert "Best: knn" in result.stdout and "sweep_summary.md" in result.stdout


def test_best_child_matches_a_direct_mlflow_query(failed_sweep) -> None:
    uri = failed_sweep["uri"]
    parent, _ = sweep_runs(uri)
    client = MlflowClient(uri)
    direct = client.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent.info.run_id}' and attributes.status = 'FINISHED'",
        order_by=["metrics.cv_accuracy_mean DESC"],
    )
    table = pd.read_csv(failed_sweep["dir"] / "sweep_summary.csv")
    ranked = table[table["rank"].notna()]
    assert list(ranked["cv_accuracy_mean"]) == [r.data.metrics["cv_accuracy_mean"] for r in direct]
    best_id = parent.data.tags["best_run_id"]
    assert best_id == ranked.iloc[0]["run_id"]
    best = client.get_run(best_id)
    assert best.data.tags["best_in_sweep"] == "true"
    assert (
        parent.data.metrics["best_cv_accuracy_mean"] == direct[0].data.metrics["cv_accuracy_mean"]
    )
    assert parent.data.metrics["best_test_accuracy"] == best.data.metrics["test_accuracy"]
    tagged = client.search_runs([parent.info.experiment_id], "tags.best_in_sweep = 'true'")
    assert [r.info.run_id for r in tagged] == [best_id]
    assert parent.data.params["sweep.model.n_neighbors"] == "3,500,5,9"


def test_parameter_importance_ranks_the_parameter_that_matters(failed_sweep) -> None:
    importance = pd.read_csv(failed_sweep["dir"] / "parameter_importance.csv")
    assert set(importance["param"]) == {"model.n_neighbors", "model.weights"}
    assert importance["eta_squared"].between(0, 1).all()
    by_param = dict(zip(importance["param"], importance["eta_squared"], strict=True))
    table = pd.read_csv(failed_sweep["dir"] / "sweep_summary.csv")
    ranked = table[table["rank"].notna()]
    spread = ranked.groupby("model.n_neighbors")["cv_accuracy_mean"].mean()
    if spread.max() > spread.min():
        assert by_param["model.n_neighbors"] > 0


def test_summary_cli_prints_the_latest_sweep_ranked(failed_sweep, tmp_path) -> None:
    uri = failed_sweep["uri"]
    parent, children = sweep_runs(uri)
    result = in_process(
        uri, "src.summary", "data=iris"
    )  # the configured experiment: iris-classification
    assert result.returncode == 0, result.stderr
    assert parent.info.run_id in result.stdout
    assert (
        f"Best run: {pd.read_csv(failed_sweep['dir'] / 'sweep_summary.csv').iloc[0]['run_name']}"
        in result.stdout
    )
    assert result.stdout.count("knn n_neighbors=") >= 9  # 8 rows + the best run line
    by_id = in_process(
        uri,
        "src.summary",
        "--experiment",
        "iris-classification",
        "--sweep",
        parent.info.run_id,
        "--csv",
        str(tmp_path / "results.csv"),
    )
    assert by_id.returncode == 0, by_id.stderr
    exported = pd.read_csv(tmp_path / "results.csv")
    assert len(exported) == len(children) == 8
    assert {"model.n_neighbors", "cv.folds", "data.test_size", "test_accuracy"} <= set(exported)
    assert "Wrote 8 runs (the sweep's child runs, with the verdict columns)" in by_id.stdout
    # the same table as sweep_summary.csv: verdict columns, ranks written as integers
    assert {"p_value_vs_best", "p_value_holm", "equivalent_to_best"} <= set(exported)
    assert (tmp_path / "results.csv").read_text().splitlines()[1].startswith("1,")
    every = in_process(uri, "src.summary", "--all", "--csv", str(tmp_path / "experiment.csv"))
    assert every.returncode == 0, every.stderr
    assert "Wrote 9 runs (every run of experiment 'iris-classification')" in every.stdout
    assert set(pd.read_csv(tmp_path / "experiment.csv")["run_id"]) == {
        parent.info.run_id,
        *(c.info.run_id for c in children),
    }
    listing = in_process(uri, "src.summary", "--experiment", "iris-classification", "--list")
    assert listing.returncode == 0 and parent.info.run_id in listing.stdout
    assert " 8 " in listing.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep", "0123456789abcdef0123456789abcdef"], "no run"),
        (["--sweep", "CHILD"], "is not a sweep"),
        (
            ["--experiment", "nope-classification"],
            "no experiment 'nope-classification' in the tracking store",
        ),
        (["data=wine", "--list"], "experiments here: Default, iris-classification"),
    ],
)
def test_summary_cli_bad_input_exits_1(failed_sweep, args, message) -> None:
    uri = failed_sweep["uri"]
    _, children = sweep_runs(uri)
    args = [children[0].info.run_id if a == "CHILD" else a for a in args]
    result = in_process(uri, "src.summary", *args)
    assert result.returncode == 1
    assert message in result.stderr


def test_summary_without_arguments_takes_the_latest_sweep_of_the_store(failed_sweep) -> None:
    """Whichever experiment it is in (the configured default is breast cancer's)."""
    uri = failed_sweep["uri"]
    parent, _ = sweep_runs(uri)
    result = in_process(uri, "src.summary")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert parent.info.run_id in first and "in experiment 'iris-classification'" in first
    listing = in_process(uri, "src.summary", "--list")
    assert listing.returncode == 0 and "iris-classification" in listing.stdout


def test_any_run_with_nested_children_is_summarised(tracking_uri) -> None:
    """A parent this project did not make (no sweep tag), as MLflow autolog or Optuna's
    callback make them: ranked by the metric given."""
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("foreign")
    parent = client.create_run(experiment_id, run_name="GridSearchCV")
    now = int(time.time() * 1000)
    for alpha, score in ((0.1, 0.7), (1.0, 0.9), (10.0, 0.8)):
        child = client.create_run(
            experiment_id, tags={"mlflow.parentRunId": parent.info.run_id}, run_name=f"a{alpha}"
        )
        client.log_batch(
            child.info.run_id,
            metrics=[Metric("mean_test_score", score, now, 0)],
            params=[Param("alpha", str(alpha))],
        )
        client.set_terminated(child.info.run_id, "FINISHED")
    result = in_process(
        tracking_uri, "src.summary", "--sweep", parent.info.run_id, "--metric", "mean_test_score"
    )
    assert result.returncode == 0, result.stderr
    assert "ranked by mean_test_score (maximize)" in result.stdout
    assert "Best run: a1.0" in result.stdout
    assert "No paired comparison with the best: mean_test_score is not cross-validated" in (
        result.stdout
    )
    shown = in_process(
        tracking_uri, "src.summary", "--sweep", parent.info.run_id, "--metric",
        "mean_test_score", "--ui",
    )  # fmt: skip
    key = parent.info.run_id
    link = f"MLflow UI: http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?"
    assert f"{link}viewStateShareKey={key}&compareRunsMode=CHART" in shown.stdout
    stored = json.loads(client.get_experiment(experiment_id).tags[VIEW_TAG_PREFIX + key])
    assert stored["name"] == "Sweep GridSearchCV" and stored["state"].startswith("deflate;")
    state = json.loads(zlib.decompress(base64.b64decode(stored["state"].removeprefix("deflate;"))))
    assert state["searchFilter"] == f"tags.mlflow.parentRunId = '{key}'"
    assert state["orderByKey"] == "metrics.`mean_test_score`" and not state["orderByAsc"]
    charts = [c for c in state["compareRunCharts"] if not c["deleted"]]
    assert [c["type"] for c in charts] == ["BAR", "PARALLEL", "SCATTER"]  # alpha is numeric
    assert charts[1]["selectedParams"] == ["alpha"] and charts[2]["xaxis"]["key"] == "alpha"


def test_summary_cli_on_an_experiment_without_sweeps(migrated_store, tmp_path) -> None:
    uri = new_store(migrated_store, tmp_path)
    MlflowClient(uri).create_experiment("empty")
    result = in_process(uri, "src.summary", "--experiment", "empty")
    assert result.returncode == 1 and "has no sweeps" in result.stderr


def test_summary_of_a_sweep_stopped_before_any_child_started(migrated_store, tmp_path) -> None:
    """Ctrl-C before the first job: the summary still gets written, saying there is no best."""
    from src.analysis.report import summarize_sweep

    uri = new_store(migrated_store, tmp_path)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("stopped")
    parent = client.create_run(
        experiment_id, tags={"sweep": "true", "sweep_metric": "cv_accuracy_mean"}
    )
    client.log_batch(parent.info.run_id, params=[Param("sweep.model.n_neighbors", "3,5")])
    summary, link = summarize_sweep(uri, parent.info.run_id, tmp_path / "out")
    assert summary.best is None and summary.table.empty
    assert f"viewStateShareKey={parent.info.run_id}" in link.url and link.note is None
    assert "there is no best run" in (tmp_path / "out" / "sweep_summary.md").read_text()
    assert client.get_run(parent.info.run_id).data.metrics["n_children"] == 0


def test_pages_are_read_with_the_garbage_collector_paused(migrated_store, tmp_path) -> None:
    """A page of runs is read with the garbage collector off (the collections its ORM objects
    trigger were most of a big sweep's reading time), which is then as it was."""
    client = MlflowClient(new_store(migrated_store, tmp_path))
    experiment_id = client.create_experiment("paged")
    for i in range(3):
        client.create_run(experiment_id, run_name=f"run {i}")
    collections: list[str] = []
    searched = client.search_runs

    def search_runs(*args, **kwargs):
        collections.append("on" if gc.isenabled() else "off")
        result = searched(*args, **kwargs)
        collections.append("on" if gc.isenabled() else "off")
        return result

    client.search_runs = search_runs  # type: ignore[method-assign]
    assert len(store.search_all_runs(client, [experiment_id], "")) == 3
    assert collections == ["off", "off"] and gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(ZeroDivisionError), store.gc_paused():
            1 / 0  # noqa: B018
        assert not gc.isenabled()  # a collector the caller had off stays off
    finally:
        gc.enable()


def test_summary_of_more_children_than_a_page_lists_them_all(
    migrated_store, tmp_path, monkeypatch
) -> None:
    """A store's search answers a page at a time (`store.PAGE_SIZE` runs): with pages of 10,
    a sweep of 25 children is read to its last page, every child listed and exported."""
    monkeypatch.setattr(store, "PAGE_SIZE", 10)
    uri = new_store(migrated_store, tmp_path)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("big")
    parent = client.create_run(
        experiment_id,
        run_name="big sweep",
        tags={"sweep": "true", "sweep_metric": "cv_accuracy_mean"},
    )
    client.log_batch(parent.info.run_id, params=[Param("sweep.model.n_neighbors", "1..25")])
    now = int(time.time() * 1000)
    for i in range(25):
        child = client.create_run(
            experiment_id,
            run_name=f"knn n_neighbors={i + 1}",
            tags={"mlflow.parentRunId": parent.info.run_id},
        )
        client.log_batch(
            child.info.run_id,
            metrics=[
                Metric("cv_accuracy_mean", (i * 7 % 25) / 25, now, 0),
                Metric("cv_accuracy_std", 0.01, now, 0),
            ],
            params=[Param("model.n_neighbors", str(i + 1))],
            tags=[RunTag("job_number", str(i))],
        )
        client.set_terminated(child.info.run_id, "FINISHED")
    result = in_process(
        uri, "src.summary", "--experiment", "big", "--csv", str(tmp_path / "all.csv")
    )
    assert result.returncode == 0, result.stderr
    assert "25 children" in result.stdout
    exported = pd.read_csv(tmp_path / "all.csv")
    assert len(exported) == 25 and exported["model.n_neighbors"].nunique() == 25
    assert exported["cv_accuracy_mean"].is_monotonic_decreasing


def test_a_large_sweep_prints_its_best_rows_and_says_how_many_more(tracking_uri) -> None:
    client = MlflowClient(tracking_uri)
    parent = hand_sweep(client, "large", {f"child{k:02}": BEST for k in range(60)})
    result = in_process(tracking_uri, "src.summary", "--sweep", parent)
    assert result.returncode == 0, result.stderr
    assert "\n... and 10 more children (every one: --csv PATH)\n" in result.stdout
    assert (
        sum(line.startswith(" ") and "child" in line for line in result.stdout.splitlines()) == 50
    )


def test_a_finished_sweep_prints_what_it_recorded_until_a_child_is_added(
    migrated_store, tmp_path
) -> None:
    """The command prints the text the sweep recorded at its end (a sweep of 10,000 children is
    not read again: tests/benchmarks), the same as reading the children again; a child started
    after it (a resume, one added by hand) makes the command read them again."""
    uri = new_store(migrated_store, tmp_path)
    sweep = ["-m", "model=knn", "model.n_neighbors=3,5,7", "data=iris", "mlflow.log_model=false"]
    assert train_in_process(uri, *sweep, f"hydra.sweep.dir={tmp_path}/sweep").returncode == 0
    recorded = in_process(uri, "src.summary")
    fresh = in_process(uri, "src.summary", "--fresh")
    assert recorded.returncode == fresh.returncode == 0, recorded.stderr + fresh.stderr
    text, said = recorded.stdout.rstrip().rsplit("\n", 1)
    assert said.startswith("(As the sweep recorded it at its end, ")
    assert "Downloading artifacts" not in recorded.stderr  # MLflow's progress bar: noise here
    assert text.rstrip() == fresh.stdout.rstrip()
    assert text.rstrip() == (tmp_path / "sweep" / "sweep_summary.txt").read_text().rstrip()
    parent, _ = sweep_runs(uri)
    client = MlflowClient(uri)
    make_child(client, parent.info.experiment_id, parent.info.run_id, "late", BEST, 11)
    again = in_process(uri, "src.summary")
    assert "(As the sweep recorded it" not in again.stdout and "late" in again.stdout
    assert "4 children" in again.stdout.splitlines()[0]
