"""The Ray launcher class Hydra's plugin scan finds (with the `ray` extra): light to import, its
work in `_core`."""

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from importlib.util import find_spec

from hydra.core.utils import JobReturn

# a job's overrides and number -> the future of its return; submitted within the context
Pool = AbstractContextManager[Callable[[Sequence[str], int], Future]]

if find_spec("hydra_plugins.hydra_ray_launcher") is not None:
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher

    class SweepsRayLauncher(RayLauncher):
        """hydra-ray-launcher's launcher; waits for every job of a launch."""

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            """Run the jobs as Ray tasks; their returns, in order."""
            from . import _core

            return _core.launch_ray(self, job_overrides, initial_job_idx)

        def pool(self, slots: int) -> Pool:
            """Submit jobs one by one (overrides, job number -> the future of its return), as
            Ray tasks; `slots`: how many the caller keeps running."""
            from . import _core

            return _core.ray_pool(self)
