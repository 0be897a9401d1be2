"""The pure functions of a sweep's overrides: run names, job keys, swept values (no sweep run)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from src.sweep.overrides import child_run_name, job_key, model_choice

KNN = OmegaConf.create({"model": {"_target_": "sklearn.neighbors.KNeighborsClassifier"}})


@pytest.mark.parametrize(  # one row a case, however long
    ("overrides", "swept", "name"),
    [
        # a model typed in the overrides names it, as its job's composed config would
        (["model=knn", "model.n_neighbors=5", "model.weights=distance"], (), "knn n_neighbors=5 weights=distance"),
        (["model.n_neighbors=5", "model.weights=distance"], (), "KNeighborsClassifier n_neighbors=5 weights=distance"),
        # in a sweep only the swept keys are named: the rest is the same for every child
        (["model.n_neighbors=5", "data=heart", "seed=3"], ("model.n_neighbors",), "KNeighborsClassifier n_neighbors=5"),
        # where and how, not what: store, data path, policy and Hydra's own keys are left out
        (["mlflow.tracking_uri=x", "data.path=/d.csv", "sweep.resume=latest", "hydra.verbose=true", "sweeps=knn_grid", "data=heart"], (), "KNeighborsClassifier data=heart"),
        (["+model.foo=1", "~model.bar"], (), "KNeighborsClassifier foo=1 bar="),
    ],
)  # fmt: skip
def test_child_run_name_names_what_varies(overrides, swept, name) -> None:
    assert child_run_name(KNN, overrides, swept) == name


def test_model_choice_prefers_the_chosen_group_option() -> None:
    chosen = OmegaConf.merge(KNN, {"hydra": {"runtime": {"choices": {"model": "knn"}}}})
    assert model_choice(chosen) == "knn"
    assert model_choice(KNN) == "KNeighborsClassifier"  # outside Hydra: the class


def test_job_key_ignores_order_and_the_sweep_policy() -> None:
    a = job_key(["model=knn", "model.n_neighbors=5", "sweep.resume=latest", "hydra.job.num=3"])
    b = job_key(["model.n_neighbors=5", "model=knn", "sweep.max_failures=0"])
    assert a == b == "model.n_neighbors=5 model=knn"
    assert job_key(["model.n_neighbors=7", "model=knn"]) != a
