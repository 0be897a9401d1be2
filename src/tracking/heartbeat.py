"""A RUNNING run's heartbeat: a thread that writes the time to the run every interval.

A run records `heartbeat_s` (its interval) when it is created and `heartbeat` (Unix seconds)
at creation and then every interval while its process lives, so that a run on another host,
whose process cannot be checked from here, is known stale once its heartbeat is older than
`STALE_INTERVALS` intervals. Writes happen only on the interval, never per job step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from src.tracking.store import with_retries

HEARTBEAT_TAG = "heartbeat"
INTERVAL_TAG = "heartbeat_s"
STALE_INTERVALS = 3


def first_beat(interval_s: float) -> dict[str, str]:
    """The tags a run is created with: its interval and a first heartbeat."""
    return {INTERVAL_TAG: f"{interval_s:g}", HEARTBEAT_TAG: str(int(time.time()))}


def heartbeat_age(tags: dict[str, str], now: float | None = None) -> tuple[float, float] | None:
    """(seconds since the run's last heartbeat, its interval), or None for a run without one
    (made by an older version, or by another tool)."""
    try:
        beat, interval = float(tags[HEARTBEAT_TAG]), float(tags[INTERVAL_TAG])
    except (KeyError, ValueError):
        return None
    return (time.time() if now is None else now) - beat, interval


class Heartbeat:
    """Writes the time to a run's `heartbeat` tag every `interval_s` seconds from a daemon
    thread, until stopped (or its process ends)."""

    def __init__(self, tracking_uri: str, run_id: str, interval_s: float) -> None:
        self.tracking_uri, self.run_id, self.interval_s = tracking_uri, run_id, interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat {run_id[:8]}", daemon=True
        )

    def start(self) -> Heartbeat:
        """Start beating; returns itself."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating; a beat being written finishes first."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _beat(self) -> None:
        client = MlflowClient(self.tracking_uri)
        while not self._stopped.wait(self.interval_s):
            # a missed beat is let go: the run is stale only after STALE_INTERVALS of them
            with suppress(MlflowException):
                with_retries(
                    lambda: client.set_tag(self.run_id, HEARTBEAT_TAG, str(int(time.time())))
                )


@contextmanager
def beating(tracking_uri: str, run_id: str, interval_s: float) -> Iterator[None]:
    """A heartbeat on `run_id` for the duration of the block."""
    heartbeat = Heartbeat(tracking_uri, run_id, interval_s).start()
    try:
        yield
    finally:
        heartbeat.stop()
