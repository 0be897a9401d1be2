"""The ready sweeps in sweeps/: each composes and expands as documented; some run for real."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.types import RunMode
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_breast_cancer

from src.ml.pipeline import build_estimator
from src.sweep.checks import validate_jobs
from src.sweep.overrides import expand_jobs

from ..helpers import REPO, SWEEP_FILES, sweep_runs

EXPECTED_JOBS = {
    "knn_grid": 7 * 2 * 3,
    "model_comparison": 4,
    "random_forest_grid": 3 * 3 * 3,
    "logistic_regression_grid": 7 * 4,
    "seeds": 10,
    "knn_optuna": 30,
    "random_forest_optuna": 30,
    "random_forest_tradeoffs": 4 * 3,
    "random_forest_tradeoffs_optuna": 12,
}
LEAN = ["mlflow.log_model=false", "mlflow.log_plots=false"]


def test_every_shipped_sweep_is_listed() -> None:
    assert sorted(EXPECTED_JOBS) == SWEEP_FILES


@pytest.mark.parametrize("name", SWEEP_FILES)
def test_sweep_file_composes_and_expands(name: str) -> None:
    header = (REPO / "sweeps" / f"{name}.yaml").read_text().splitlines()
    assert header[0] == "# @package _global_"
    assert any(f"python -m src.train sweeps={name}" in line for line in header[:5])
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"sweeps={name}"], return_hydra_config=True)
        assert cfg.hydra.mode == RunMode.MULTIRUN  # `-m` is optional
        jobs = expand_jobs(cfg)
        n_jobs = len(jobs) if jobs is not None else cfg.hydra.sweeper.n_trials
        assert n_jobs == EXPECTED_JOBS[name]
        validate_jobs(cfg, jobs)  # every job's model and data config is valid


def test_logistic_regression_grid_has_no_invalid_solver_penalty_pair() -> None:
    """Every job of the grid fits: the file only pairs solvers with penalties they support."""
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    penalties = yaml.safe_load((REPO / "sweeps" / "logistic_regression_grid.yaml").read_text())
    options = penalties["hydra"]["sweeper"]["params"]["lr_penalty"].split(",")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for option in options:
            cfg = compose(
                "config", overrides=["model=logistic_regression", f"+lr_penalty={option}"]
            )
            build_estimator(cfg.model).fit(X, y)


@pytest.mark.slow  # a sweep more; make test and CI run it
def test_knn_grid_runs_for_real_shrunk(run_train, tracking_uri) -> None:
    """`make sweep`'s sweep, 8 of its 42 jobs (test_sweep runs sweeps on joblib workers)."""
    result = run_train(
        "sweeps=knn_grid", "model.n_neighbors=3,5", "model.metric=euclidean,manhattan", *LEAN
    )
    assert result.returncode == 0, result.stderr
    parent, children = sweep_runs(tracking_uri)
    assert len(children) == 8 and {c.info.status for c in children} == {"FINISHED"}
    combos = {
        (
            c.data.params["model.n_neighbors"],
            c.data.params["model.weights"],
            c.data.params["model.metric"],
        )
        for c in children
    }
    assert len(combos) == 8
    assert children[0].info.run_name.startswith("knn n_neighbors=")
    assert "mlflow.log_model" not in children[0].info.run_name  # constant overrides stay out


@pytest.mark.slow  # an Optuna sweep; make test and CI run it
def test_optuna_sweep_best_trial_is_the_best_child(run_train, tracking_uri, tmp_path) -> None:
    result = run_train(
        "sweeps=knn_optuna",
        "hydra.sweeper.n_trials=6",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *LEAN,
    )
    assert result.returncode == 0, result.stderr
    parent, children = sweep_runs(tracking_uri)
    assert len(children) == 6 and {c.info.status for c in children} == {"FINISHED"}
    verdict = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    best_child = max(children, key=lambda c: c.data.metrics["cv_accuracy_mean"])
    assert verdict["best_value"] == pytest.approx(best_child.data.metrics["cv_accuracy_mean"])
    assert parent.data.metrics["search_best_value"] == pytest.approx(verdict["best_value"])
    assert parent.data.metrics["best_cv_accuracy_mean"] == pytest.approx(verdict["best_value"])
    search_best = MlflowClient(tracking_uri).get_run(parent.data.tags["search_best_run_id"])
    for key, value in verdict["best_params"].items():
        assert search_best.data.params[key] == str(value)
    assert parent.data.params["sweep.sampler"] == "TPESampler"
    assert parent.data.params["sweep.n_trials"] == "6"


@pytest.mark.slow
def test_resumed_optuna_sweep_keeps_trials_that_repeated_a_configuration(
    run_train, tracking_uri
) -> None:
    tiny = ["sweeps=knn_optuna", "hydra.sweeper.n_trials=5", *LEAN,
            "hydra.sweeper.params={model.n_neighbors: 'choice(3,5)', model.weights: uniform, "
            "model.metric: euclidean}"]  # fmt: skip  # 2 configurations, 5 trials: repeats
    first = run_train(*tiny)
    assert first.returncode == 0, first.stderr
    parent, children = sweep_runs(tracking_uri)
    assert len(children) == 5 and len({c.data.tags["job_key"] for c in children}) <= 2
    again = run_train(*tiny, "sweep.resume=latest")
    assert again.returncode == 0, again.stderr
    resumed, kept = sweep_runs(tracking_uri)
    assert resumed.info.run_id == parent.info.run_id
    assert {c.info.run_id for c in children} <= {c.info.run_id for c in kept}  # none deleted
    assert resumed.data.tags["best_run_id"] == parent.data.tags["best_run_id"]
    assert [c.data.tags.get("best_in_sweep") for c in kept].count("true") == 1


@pytest.mark.slow  # a sweep more; make test and CI run it
def test_seeds_sweep_records_the_spread_on_the_parent(run_train, tracking_uri) -> None:
    result = run_train("sweeps=seeds", "seed=1,2,3", "model=knn", *LEAN)
    assert result.returncode == 0, result.stderr
    parent, children = sweep_runs(tracking_uri)
    assert sorted(c.data.params["seed"] for c in children) == ["1", "2", "3"]
    scores = [c.data.metrics["cv_accuracy_mean"] for c in children]
    assert parent.data.metrics["mean_cv_accuracy_mean"] == pytest.approx(sum(scores) / 3)
    assert parent.data.metrics["std_cv_accuracy_mean"] > 0  # different splits, different scores
    summary = Path(parent.data.tags["sweep_dir"]) / "sweep_summary.md"
    assert "## Spread across children" in summary.read_text()


@pytest.mark.slow  # a sweep of every model; make test and CI run it
def test_model_comparison_is_one_child_per_model(run_train, tracking_uri) -> None:
    result = run_train("sweeps=model_comparison", *LEAN)
    assert result.returncode == 0, result.stderr
    parent, children = sweep_runs(tracking_uri)
    assert sorted(c.data.params["model"] for c in children) == [
        "knn",
        "logistic_regression",
        "random_forest",
        "svm",
    ]
    assert sorted(c.info.run_name for c in children) == [
        "knn",
        "logistic_regression",
        "random_forest",
        "svm",
    ]
