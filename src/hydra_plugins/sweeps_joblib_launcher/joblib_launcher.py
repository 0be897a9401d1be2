"""The launcher class Hydra's plugin scan finds: light to import, its work in `_core`."""

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

# a job's overrides and number -> the future of its return; submitted within the context
Pool = AbstractContextManager[Callable[[Sequence[str], int], Future]]


class SweepsJoblibLauncher(JoblibLauncher):
    """hydra-joblib-launcher's launcher; a worker restores Hydra's state once per launch, not
    once per job."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """Run the jobs on a loky pool of `n_jobs` workers; their returns, in order."""
        from . import _core

        return _core.launch(self, job_overrides, initial_job_idx)

    def pool(self, slots: int) -> Pool:
        """Submit jobs one by one (overrides, job number -> the future of its return) to the
        `n_jobs` workers (`slots`, the jobs the caller keeps running, may queue)."""
        from . import _core

        return _core.pool(self, slots)
