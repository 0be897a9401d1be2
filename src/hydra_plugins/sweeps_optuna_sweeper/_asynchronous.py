"""The search that never waits for a batch: a new trial is asked as soon as a job ends.

The launcher runs each job as it is submitted (our launchers' `pool`); `slots` jobs run at
once, each finished trial is told at once, so the sampler knows every ended trial when it
proposes the next, and the running ones stay pending in the study (Optuna's ask-and-tell).
Interrupted (Ctrl-C), the pool cancels the jobs still running first; then a trial whose job
finished is told as such, and every other running trial ends FAIL without a job status (asked
again with the same values when the sweep resumes). A job interrupted after its run finished,
before its return reached this process, leaves a FINISHED child beside its FAIL trial: the
resume's retry of that trial skips the job (its values finished) and takes the child's result.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import AbstractContextManager, contextmanager

import optuna
from hydra.core.utils import JobReturn
from optuna.trial import Trial, TrialState

from ._core import tell

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often the wait for the first job to end wakes (a signal is handled at once)
SETTLE_S = 10.0  # interrupted: how long the cancelled jobs' returns are waited for

Submit = Callable[[Sequence[str], int], Future]


def search(
    pool: AbstractContextManager[Submit],
    study: optuna.Study,
    ask: Callable[[], tuple[Trial, list[str]]],
    to_ask: int,
    slots: int,
    max_failure_rate: float,
) -> None:
    """Ask `to_ask` trials (`ask`: a trial and its job's overrides), keeping `slots` jobs
    running; stop asking once more than `max_failure_rate` of the ended trials failed, and
    raise the first failure's error when the running ones have ended."""
    running: dict[Future, Trial] = {}
    asked: tuple[Trial, list[str]] | None = None
    failures: list[JobReturn] = []
    ended = job_idx = 0
    stopped = False  # asking stopped: more than max_failure_rate of the ended trials failed
    try:
        with pool as submit:
            while running or to_ask > 0:
                while to_ask > 0 and len(running) < slots:
                    with signals_held():
                        trial, overrides = asked = ask()
                    running[submit(overrides, job_idx)] = trial
                    asked = None
                    job_idx, to_ask = job_idx + 1, to_ask - 1
                done, _ = wait(list(running), timeout=POLL_S, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()  # an interrupted job raises: the sweep stops
                    with signals_held():  # told, then out of `running`
                        if tell(study, running[future], result):
                            failures.append(result)
                        del running[future]
                    ended += 1
                if failures and len(failures) / ended > max_failure_rate and to_ask:
                    log.error(f"{len(failures)} of {ended} ended trials failed: asking no more")
                    to_ask, stopped = 0, True
    except BaseException:
        if asked is not None:  # interrupted while its job was being submitted
            study.tell(asked[0], state=TrialState.FAIL, skip_if_finished=True)
        settle(study, running)
        raise
    if stopped or (failures and len(failures) / ended > max_failure_rate):
        _ = failures[0].return_value  # raises the first failure's error


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM wait for the block to end, then are raised again: a trial
    asked or told is in the study and in this loop's books together (only the study's storage
    is written here). Their handlers are swapped, not the signal mask: any thread may take a
    signal sent to the process."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are handled in the main thread only
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, _: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for held_signal, handler in previous.items():
            signal.signal(held_signal, handler)
        for signum in caught:
            signal.raise_signal(signum)


def settle(study: optuna.Study, running: dict[Future, Trial]) -> None:
    """After an interrupt (the jobs cancelled): tell each trial whose job returned, finished or
    failed; every other running trial (its job interrupted, its run KILLED) ends FAIL."""
    if running:
        wait(list(running), timeout=SETTLE_S)
    for future, trial in running.items():
        returned = future.done() and not future.cancelled() and future.exception() is None
        try:
            if not returned or killed(future.result()):
                raise KeyboardInterrupt
            tell(study, trial, future.result())
        except BaseException:  # noqa: BLE001 - interrupted: asked again when it resumes
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def killed(result: JobReturn) -> bool:
    """Whether a job's run was stopped (KILLED), as its error says, rather than failed."""
    try:
        _ = result.return_value
    except Exception as e:  # noqa: BLE001 - the job's error, whatever it is
        return getattr(e, "status", None) == "KILLED"
    return False
