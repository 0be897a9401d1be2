"""The launcher class Hydra's plugin scan finds: light to import, its work in `_core`."""

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher


class SweepsJoblibLauncher(JoblibLauncher):
    """hydra-joblib-launcher's launcher; a worker restores Hydra's state once per launch, not
    once per job."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """Run the jobs on a loky pool of `n_jobs` workers; their returns, in order."""
        from . import _core

        return _core.launch(self, job_overrides, initial_job_idx)
