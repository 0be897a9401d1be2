"""Registering the best model, the champion gate, predicting and serving."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from functools import partial
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .helpers import (
    HEART_CSV,
    cli,
    fold_history,
    in_process,
    mlflow_process,
    new_store,
    train_in_process,
)
from .helpers import heart_sweep as run_heart_sweep

pytestmark = pytest.mark.xdist_group("registry")  # its module fixtures, set up once

NAME = "heart-classifier"
WORSE = ["model=decision_tree", "model.max_depth=1"]
BETTER = ["model=logistic_regression"]


def heart_sweep(uri: str, tmp: Path, *overrides: str) -> str:
    """Run a heart sweep with the model logged; return its parent run id."""
    return run_heart_sweep(uri, tmp / f"sweep{time.time_ns()}", *overrides)


def champion_version(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(NAME, "champion").version)


@pytest.fixture(scope="module")
def registry(migrated_store, tmp_path_factory) -> dict:
    """Three sweeps of different quality, each registered right after it finished."""
    tmp = tmp_path_factory.mktemp("registry")
    uri = new_store(migrated_store, tmp)
    client = MlflowClient(uri)
    steps = []
    for overrides in (WORSE, BETTER, WORSE):
        sweep_id = heart_sweep(uri, tmp, *overrides)
        result = in_process(uri, "src.register", "data=heart")
        assert result.returncode == 0, result.stderr
        steps.append(
            {"sweep": sweep_id, "output": result.stdout, "champion": champion_version(client)}
        )
    return {"uri": uri, "tmp": tmp, "steps": steps, "client": client}


@pytest.mark.slow  # three sweeps (the registry fixture); make test and CI run it
def test_first_champion_then_better_takes_over_then_worse_is_challenger(registry) -> None:
    client, steps = registry["client"], registry["steps"]
    assert [s["champion"] for s in steps] == ["1", "2", "2"]
    v1, v2, v3 = (client.get_model_version(NAME, str(v)) for v in (1, 2, 3))
    assert v1.tags["archived"] == "true" and v1.tags["archived_by"] == "2"
    assert "champion" in v2.aliases and "archived" not in v2.tags
    assert v3.aliases == ["challenger"]
    assert "is worse than the champion's" in steps[2]["output"]
    assert float(v2.tags["selection_value"]) > float(v1.tags["selection_value"])
    assert v1.tags["selection_metric"] == "cv_accuracy_mean" and v1.tags["dataset"] == "heart"
    assert v2.tags["sweep_run_id"] == steps[1]["sweep"]
    assert {"metric.test_accuracy", "metric.roc_auc", "param.model", "run_id"} <= set(v2.tags)
    assert v1.description and v1.run_id == v1.tags["run_id"]  # history intact
    for step, decision in zip(steps, ("champion", "champion", "challenger"), strict=True):
        tags = client.get_run(step["sweep"]).data.tags
        assert tags["registry.decision"] == decision and tags["registry.model_name"] == NAME
        assert tags["registry.reason"]


@pytest.mark.slow  # the registry fixture's three sweeps; make test and CI run it
def test_registering_the_same_sweep_twice_adds_no_version(registry) -> None:
    client = registry["client"]
    before = len(client.search_model_versions(f"name = '{NAME}'"))
    again = in_process(
        registry["uri"], "src.register", "data=heart", "--sweep", registry["steps"][1]["sweep"]
    )
    assert again.returncode == 0, again.stderr
    assert "Already registered" in again.stdout and "version 2" in again.stdout
    assert len(client.search_model_versions(f"name = '{NAME}'")) == before
    assert champion_version(client) == "2"


@pytest.mark.slow  # a sweep more; make test and CI run it
def test_an_equal_score_ties_the_champion(registry) -> None:
    uri, client = registry["uri"], registry["client"]
    sweep_id = heart_sweep(uri, registry["tmp"], "model=logistic_regression", "model.C=2")
    result = cli(uri, "src.register", "--sweep", sweep_id)  # the python -m path, no overrides
    assert result.returncode == 0, result.stderr
    best = client.get_run(client.get_run(sweep_id).data.tags["best_run_id"])
    first = result.stdout.splitlines()[0]
    source = f"{best.info.run_name!r} ({best.info.run_id}), cv_accuracy_mean=0.8471"
    assert first.endswith(f"-> challenger: the sweep's best child {source}")
    assert "ties the champion's 0.8471 (version 2): the champion stays" in result.stdout
    assert champion_version(client) == "2"


def heart_rows(n: int = 40) -> pd.DataFrame:
    """The first n rows of the heart data plus every row with a missing value."""
    frame = pd.read_csv(HEART_CSV, na_values="?").drop(columns=["num"])
    return frame[(frame.index < n) | frame.isna().any(axis=1)]


def test_predict_matches_the_childs_own_model(gated, tmp_path) -> None:
    uri = gated["uri"]
    client = MlflowClient(uri)
    rows = heart_rows()
    assert rows.isna().any().any()  # rows with missing values included
    rows.to_csv(tmp_path / "patients.csv", index=False)
    result = cli(
        uri,
        "src.predict",
        "--model",
        f"models:/{NAME}@champion",
        "--input",
        str(tmp_path / "patients.csv"),
        "--output",
        str(tmp_path / "out.csv"),
    )
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["prediction", "probability_0", "probability_1"]
    run_id = client.get_model_version_by_alias(NAME, "champion").run_id
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        own = mlflow.sklearn.load_model(f"runs:/{run_id}/model")
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")
    assert (out["prediction"].to_numpy() == own.predict(rows.astype("float64"))).all()
    assert out[["probability_0", "probability_1"]].sum(axis=1).round(6).eq(1).all()


@pytest.mark.parametrize(
    ("columns", "model", "message"),
    [
        (
            lambda f: f.drop(columns=["age"]),
            f"models:/{NAME}@champion",
            "lacks columns the model needs: ['age']",
        ),
        (lambda f: f.assign(num=0), f"models:/{NAME}@champion", "does not take: ['num']"),
        (lambda f: f, "models:/no-such-model@champion", "no-such-model"),
    ],
)
def test_predict_bad_input_is_a_clear_error(gated, tmp_path, columns, model, message) -> None:
    columns(heart_rows(5)).to_csv(tmp_path / "in.csv", index=False)
    result = in_process(
        gated["uri"], "src.predict", "--model", model, "--input", str(tmp_path / "in.csv")
    )
    assert result.returncode == 1
    assert message in result.stderr


@pytest.mark.slow  # a model server; make test and CI run it
def test_served_model_answers_like_predict(gated, tmp_path) -> None:
    uri = gated["uri"]
    rows = heart_rows(25)
    body = json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split", index=False))})
    args = ["models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager", "local"]
    with mlflow_process(args, tmp_path / "serve.log", env={"MLFLOW_TRACKING_URI": uri}) as url:
        request = urllib.request.Request(
            f"{url}/invocations",
            data=body.encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served = json.loads(response.read())["predictions"]
    rows.to_csv(tmp_path / "rows.csv", index=False)
    result = in_process(
        uri,
        "src.predict",
        "--model",
        f"models:/{NAME}@champion",
        "--input",
        str(tmp_path / "rows.csv"),
    )
    assert result.returncode == 0, result.stderr
    predicted = pd.read_csv(pd.io.common.StringIO(result.stdout))["prediction"].tolist()
    assert served == predicted


@pytest.mark.slow  # a sweep more; make test and CI run it
def test_sweep_without_finished_children_registers_nothing(migrated_store, tmp_path) -> None:
    uri = new_store(migrated_store, tmp_path)
    failed = train_in_process(
        uri,
        "-m",
        "model=knn",
        "model.n_neighbors=900,1000",
        "data=heart",
        f"data.path={HEART_CSV}",
        "mlflow.log_plots=false",
        f"hydra.sweep.dir={tmp_path}/s",
    )
    assert failed.returncode != 0 and "2 of 2 jobs failed" in failed.stderr
    result = in_process(uri, "src.register", "data=heart")
    assert result.returncode == 1 and "no finished child" in result.stderr
    with pytest.raises(MlflowException):
        MlflowClient(uri).get_registered_model(NAME)


@pytest.mark.slow  # a sweep more; make test and CI run it
def test_lean_sweep_without_a_model_registers_nothing(migrated_store, tmp_path) -> None:
    uri = new_store(migrated_store, tmp_path)
    heart_sweep(uri, tmp_path, "model=logistic_regression", "mlflow.log_model=false")
    result = in_process(uri, "src.register", "data=heart")
    assert result.returncode == 1 and "logged no model" in result.stderr
    assert MlflowClient(uri).search_registered_models() == []


GATED = ["model=logistic_regression", "registry.enabled=true"]


@pytest.fixture(scope="module")
def gated(migrated_store, tmp_path_factory) -> dict:
    """One sweep registered by itself (registry.enabled=true): the first champion."""
    tmp = tmp_path_factory.mktemp("gated")
    uri = new_store(migrated_store, tmp)
    return {"uri": uri, "tmp": tmp, "sweep": heart_sweep(uri, tmp, *GATED)}


def test_registry_gate_runs_at_the_end_of_a_sweep_and_registers_a_run_once(gated) -> None:
    client = MlflowClient(gated["uri"])
    assert champion_version(client) == "1"
    tags = client.get_run(gated["sweep"]).data.tags
    assert tags["registry.decision"] == "champion" and tags["registry.version"] == "1"
    again = in_process(gated["uri"], "src.register", "--sweep", gated["sweep"])
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"Already registered (no new version): {NAME} version 1")
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1


def test_register_and_predict_without_the_variable_use_the_named_store(
    gated, tmp_path, monkeypatch, capsys
) -> None:
    """As a user runs them: no MLFLOW_TRACKING_URI, the store named by --tracking-uri; MLflow's
    own lookups (a new version's models:/m-... source, a models:/ URI) go there too, and
    nothing creates ./mlflow.db."""
    from src import predict, register

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri, name = gated["uri"], "no-variable-classifier"
    args = ["--tracking-uri", uri, "--sweep", gated["sweep"], "--name", name]
    assert register.main(args) == 0, capsys.readouterr().err
    assert f"Registered {name} version 1 -> champion" in capsys.readouterr().out
    heart_rows(5).to_csv(tmp_path / "in.csv", index=False)
    model = f"models:/{name}@champion"
    code = predict.main(["--tracking-uri", uri, "--model", model, "--input", "in.csv"])
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("prediction,probability_0,probability_1")
    assert list(tmp_path.iterdir()) == [tmp_path / "in.csv"]  # no ./mlflow.db, no ./mlruns
    assert "MLFLOW_TRACKING_URI" not in os.environ  # put back as it was


@pytest.mark.slow  # a sweep more; make test and CI run it
def test_a_resumed_sweep_registers_its_best_once(gated) -> None:
    uri = gated["uri"]
    resumed = heart_sweep(uri, gated["tmp"], *GATED, "sweep.resume=latest")
    assert resumed == gated["sweep"]
    client = MlflowClient(uri)
    assert [str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")] == ["1"]
    assert client.get_run(resumed).data.tags["registry.version"] == "1"


# higher than the logistic regression champion on the same folds (0.8512 against 0.8471), and
# not significantly so (p about 0.27)
CLOSE = ["model=logistic_regression", "model.C=5"]


@pytest.fixture(scope="module")
def evidence(registry) -> dict:
    """After the registry's steps (a logistic regression champion), a less regularised one with
    a higher CV score that is not significantly better on the same five folds."""
    uri, client = registry["uri"], registry["client"]
    champion = client.get_model_version_by_alias(NAME, "champion")
    sweep_id = heart_sweep(uri, registry["tmp"], *CLOSE)
    # --min-improvement first: better by 0.004, not by 0.5
    margin = in_process(uri, "src.register", "--sweep", sweep_id, "--min-improvement", "0.5")
    assert margin.returncode == 0, margin.stderr
    assert (
        "beats the champion's 0.8471 (version 2) by 0.0041, less than the --min-improvement 0.5"
        in margin.stdout
    )
    result = in_process(uri, "src.register", "data=heart", "--sweep", sweep_id)
    assert result.returncode == 0, result.stderr
    version = client.get_run(sweep_id).data.tags["registry.version"]
    return registry | {
        "sweep": sweep_id,
        "output": result.stdout,
        "champion": champion,
        "version": version,
    }


@pytest.mark.slow  # a sweep more; make test and CI run it
def test_a_higher_score_without_a_significant_paired_win_is_a_challenger(evidence) -> None:
    client, champion = evidence["client"], evidence["champion"]
    assert champion_version(client) == str(champion.version)
    new = client.get_model_version(NAME, evidence["version"])
    assert new.aliases == ["challenger"]
    assert "beats the champion's 0.8471" in evidence["output"]
    assert "but not significantly" in evidence["output"]
    tags = client.get_run(evidence["sweep"]).data.tags
    p_value = float(tags["registry.p_value"])
    assert f"p = {p_value:.4f}" in tags["registry.reason"] and p_value >= 0.05
    assert tags["registry.decision"] == "challenger" and tags["registry.forced"] == "false"
    # the version records the folds it was scored on, as the gate needs
    run = client.get_run(new.run_id)
    for key in ("cv.seed", "cv.folds", "cv.repeats"):
        assert new.tags[key] == run.data.params[key]
    assert new.tags["data.train_fingerprint"] == run.data.tags["data.train_fingerprint"]
    # the p-value is the formula on the two versions' logged folds
    from src.ml.stats import corrected_ttest

    folds = partial(fold_history, client)
    n_train, n_test = int(new.tags["cv.n_train"]), int(new.tags["cv.n_test"])
    expected = corrected_ttest(folds(new.run_id), folds(champion.run_id), n_train, n_test)[1]
    assert p_value == pytest.approx(expected)


@pytest.mark.slow  # a sweep more; make test and CI run it
def test_force_promotes_and_says_it_was_forced(evidence) -> None:
    uri, client = evidence["uri"], evidence["client"]
    before = champion_version(client)
    try:
        args = ["data=heart", "--sweep", evidence["sweep"], "--force"]
        result = in_process(uri, "src.register", *args)
        assert result.returncode == 0, result.stderr
        assert champion_version(client) == evidence["version"]
        forced = client.get_model_version(NAME, evidence["version"])
        assert forced.tags["registry.forced"] == "true"
        tags = client.get_run(evidence["sweep"]).data.tags
        assert tags["registry.forced"] == "true" and tags["registry.decision"] == "champion"
        assert tags["registry.reason"].startswith("forced by --force, although the gate said:")
    finally:  # the registry as it was, for this module's other tests, whatever their order
        client.set_registered_model_alias(NAME, "champion", before)
        client.set_registered_model_alias(NAME, "challenger", evidence["version"])
        for tag in ("archived", "archived_by"):
            client.delete_model_version_tag(NAME, before, tag)


@pytest.mark.slow  # a sweep more; make test and CI run it
def test_a_score_on_other_folds_is_no_evidence(evidence) -> None:
    """Another seed, another split: a higher CV score there proves nothing against the champion."""
    uri, client = evidence["uri"], evidence["client"]
    champion = champion_version(client)
    sweep_id = heart_sweep(uri, evidence["tmp"], "model=logistic_regression", "seed=9")
    result = in_process(uri, "src.register", "data=heart", "--sweep", sweep_id)
    assert result.returncode == 0, result.stderr
    assert champion_version(client) == champion
    tags = client.get_run(sweep_id).data.tags
    reason = tags["registry.reason"]
    assert "0.8677 beats the champion's 0.8471" in reason  # each on its own folds
    assert "the champion was scored on other CV folds (cv.seed=42, the training data)" in reason
    assert "the score alone is no evidence" in reason
    assert tags["registry.p_value"] == "n/a" and tags["registry.decision"] == "challenger"


@pytest.mark.slow  # a sweep more; make test and CI run it
def test_a_sweep_of_seeds_only_has_nothing_to_register(evidence) -> None:
    uri, client = evidence["uri"], evidence["client"]
    before = len(client.search_model_versions(f"name = '{NAME}'"))
    heart_sweep(uri, evidence["tmp"], "model=knn", "seed=1,2")
    result = in_process(uri, "src.register")  # the latest sweep of the store
    assert result.returncode == 1
    assert "varies only seeds (seed): its best is the luckiest seed" in result.stderr
    assert len(client.search_model_versions(f"name = '{NAME}'")) == before
