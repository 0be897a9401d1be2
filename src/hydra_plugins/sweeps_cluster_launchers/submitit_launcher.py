"""The submitit launcher classes Hydra's plugin scan finds (with the `cluster` extra): light to
import, their work in `_core`."""

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from importlib.util import find_spec
from typing import Any

from hydra.core.utils import JobReturn

# a job's overrides and number -> the future of its return; submitted within the context
Pool = AbstractContextManager[Callable[[Sequence[str], int], Future]]

if find_spec("hydra_plugins.hydra_submitit_launcher") is not None:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        LocalLauncher,
        SlurmLauncher,
    )

    class SweepsLocalLauncher(LocalLauncher):
        """hydra-submitit-launcher's local launcher; waits for every job of a launch, and its
        jobs end when the launching process is killed."""

        launching: tuple[int, str] | None = None  # the launching process: pid, /proc start

        def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
            """Run one job in its process, watching the process that launched it."""
            from . import _core

            if self.launching is not None:
                _core.watch_launching_process(*self.launching)
            return super().__call__(*args, **kwargs)

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            """Submit the jobs as local processes; their returns, in order."""
            from . import _core

            return _core.launch_submitit(self, "local", job_overrides, initial_job_idx)

        def pool(self, slots: int) -> Pool:
            """Submit jobs one by one (overrides, job number -> the future of its return), as
            local processes; `slots`: how many the caller keeps running."""
            from . import _core

            return _core.submitit_pool(self, "local")

    class SweepsSlurmLauncher(SlurmLauncher):
        """hydra-submitit-launcher's SLURM launcher; waits for every job of a launch."""

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            """Submit the jobs to SLURM; their returns, in order."""
            from . import _core

            return _core.launch_submitit(self, "slurm", job_overrides, initial_job_idx)

        def pool(self, slots: int) -> Pool:
            """Submit jobs one by one (overrides, job number -> the future of its return), as
            SLURM jobs; `slots`: how many the caller keeps running."""
            from . import _core

            return _core.submitit_pool(self, "slurm")
