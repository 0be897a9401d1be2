"""`hydra/launcher=submitit_local|submitit_slurm|ray` in this app: Hydra's own launchers, waiting
for every job, so a job whose process dies is a failed job and not the end of the sweep.

What a lost job becomes is the app's to say: it hands the launchers a handler
(`handle_lost_jobs`) in the launching process before they launch; without one, the
launcher's error is raised, as Hydra's own launchers do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# the job's config (as its launcher composed it) and the launcher's error -> its JobReturn
LostJobHandler = Callable[[Any, Exception], Any]
_handlers: list[LostJobHandler] = []


def handle_lost_jobs(handler: LostJobHandler | None) -> None:
    """Make `handler` what a job whose process died becomes (None: raise its error again)."""
    _handlers[:] = [] if handler is None else [handler]


def lost_job(job_config: Any, error: Exception) -> Any:
    """What the handler makes of a lost job; its error, raised, when no handler was given."""
    if not _handlers:
        raise error
    return _handlers[0](job_config, error)
