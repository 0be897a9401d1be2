"""Our joblib launcher: hydra-joblib-launcher's options, jobs and outputs, with Hydra's state
restored once per worker instead of once per job; and invisible to other Hydra apps."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from omegaconf import OmegaConf

from src.sweep.callback import OUR_LAUNCHERS, use_our_launchers

from ..helpers import REPO

STOCK_JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
OUR_JOBLIB = OUR_LAUNCHERS[STOCK_JOBLIB]

# A Hydra app of its own (not this project's): each job records which process ran it, which
# launcher, and how many jobs Hydra's plugin registry (rebuilt by every restore of Hydra's
# state) has seen.
APP = """
import json, os
from pathlib import Path
import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins

@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg) -> int:
    job = HydraConfig.get().job
    registry = Plugins.instance()
    registry.jobs_seen = getattr(registry, "jobs_seen", 0) + 1
    record = {"x": cfg.x, "pid": os.getpid(), "seen": registry.jobs_seen,
              "id": job.id, "num": job.num, "launcher": HydraConfig.get().launcher._target_}
    Path(HydraConfig.get().runtime.output_dir, "record.json").write_text(json.dumps(record))
    return cfg.x

if __name__ == "__main__":
    main()
"""


def compose_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_joblib_in_this_app_is_ours_with_the_stock_options_and_defaults() -> None:
    cfg = compose_hydra("hydra/launcher=joblib", "hydra.launcher.n_jobs=3")
    use_our_launchers(cfg)  # what the callback does before Hydra makes the launcher
    launcher = OmegaConf.to_container(cfg.hydra.launcher)
    assert launcher.pop("_target_") == OUR_JOBLIB
    stock = {f.name: f.default for f in dataclasses.fields(JobLibLauncherConf)}
    assert stock.pop("_target_") == STOCK_JOBLIB
    assert launcher == stock | {"n_jobs": 3}
    by_name = OmegaConf.to_container(compose_hydra("hydra/launcher=sweeps_joblib").hydra.launcher)
    assert by_name == stock | {"_target_": OUR_JOBLIB}


@pytest.mark.parametrize("launcher", ["submitit_local", "submitit_slurm", "ray"])
def test_the_cluster_launchers_in_this_app_are_ours_with_the_stock_options(launcher) -> None:
    """Hydra's submitit and Ray launchers, subclassed to wait for every job: same options."""
    cfg = compose_hydra(f"hydra/launcher={launcher}")
    stock = OmegaConf.to_container(cfg.hydra.launcher)
    use_our_launchers(cfg)
    ours = OmegaConf.to_container(cfg.hydra.launcher)
    assert ours == stock | {"_target_": OUR_LAUNCHERS[stock["_target_"]]}
    module, _, name = ours["_target_"].rpartition(".")
    stock_module, _, stock_name = stock["_target_"].rpartition(".")
    ours_class = getattr(importlib.import_module(module), name)
    assert issubclass(ours_class, getattr(importlib.import_module(stock_module), stock_name))


def test_a_typed_launcher_target_is_kept() -> None:
    cfg = compose_hydra("hydra/launcher=joblib", f"hydra.launcher._target_={STOCK_JOBLIB}")
    use_our_launchers(cfg)
    assert cfg.hydra.launcher._target_ == STOCK_JOBLIB
    basic = compose_hydra()
    use_our_launchers(basic)
    assert basic.hydra.launcher._target_.endswith("BasicLauncher")


def run_app(tmp_path: Path, launcher: str) -> list[dict]:
    """Run APP as a 6-job multirun on 2 joblib workers; each job's record, in job order."""
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP))
    sweep_dir = tmp_path / "multirun"
    result = subprocess.run(
        [sys.executable, str(app), "-m", "+x=1,2,3,4,5,6", f"hydra/launcher={launcher}",
         "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    return [yaml.safe_load((sweep_dir / str(n) / "record.json").read_text()) for n in range(6)]


@pytest.mark.parametrize(
    ("launcher", "target"), [("joblib", STOCK_JOBLIB), ("sweeps_joblib", OUR_JOBLIB)]
)
def test_another_app_keeps_the_stock_launcher_and_can_ask_for_ours(
    tmp_path: Path, launcher: str, target: str
) -> None:
    records = run_app(tmp_path, launcher)
    assert {r["launcher"] for r in records} == {target}
    assert [r["x"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["num"] for r in records] == list(range(6))
    assert [r["id"] for r in records] == [f"app_{n}" for n in range(6)]
    by_worker: dict[int, list[int]] = {}
    for r in records:
        by_worker.setdefault(r["pid"], []).append(r["seen"])
    assert len(by_worker) <= 2  # worker processes, not the launching one
    if target == OUR_JOBLIB:  # Hydra's state restored once per worker: one registry sees its jobs
        for seen in by_worker.values():
            assert sorted(seen) == list(range(1, len(seen) + 1))
    else:  # the stock launcher restores it (re-scanning every plugin) for every job
        assert [r["seen"] for r in records] == [1] * 6


def test_the_plugins_are_light_for_hydras_plugin_scan() -> None:
    """Hydra imports every plugin module in every app; joblib and cloudpickle load only when our
    launcher launches, Optuna only when our sweeper sweeps."""
    code = (
        "import sys; from hydra.core.plugins import Plugins; "
        "from hydra.plugins.launcher import Launcher; from hydra.plugins.sweeper import Sweeper; "
        "found = [c.__name__ for kind in (Launcher, Sweeper) "
        "for c in Plugins.instance().discover(kind)]; "
        "print(found); print([m for m in ('joblib', 'cloudpickle', 'optuna') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    found, loaded = result.stdout.strip().splitlines()
    assert "SweepsJoblibLauncher" in found and "SweepsOptunaSweeper" in found
    assert loaded == "[]"
