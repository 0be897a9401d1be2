"""hydra/launcher=joblib is our SweepsJoblibLauncher: the stock plugin's options, jobs and
outputs, with Hydra's state restored once per worker instead of once per job."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from joblib import Parallel, delayed
from omegaconf import OmegaConf

from hydra_plugins import sweeps_joblib_launcher as launcher
from hydra_plugins.sweeps_joblib_launcher import SweepsJoblibLauncher, SweepsJoblibLauncherConf

from .conftest import REPO

STOCK = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
OURS = f"{SweepsJoblibLauncher.__module__}.{SweepsJoblibLauncher.__qualname__}"

# A Hydra app of its own (not this project's): each job records which process ran it and how
# many jobs Hydra's plugin registry (rebuilt by every restore of Hydra's state) has seen.
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
              "id": job.id, "num": job.num, "omp": os.environ.get("OMP_NUM_THREADS")}
    Path(HydraConfig.get().runtime.output_dir, "record.json").write_text(json.dumps(record))
    return cfg.x

if __name__ == "__main__":
    main()
"""


def test_joblib_option_is_ours_with_the_stock_options_and_defaults() -> None:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=joblib"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher)
    assert launcher.pop("_target_") == OURS
    stock = {f.name: f.default for f in dataclasses.fields(JobLibLauncherConf)}
    assert stock.pop("_target_") == STOCK
    assert launcher == stock


def run_app(tmp_path: Path, *overrides: str) -> list[dict]:
    """Run APP as a 6-job multirun on 2 joblib workers; each job's record, in job order."""
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP))
    sweep_dir = tmp_path / "multirun"
    result = subprocess.run(
        [
            sys.executable,
            str(app),
            "-m",
            "+x=1,2,3,4,5,6",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep_dir}",
            *overrides,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "deprecated" not in result.stderr  # no automatic schema matching, no warnings
    return [yaml.safe_load((sweep_dir / str(n) / "record.json").read_text()) for n in range(6)]


@pytest.mark.parametrize("target", [OURS, STOCK])
def test_jobs_are_the_stock_launchers_jobs(tmp_path: Path, target: str) -> None:
    records = run_app(tmp_path, f"hydra.launcher._target_={target}")
    assert [r["x"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["num"] for r in records] == list(range(6))
    assert [r["id"] for r in records] == [f"app_{n}" for n in range(6)]
    # loky's thread limits for 2 workers, though ours fork their workers from a server process
    assert {r["omp"] for r in records} == {str(max(os.cpu_count() // 2, 1))}
    by_worker: dict[int, list[int]] = {}
    for r in records:
        by_worker.setdefault(r["pid"], []).append(r["seen"])
    assert len(by_worker) <= 2  # worker processes, not the launching one
    if target == OURS:  # Hydra's state restored once per worker: one registry sees its jobs
        for seen in by_worker.values():
            assert sorted(seen) == list(range(1, len(seen) + 1))
    else:  # the stock launcher restores it (re-scanning every plugin) for every job
        assert [r["seen"] for r in records] == [1] * 6


def test_prestarted_workers_fork_from_a_server_and_are_the_pool_the_launch_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "preloaded_marker.py").write_text("")  # a module only the server imports
    monkeypatch.setenv("PYTHONPATH", str(tmp_path), prepend=os.pathsep)
    launcher.start_forkserver(["preloaded_marker"])
    options = OmegaConf.structured(SweepsJoblibLauncherConf(n_jobs=2))
    launcher.prestart(options)
    started = launcher.finish_prestart()
    assert 1 <= len(set(started)) <= 2 and os.getpid() not in started
    kwargs = launcher.joblib_kwargs(OmegaConf.to_container(options))

    def job() -> tuple[int, int, bool]:
        time.sleep(0.1)  # long enough for both workers to take jobs
        return os.getpid(), os.getppid(), "preloaded_marker" in sys.modules

    jobs = Parallel(**kwargs)(delayed(job)() for _ in range(8))
    workers = {pid for pid, _, _ in jobs}
    assert len(workers) == 2 and os.getpid() not in workers
    # loky reused the pool: the workers that came up at the prestart ran the launch's jobs
    # (one of them may have taken both of the prestart's tiny tasks)
    assert set(started) <= workers
    parents = {ppid for _, ppid, _ in jobs}
    assert len(parents) == 1 and os.getpid() not in parents  # forked by the server, not by us
    assert all(imported for _, _, imported in jobs)  # which had imported the module for them
    assert "preloaded_marker" not in sys.modules


def test_the_entry_point_and_the_callback_import_neither_mlflow_nor_sklearn() -> None:
    """Hydra imports both before a sweep starts; the joblib workers' server starts only then, so
    that it imports mlflow and scikit-learn while this process does."""
    heavy = ("mlflow", "sklearn", "pandas", "src.job", "src.tracking")
    code = f"import sys, src.train, src.sweep; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
