"""Shared fixtures: the repo, the heart data it ships, and real sweeps, in this process or in
subprocesses."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from .helpers import (
    HEART_CSV,
    new_store,
    train,
)


@pytest.fixture(autouse=True)
def in_own_folder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own folder: nothing a test makes by a relative path (MLflow's
    default ./mlruns for an experiment made without an artifact location) lands in the
    repository. Subprocesses are started in the repository on purpose (`cli`). Hydra's own
    launcher suites keep theirs: their joblib workers outlive a test, and its folder."""
    if request.module.__name__.endswith("test_launcher_suites"):
        return
    monkeypatch.chdir(request.getfixturevalue("tmp_path"))


@pytest.fixture
def heart_csv() -> Path:
    """The UCI Cleveland heart data the tests ship (tests/data/README.md: source, licence)."""
    return HEART_CSV


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite store, created (and its schema migrated) once per test session."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def tracking_uri(tmp_path: Path, migrated_store: Path) -> str:
    """A fresh sqlite store under tmp_path."""
    return new_store(migrated_store, tmp_path)


@pytest.fixture
def run_train(tracking_uri: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """`train` against the test's own store, with Hydra's output dirs under tmp_path."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        dirs = [f"hydra.sweep.dir={tmp_path}/sweep", f"hydra.run.dir={tmp_path}/run"]
        return train(tracking_uri, *args, *dirs, env=env)

    return run


LONGEST = "tests/test_readme.py::test_every_readme_command_runs_as_written"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest test (every README command, minutes) first: a worker runs it while the
    other runs the rest, instead of both waiting for it at the end."""
    items.sort(key=lambda item: item.nodeid != LONGEST)
