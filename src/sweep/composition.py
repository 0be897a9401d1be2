"""Compose a sweep's job configs once per distinct set of config-group choices.

Hydra composes every job of a multirun from scratch (parse the overrides, build the
defaults list, load and merge the YAML files), in every launcher. Most jobs of a sweep differ only
in values (`model.n_neighbors=3` vs `=5`), and Hydra itself applies value overrides *after*
composing the defaults list. So `CachingConfigLoader` composes the defaults-affecting part of a
job (its group choices, deletions and appends, and its `hydra.*` overrides but those of the job's
environment, `hydra.job.env_set.<NAME>`) with Hydra's own loader once, keeps it, and for each job
deep-copies it and applies the job's value overrides with the very function Hydra uses
(`ConfigLoaderImpl._apply_overrides_to_config`), then sets the job-specific
`hydra.overrides.task`, `hydra.overrides.hydra` and `hydra.job.override_dirname` as Hydra does.
The result is the config Hydra would compose (tests/sweep/test_composition.py compares them, key
by key and flag by flag).

It also keeps passwords out of every job's config (`credentials.keep_credentials_out`, with
`sweep.compose_cache=false` too, which composes each job with Hydra's own code): Hydra saves a
job's config in its `.hydra/` folder before any code of the job runs.

The sweep callback installs it on the running Hydra instance before the sweeper exists
(`install`), so every launcher that composes through `config_loader.load_sweep_config` (basic,
joblib, submitit, ray, rq) uses it; joblib and submitit pickle the loader into their workers,
where the cache is this module's and each worker composes each group-choice set once.
"""

from __future__ import annotations

import copy
import functools
import os
import pickle
import sys
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.config_repository import CachingConfigRepository
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from src.sweep.credentials import keep_credentials_out

if TYPE_CHECKING:  # for the annotation only
    from hydra._internal.hydra import Hydra

MAX_CACHED = 32  # distinct (group choices, hydra overrides) sets kept per process

# per process, not per loader object: launchers pickle the loader into every job they send to
# a worker, and a cache travelling with it would be pickled (and lost) each time.
# A base is kept pickled when it can be (loading it is much faster than a deepcopy). It cannot be
# when one of its config classes was redefined since the loader loaded it: restoring Hydra's
# state in a worker (Singleton.set_state, per job in the stock joblib launcher) re-executes the
# plugin modules, while the loader pickled with the job still holds the classes from before.
_bases: OrderedDict[tuple, bytes | DictConfig] = OrderedDict()
_repos: OrderedDict[tuple, CachingConfigRepository] = OrderedDict()


class CachingConfigLoader(ConfigLoaderImpl):
    """Hydra's config loader; a sweep job's config is composed once per group-choice set (when
    `cache`), and its passwords kept out."""

    cache = True

    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        """The config of one job of the sweep `master_config` (same result as Hydra's, but for
        the user-info of its URIs)."""
        if self.cache:
            cfg = self._load_cached(master_config, sweep_overrides)
        else:
            cfg = super().load_sweep_config(master_config, sweep_overrides)
        keep_credentials_out(cfg)
        return cfg

    def _load_cached(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        hydra_overrides = OmegaConf.to_container(master_config.hydra.overrides.hydra)
        assert isinstance(hydra_overrides, list)
        config_name = master_config.hydra.job.config_name
        try:
            cfg = self._compose(config_name, [*hydra_overrides, *sweep_overrides])
        except OmegaConfBaseException as e:  # as Hydra's load_configuration reports it
            raise ConfigCompositionException().with_traceback(sys.exc_info()[2]) from e
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg

    def _compose(self, config_name: str | None, overrides: list[str]) -> DictConfig:
        parsed = [_parse(line) for line in overrides]
        if any(o.key_or_group.startswith("hydra.searchpath") for o in parsed):
            # a job that moves the search path: leave it all to Hydra
            return self.load_configuration(config_name, overrides, RunMode.RUN)
        self.validate_sweep_overrides_legal(parsed, run_mode=RunMode.RUN, from_shell=True)
        hydra_lines = tuple(
            str(o.input_line) for o in parsed if o.is_hydra_override() and not _sets_env(o)
        )
        repo = self._repository(config_name, hydra_lines)
        structural: list[Override] = []
        values: list[Override] = []
        for o in parsed:
            is_structural = (o.is_hydra_override() and not _sets_env(o)) or _selects_configs(
                o, repo
            )
            (structural if is_structural else values).append(o)
        key = (config_name, self._search_path(), tuple(o.input_line for o in structural))
        base = _bases.get(key)
        if base is None:
            composed = self.load_configuration(
                config_name, [str(o.input_line) for o in structural], RunMode.RUN
            )
            try:
                base = pickle.dumps(composed, protocol=pickle.HIGHEST_PROTOCOL)
            except pickle.PicklingError:  # a redefined config class (see _bases)
                base = composed
            _remember(_bases, key, base)
        cfg = pickle.loads(base) if isinstance(base, bytes) else copy.deepcopy(base)
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)  # what Hydra does with them
        task = [o for o in parsed if not o.is_hydra_override()]
        cfg.hydra.overrides.task = [o.input_line for o in task]
        cfg.hydra.overrides.hydra = [o.input_line for o in parsed if o.is_hydra_override()]
        with open_dict(cfg.hydra):  # as Hydra: a copied variable wins over a set one
            for name in cfg.hydra.job.env_copy:
                cfg.hydra.job.env_set[name] = os.environ[name]
        dirname = cfg.hydra.job.config.override_dirname
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=task,
            kv_sep=dirname.kv_sep,
            item_sep=dirname.item_sep,
            exclude_keys=dirname.exclude_keys,
        )
        return cfg

    def _repository(
        self, config_name: str | None, hydra_lines: tuple[str, ...]
    ) -> CachingConfigRepository:
        """The config repository as Hydra sets it up for these hydra overrides (search path)."""
        key = (config_name, self._search_path(), hydra_lines)
        repo = _repos.get(key)
        if repo is None:
            _, repo = self._parse_overrides_and_create_caching_repo(config_name, list(hydra_lines))
            _remember(_repos, key, repo)
        return repo

    def _search_path(self) -> tuple[tuple[str | None, str | None], ...]:
        return tuple((e.provider, e.path) for e in self.config_search_path.get_path())


@functools.lru_cache(maxsize=4096)
def _parse(line: str) -> Override:
    """One override line as Hydra parses it; a grid repeats few distinct lines, parsed once."""
    return OverridesParser.create().parse_overrides(overrides=[line])[0]


def _sets_env(override: Override) -> bool:
    """A `hydra.job.env_set.<NAME>` value: the job's environment, no part of the defaults list
    (a race gives each round's job its round and run this way: composed as values, not once
    per job)."""
    return override.key_or_group.startswith("hydra.job.env_set.") and not override.is_delete()


def _selects_configs(override: Override, repo: CachingConfigRepository) -> bool:
    """Whether Hydra treats `override` as a defaults-list edit (its `Overrides` class's test)."""
    return repo.group_exists(override.key_or_group) and not isinstance(override.value(), dict)


def _remember(cache: OrderedDict, key: tuple, value: Any) -> None:
    cache[key] = value
    while len(cache) > MAX_CACHED:
        cache.popitem(last=False)


def _running_hydra() -> Hydra:
    hydra = GlobalHydra.instance().hydra
    assert hydra is not None, "Hydra is not initialized"
    return hydra


def compose_job(overrides: list[str]) -> DictConfig:
    """In a job of a sweep: the config of the sweep's job with these overrides, composed as the
    launcher composed this job's (the sweep's hydra overrides and this job's, then `overrides`)
    by the running Hydra's config loader: ours, so from this process's cache (a race's later
    round runs several configurations in one job)."""
    loader = GlobalHydra.instance().config_loader()
    master = HydraConfig.instance().cfg  # this job's hydra node, as a config of its own
    assert isinstance(master, DictConfig), "HydraConfig is not set: not in a job"
    return loader.load_sweep_config(master, overrides)


def install(cache: bool = True) -> CachingConfigLoader:
    """Make the running Hydra compose sweep jobs with a `CachingConfigLoader` (its cache on or
    off); return it."""
    hydra = _running_hydra()
    if not isinstance(hydra.config_loader, CachingConfigLoader):
        loader = hydra.config_loader
        assert isinstance(loader, ConfigLoaderImpl)
        hydra.config_loader = CachingConfigLoader(loader.config_search_path)
    hydra.config_loader.cache = cache
    return hydra.config_loader
