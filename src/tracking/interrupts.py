"""Whether a signal asked this process to stop, remembered even when the KeyboardInterrupt it
raised never reached the code that ends the run: Python only prints one raised in a `__del__` or
a weakref callback, and one raised in a library's cleanup can come out as that library's error.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_requests: list[int] = []  # the signals that asked this process to stop, in order


def request_stop(signum: int) -> None:
    """Remember that signal `signum` asked this process to stop."""
    _requests.append(signum)


def stop_requests() -> int:
    """How many signals have asked this process to stop so far."""
    return len(_requests)


def first_stop_signal() -> int | None:
    """The signal that first asked this process to stop, or None."""
    return _requests[0] if _requests else None


def stop_if_requested() -> None:
    """Raise KeyboardInterrupt if a stop signal arrived (its own KeyboardInterrupt may have been
    lost, caught by code that was running then): what a job checks before more work."""
    if (signum := first_stop_signal()) is not None:
        raise KeyboardInterrupt(f"{signal.Signals(signum).name}: the sweep is stopping")


def remember_and_interrupt(signum: int, frame: Any) -> None:
    """A signal handler: remember `signum`, and raise KeyboardInterrupt as Ctrl-C does."""
    request_stop(signum)
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def remembering_sigint() -> Iterator[None]:
    """While the block runs, a SIGINT (Ctrl-C; how submitit and Ray cancel a job) raises
    KeyboardInterrupt as Python's own handler does, and is remembered. A handler someone else
    installed (the exit guard's, in the launching process) is left alone."""
    mine = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    if mine:
        signal.signal(signal.SIGINT, remember_and_interrupt)
    try:
        yield
    finally:
        if mine:
            signal.signal(signal.SIGINT, signal.default_int_handler)
