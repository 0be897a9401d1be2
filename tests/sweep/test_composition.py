"""CachingConfigLoader composes exactly what Hydra's own loader composes, once per group set."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hydra import initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.sweep import composition
from src.sweep.composition import CachingConfigLoader

from ..helpers import REPO

MASTER_OVERRIDES = [
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=2",
    "hydra.job.config.override_dirname.exclude_keys=[seed]",
    "model=knn",
    "model.n_neighbors=3,5",
]
JOBS = [
    ["model=knn", "model.n_neighbors=3", "model.weights=distance"],
    ["model=knn", "model.n_neighbors=7", "model.metric=manhattan", "seed=9"],
    ["model=random_forest", "model.n_estimators=50", "data=heart", "data.path=/d/h.csv"],
    ["model=logistic_regression", "+lr_penalty=l1_liblinear", "model.C=0.5"],
    ["sweeps=knn_grid", "model.n_neighbors=5", "model.metric=chebyshev"],
    ["cv={folds: 3}", "model.C=4"],
    ["model=knn", "+extra.note=hi", "++seed=3", "mlflow.experiment_name=${data.name}-x"],
    ["model=svm", "model.estimator.C=2.0", "~sweeps"],
    [],
    # a race's later round: its environment as hydra overrides (composed as values)
    ["model=knn", "++hydra.job.env_set.HYDRA_RACE_ROUND=2", "++hydra.job.env_set.RUN=ab12"],
    ["hydra.job.env_copy=[HOME]", "++hydra.job.env_set.HOME=/elsewhere"],
]


@pytest.fixture
def loaders() -> Iterator[tuple[DictConfig, ConfigLoaderImpl, CachingConfigLoader]]:
    """(master multirun config, Hydra's loader, ours) for this project's conf/."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        master = hydra.compose_config("config", MASTER_OVERRIDES, run_mode=RunMode.MULTIRUN)
        hydras = ConfigLoaderImpl(hydra.config_loader.config_search_path)
        composition._bases.clear()
        yield master, hydras, composition.install()


def _flags(cfg: DictConfig) -> tuple:
    return (
        OmegaConf.is_struct(cfg),
        OmegaConf.is_readonly(cfg),
        OmegaConf.is_struct(cfg.hydra),
        OmegaConf.is_readonly(cfg.hydra),
    )


def _resolved(cfg: DictConfig) -> dict:
    """The app's part, resolved (the hydra node needs a launcher's runtime values to resolve)."""
    return OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True
    )


@pytest.mark.parametrize("job", JOBS, ids=lambda job: " ".join(job) or "no overrides")
def test_same_config_as_hydra(loaders, job: list[str]) -> None:
    master, hydras, ours = loaders
    expected = hydras.load_sweep_config(master, list(job))
    for _ in range(2):  # the first composes, the second comes from the cache
        got = ours.load_sweep_config(master, list(job))
        assert OmegaConf.to_container(got) == OmegaConf.to_container(expected)
        assert _resolved(got) == _resolved(expected)
        assert _flags(got) == _flags(expected)
        got.seed = 12345  # a job may change its copy; the cached base stays as composed
    task = [o for o in job if not o.startswith(("hydra.", "++hydra."))]
    assert OmegaConf.to_container(got.hydra.overrides.task) == task


def test_composes_once_per_group_choice_set(loaders, monkeypatch) -> None:
    master, _, ours = loaders
    composed: list[list[str]] = []
    real = ConfigLoaderImpl.load_configuration

    def counting(self, config_name, overrides, run_mode, **kwargs):
        composed.append(list(overrides))
        return real(self, config_name, overrides, run_mode, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counting)
    for k in (1, 3, 5, 7):
        for weights in ("uniform", "distance"):
            cfg = ours.load_sweep_config(
                master, ["model=knn", f"model.n_neighbors={k}", f"model.weights={weights}"]
            )
            assert (cfg.model.n_neighbors, cfg.model.weights) == (k, weights)
    for round_index, run in ((1, "a1"), (1, "b2"), (2, "a1")):  # a race's later rounds
        env = [f"++hydra.job.env_set.{k}={v}" for k, v in (("R", round_index), ("RUN", run))]
        cfg = ours.load_sweep_config(master, ["model=knn", "model.n_neighbors=3", *env])
        env_set = OmegaConf.to_container(cfg.hydra.job.env_set)
        assert env_set == {"R": str(round_index), "RUN": run}
        assert list(cfg.hydra.overrides.hydra)[-2:] == env
    ours.load_sweep_config(master, ["model=random_forest", "model.max_depth=3"])
    assert [o for o in composed[0] if not o.startswith("hydra")] == ["model=knn"]
    assert [o for o in composed[1] if not o.startswith("hydra")] == ["model=random_forest"]
    assert len(composed) == 2


@pytest.mark.parametrize(
    ("job", "error", "names"),
    [
        (["model=knn", "model.bogus=1"], ConfigCompositionException, "model.bogus"),
        (["model=no_such_model"], MissingConfigException, "no_such_model"),
        (["model.n_neighbors=1,2"], ConfigCompositionException, "model.n_neighbors"),
        (["model={n_neighbors: 4}"], ConfigCompositionException, "model"),
    ],
)
def test_same_errors_as_hydra(loaders, job, error, names) -> None:
    master, hydras, ours = loaders
    with pytest.raises(error) as expected:
        hydras.load_sweep_config(master, job)
    with pytest.raises(error) as got:
        ours.load_sweep_config(master, job)
    assert names in str(got.value) or names in str(got.value.__cause__)
    assert str(got.value) == str(expected.value)


def test_install_replaces_the_loader_once(loaders) -> None:
    _, _, ours = loaders
    assert GlobalHydra.instance().config_loader() is ours
    assert composition.install() is ours


@pytest.mark.parametrize("cache", [True, False])
def test_compose_cache_setting_decides_the_loader(cache: bool) -> None:
    from src.sweep.checks import validate_jobs

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        overrides = ["model=knn", "model.n_neighbors=3,5", f"sweep.compose_cache={cache}"]
        master = hydra.compose_config("config", overrides, run_mode=RunMode.MULTIRUN)
        validate_jobs(master, [["model=knn", "model.n_neighbors=3"]])
        loader = GlobalHydra.instance().config_loader()
        # ours either way (it keeps passwords out of job configs); its cache only when asked
        assert isinstance(loader, CachingConfigLoader)
        assert loader.cache is cache
