"""Multi-objective sweeps end to end: the heart random-forest grid of accuracy against fit time
(both fronts in the CSV, the markdown, the CLI, the PNG, the parent), with constraints; the
Optuna search of the same space, told one value per objective and its constraints, resumed
after Ctrl-C and run on joblib workers."""

from __future__ import annotations

import json
import pickle
import shutil
import signal
import time

import optuna
import pandas as pd
import pytest
from hydra.core.utils import JobReturn, JobStatus
from mlflow.tracking import MlflowClient
from optuna.distributions import IntDistribution
from optuna.trial import TrialState

from hydra_plugins.sweeps_optuna_sweeper._core import JOB_STATUS, RUN_ID, tell
from src import summary as summary_cli
from src.tracking.child_run import RunScores

from ..helpers import (
    HEART_CSV,
    LEAN,
    all_runs,
    browse,
    close_banners,
    mlflow_process,
    start,
    sweep_runs,
    train,
    train_in_process,
    wait_for,
)
from ..tracking.test_ui import PLOTLY_AXES, keep_screenshots

HEART = ["data=heart", f"data.path={HEART_CSV}"]
FRONTS = ("pareto_front", "not_shown_dominated", "dominated_by")


def test_a_trial_is_told_one_value_per_objective_and_its_constraints() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    trials = [study.ask({"x": IntDistribution(0, 9)}) for _ in range(3)]
    kept = RunScores((0.8, 0.05), "a", {"model_bytes<=1e+06": -5.0})
    broken = pickle.loads(pickle.dumps(RunScores((0.9, 0.5), "b", {"model_bytes<=1e+06": 7.0})))
    assert broken.run_id == "b" and broken.violations == {"model_bytes<=1e+06": 7.0}
    nan = RunScores((0.9, float("nan")), "c")
    results = [JobReturn(status=JobStatus.COMPLETED, _return_value=v) for v in (kept, broken, nan)]
    assert [tell(study, t, r) for t, r in zip(trials, results, strict=True)] == [
        False,
        False,
        True,
    ]
    one, two, three = study.trials
    assert one.values == [0.8, 0.05] and one.constraints == {"model_bytes<=1e+06": -5.0}
    assert two.constraints == {"model_bytes<=1e+06": 7.0} and two.user_attrs[RUN_ID] == "b"
    assert three.state == TrialState.FAIL and three.user_attrs[JOB_STATUS] == "FAILED"
    assert [t.number for t in study.best_trials] == [0]  # the broken one is infeasible


@pytest.fixture(scope="module")
def tradeoff_sweep(tmp_path_factory, migrated_store):
    """The heart trade-off grid (12 forests) with a size constraint, in its own store."""
    from ..helpers import new_store

    tmp = tmp_path_factory.mktemp("tradeoffs")
    uri = new_store(migrated_store, tmp)
    result = train_in_process(
        uri, "-m", "sweeps=random_forest_tradeoffs", *HEART, "registry.enabled=true",
        'sweep.constraints=["model_bytes<=1.5e6"]', f"hydra.sweep.dir={tmp}/sweep",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return uri, tmp / "sweep", result.stdout


@pytest.mark.slow
def test_the_heart_tradeoff_grid_shows_both_fronts(tradeoff_sweep, capsys, tmp_path) -> None:
    uri, sweep_dir, output = tradeoff_sweep
    parent, children = sweep_runs(uri)
    assert len(children) == 12 and {c.info.status for c in children} == {"FINISHED"}
    for child in children:  # the costs every child measures
        metrics = child.data.metrics
        assert metrics["cv_fit_time_mean"] > 0 and metrics["model_bytes"] > 1000
        assert metrics["predict_ms_per_row"] > 0
        assert child.data.tags["feasible"] == str(metrics["model_bytes"] <= 1.5e6).lower()
    table = pd.read_csv(sweep_dir / "sweep_summary.csv")
    assert set(FRONTS) <= set(table.columns)
    infeasible = table[~table["feasible"]]
    assert len(infeasible) and infeasible["rank"].isna().all()  # never ranked ...
    assert infeasible["pareto_front"].isna().all()  # ... nor on a front
    assert (infeasible["infeasible"] == "model_bytes<=1.5e+06").all()
    feasible = table[table["feasible"]]
    assert feasible["pareto_front"].notna().all() and feasible["not_shown_dominated"].notna().all()
    # the front of the means, recomputed from the table
    values = feasible[["cv_accuracy_mean", "cv_fit_time_mean"]].to_numpy()
    on_front = [
        not any((o[0] >= v[0] and o[1] <= v[1]) and (o[0] > v[0] or o[1] < v[1]) for o in values)
        for v in values
    ]
    assert feasible["pareto_front"].tolist() == on_front
    # a child is shown dominated exactly when someone dominates it
    shown = feasible["not_shown_dominated"].astype(bool)
    assert (feasible["dominated_by"].isna() == shown).all()
    # the chosen child: the most accurate of the feasible ones not shown dominated
    pool = feasible[shown]
    best_id = parent.data.tags["best_run_id"]
    assert best_id == pool.loc[pool["cv_accuracy_mean"].idxmax(), "run_id"]
    tags = parent.data.tags
    assert json.loads(tags["sweep_objectives"]) == [
        ["cv_accuracy_mean", "maximize"],
        ["cv_fit_time_mean", "minimize"],
    ]
    assert json.loads(tags["sweep_constraints"]) == ["model_bytes<=1.5e+06"]
    assert tags["sweep_metric"] == tags["sweep_choose_by"] == "cv_accuracy_mean"
    rule = parent.data.tags["selection_rule"]
    assert rule.startswith("the largest cv_accuracy_mean among the ")
    assert "feasible (model_bytes<=1.5e+06) configurations not shown dominated" in rule
    assert parent.data.metrics["n_pareto_front"] == feasible["pareto_front"].sum()
    assert parent.data.metrics["n_not_shown_dominated"] == shown.sum()
    assert f"chosen by {rule}" in output and "Trade-offs: " in output
    (version,) = MlflowClient(uri).search_model_versions("name='heart-classifier'")
    assert version.run_id == best_id  # the registry gate registers the chosen child
    assert version.tags["selection_rule"] == rule
    markdown = (sweep_dir / "sweep_summary.md").read_text()
    counted = (
        f"{int(feasible['pareto_front'].sum())} of {len(feasible)} feasible configurations are "
        f"on the Pareto front of the mean scores (pareto_front), {int(shown.sum())} are not "
        f"shown dominated"
    )
    assert "## Trade-offs" in markdown and counted in markdown
    assert "![Pareto fronts](pareto_front.png)" in markdown
    shutil.copy(sweep_dir / "pareto_front.png", tmp_path / "random_forest_tradeoffs_pareto.png")
    keep_screenshots(tmp_path, "random_forest_tradeoffs_pareto.png")  # the README's picture
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(parent.info.run_id, "summary")}
    assert "summary/pareto_front.png" in artifacts
    assert summary_cli.main(["--tracking-uri", uri]) == 0
    printed = capsys.readouterr().out
    assert counted in printed and "objectives cv_accuracy_mean (maximize)" in printed
    assert f"chosen by {rule}" in printed


def search(tmp, *extra: str) -> list[str]:
    """The Optuna search of the trade-off space in a persistent study."""
    return [
        "-m", "sweeps=random_forest_tradeoffs_optuna", *HEART, *LEAN,
        f"hydra.sweeper.storage=sqlite:///{tmp}/optuna.db", "hydra.sweeper.n_trials=6",
        'sweep.constraints=["model_bytes<=1.5e6"]', *extra,
    ]  # fmt: skip


def check_study(uri: str, tmp, n: int) -> None:
    """The study holds `n` complete trials, each with two values and its constraint, each its
    FINISHED child, and the parent's summary has both fronts."""
    study = optuna.load_study(
        study_name="random_forest_tradeoffs_optuna", storage=f"sqlite:///{tmp}/optuna.db"
    )
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n
    client = MlflowClient(uri)
    for trial in complete:
        assert len(trial.values) == 2 and set(trial.constraints) == {"model_bytes<=1.5e+06"}
        child = client.get_run(trial.user_attrs[RUN_ID])
        assert child.info.status == "FINISHED"
        assert trial.values == [
            pytest.approx(child.data.metrics["cv_accuracy_mean"]),
            pytest.approx(child.data.metrics["cv_fit_time_mean"]),
        ]
    parent, children = sweep_runs(uri)
    assert sorted(c.info.run_id for c in children) == sorted(t.user_attrs[RUN_ID] for t in complete)
    assert parent.data.tags["selection_rule"].startswith("the largest cv_accuracy_mean among")
    front = {t.user_attrs[RUN_ID] for t in study.best_trials}  # Optuna's own, on the values
    assert set(parent.data.tags["search_pareto_front_run_ids"].split(",")) == front
    assert "n_not_shown_dominated" in parent.data.metrics


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]])
def test_an_optuna_tradeoff_search_resumes_after_ctrl_c(launcher, tracking_uri, tmp_path) -> None:
    process, out = start(tracking_uri, tmp_path, *search(tmp_path, *launcher))
    wait_for(out, "[2/6]", process)
    deadline = time.monotonic() + 60
    while not [r for r in all_runs(tracking_uri) if r.info.status == "RUNNING"
               and r.data.tags.get("optuna.trial_number")]:  # fmt: skip
        assert time.monotonic() < deadline and process.poll() is None, out.read_text()
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    assert process.returncode != 0
    assert [r for r in all_runs(tracking_uri) if r.info.status == "RUNNING"] == []
    resumed = train(
        tracking_uri, *search(tmp_path, *launcher), "sweep.resume=latest",
        f"hydra.sweep.dir={tmp_path}/s",
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    check_study(tracking_uri, tmp_path, 6)
    assert "Trade-offs: " in resumed.stdout


@pytest.mark.slow
def test_the_ui_view_charts_the_objectives_of_every_child(tradeoff_sweep, tmp_path) -> None:
    uri, _, _ = tradeoff_sweep
    parent, children = sweep_runs(uri)
    args = ["ui", "--backend-store-uri", uri, "--workers", "1"]
    section = f"Sweep {parent.info.run_name}: trade-offs, every child"

    def visit(page) -> None:
        page.goto(f"{url}/{parent.data.tags['ui_link_path']}")
        page.get_by_text(section).first.wait_for(timeout=90_000)
        page.wait_for_timeout(5000)  # the charts draw
        plots = page.evaluate(PLOTLY_AXES)
        (scatter,) = [p for p in plots if p["x_title"] == "cv_fit_time_mean"]
        assert scatter["points"] == [len(children)]  # every child, not the best 10
        close_banners(page)
        page.screenshot(path=str(tmp_path / "ui_tradeoffs.png"))

    with mlflow_process(args, tmp_path / "ui.log", timeout=90) as url:
        assert browse(url, visit) == []
    keep_screenshots(tmp_path, "ui_tradeoffs.png")


@pytest.mark.slow
def test_a_single_objective_sweep_never_chooses_an_infeasible_child(tracking_uri, tmp_path) -> None:
    result = train_in_process(
        tracking_uri, "-m", "model=knn", "model.n_neighbors=1,15", *HEART, *LEAN,
        'sweep.constraints=["cv_accuracy_mean>=0.8"]', f"hydra.sweep.dir={tmp_path}/sweep",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    parent, children = sweep_runs(tracking_uri)
    by_k = {c.data.params["model.n_neighbors"]: c for c in children}
    assert (
        by_k["1"].data.metrics["cv_accuracy_mean"]
        < 0.8
        <= by_k["15"].data.metrics["cv_accuracy_mean"]
    )
    assert by_k["1"].data.tags["infeasible"] == "cv_accuracy_mean>=0.8"
    assert by_k["15"].data.tags["feasible"] == "true"
    assert parent.data.tags["best_run_id"] == by_k["15"].info.run_id
    rule = "the best score among the feasible children (cv_accuracy_mean>=0.8)"
    assert parent.data.tags["selection_rule"] == rule
    markdown = (tmp_path / "sweep" / "sweep_summary.md").read_text()
    assert "1 of 2 finished children break the constraints (cv_accuracy_mean&gt;=0.8)" in markdown
    assert "pareto_front" not in markdown  # one objective: no fronts
