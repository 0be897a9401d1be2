"""Every private API the project uses (README, "Private APIs we rely on") is still there, with the
signature our code calls: an upgrade that changes one fails here, loudly, by name."""

from __future__ import annotations

import inspect

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.config_repository import CachingConfigRepository
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from sklearn.base import BaseEstimator

from .helpers import REPO

# (what, callable, the parameter names our calls pass, in order; self/cls left out)
USED = [
    ("ConfigLoaderImpl._apply_overrides_to_config", ConfigLoaderImpl._apply_overrides_to_config,
     ["overrides", "cfg"]),
    ("ConfigLoaderImpl._parse_overrides_and_create_caching_repo",
     ConfigLoaderImpl._parse_overrides_and_create_caching_repo, ["config_name", "overrides"]),
    ("get_overrides_dirname", get_overrides_dirname, ["overrides", "exclude_keys", "item_sep",
                                                      "kv_sep"]),
    ("CachingConfigRepository", CachingConfigRepository.__init__, ["delegate"]),
    ("BasicSweeper.split_arguments", BasicSweeper.split_arguments, ["overrides", "max_batch_size"]),
    ("BasicSweeper, subclassed", BasicSweeper.__init__, ["max_batch_size", "params"]),
    ("mlflow _use_tracking_uri", _use_tracking_uri, ["uri"]),
    ("scikit-learn BaseEstimator._validate_params", BaseEstimator._validate_params, []),
]  # fmt: skip


@pytest.mark.parametrize(("name", "function", "params"), USED, ids=[u[0] for u in USED])
def test_a_private_api_we_call_is_still_there(name, function, params) -> None:
    names = [p for p in inspect.signature(function).parameters if p not in ("self", "cls")]
    assert names[: len(params)] == params, f"{name} changed: now ({', '.join(names)})"


def test_the_readme_lists_every_private_api_we_use() -> None:
    listed = (REPO / "README.md").read_text().split("### Private APIs we rely on", 1)[1]
    for name, _, _ in USED:
        assert name.rsplit(" ", 1)[-1].rsplit(".", 1)[-1] in listed, f"README misses {name}"


def test_our_sweepers_find_what_they_read_on_the_basic_sweeper() -> None:
    """SweepsRaceSweeper and SweepsGridSweeper (BasicSweepers) read these attributes, set by
    `__init__` and `setup`, and call `split_arguments`; the grid sweeper also `get_job_batch`
    and `is_done` (over its `overrides`)."""
    import hydra._internal.core_plugins.basic_sweeper as basic  # as Hydra's plugin scan left it

    sweeper = basic.BasicSweeper(max_batch_size=None, params={})
    for name in ("config", "launcher", "hydra_context", "params", "max_batch_size", "overrides"):
        assert hasattr(sweeper, name), f"BasicSweeper has no {name} any more"
    sweeper.overrides = [[["a=1"]], [["a=2"]]]
    assert sweeper.get_job_batch() == [["a=1"]] and not sweeper.is_done()
    assert sweeper.get_job_batch() == [["a=2"]] and sweeper.is_done()
