"""Hydra's own test suites for launchers, run on ours (joblib, submitit) as Hydra's plugins
run them on theirs."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
from hydra import version
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from hydra.version import VersionBase

# the suites' apps run without a version_base, on purpose: Hydra's 1.1 behaviour, and its warning
pytestmark = pytest.mark.filterwarnings("ignore::hydra.errors.Hydra14MigrationWarning")


@pytest.fixture(autouse=True)
def unspecified_version_base() -> Iterator[None]:
    """The suites' apps give no version_base (Hydra then acts as 1.1); earlier tests in this
    process composed with 1.3, which Hydra keeps in a process-wide singleton."""
    saved = copy.copy(VersionBase.instance())
    version.setbase("1.1")
    yield
    VersionBase.set_instance(saved)


@pytest.mark.parametrize(("launcher_name", "overrides"), [("sweeps_joblib", [])])
class TestSweepsJoblibLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    ("task_launcher_cfg", "extra_flags"),
    [({}, ["-m", "hydra/job_logging=hydra_debug", "hydra/job_logging=disabled",
           "hydra/launcher=sweeps_joblib"])],
)  # fmt: skip
class TestSweepsJoblibLauncherIntegration(IntegrationTestSuite):
    pass


OUR_LOCAL = "hydra_plugins.sweeps_cluster_launchers.submitit_launcher.SweepsLocalLauncher"


# Hydra's integration suite is left to hydra-submitit-launcher: it checks what a job does in its
# process (`__call__`, Hydra's, unchanged here); ours changes only how the launch waits
@pytest.mark.slow  # every job a process of its own; make test and CI run it
@pytest.mark.parametrize(
    ("launcher_name", "overrides"),
    [("submitit_local", ["hydra.launcher.timeout_min=2", f"hydra.launcher._target_={OUR_LOCAL}"])],
)
class TestSweepsSubmititLauncher(LauncherTestSuite):
    pass
