"""The exit guard: if the launching process ends before the sweep closes its parent (an error,
Ctrl-C, SIGTERM), what finished is still summarised, and the parent and any child still
RUNNING end KILLED."""

from __future__ import annotations

import atexit
import gc
import signal
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from src.analysis.report import summarize_sweep
from src.sweep.context import Launch
from src.tracking.interrupts import remember_and_interrupt
from src.tracking.store import children_of

_armed: list[Launch] = []  # the sweep whose parent this process must close at exit: one
_installed: list[bool] = []


def arm(launch: Launch) -> None:
    """From now until `disarm`, close `launch`'s parent if this process exits or is
    signalled."""
    _armed[:] = [launch]
    if not _installed:
        atexit.register(close_on_exit)
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler, None):
                signal.signal(signum, remember_and_interrupt)
        _installed.append(True)


def disarm() -> None:
    """The parent is closed: nothing left to do at exit."""
    _armed.clear()


def close_on_exit() -> None:
    """End the guarded parent KILLED (and its RUNNING children), after summarising what
    finished; nothing if the sweep closed its parent itself."""
    if not _armed:
        return
    launch = _armed.pop()
    ctx = launch.context
    launch.heartbeat.stop()
    # An interrupt inside a store call leaves that call's unfinished read open in the frames of
    # its traceback, which Python keeps until exit (sys.last_traceback); on sqlite it holds a
    # lock every write below would wait on, then fail ("database is locked": parent RUNNING)
    sys.last_type = sys.last_value = sys.last_traceback = None
    gc.collect()
    parent_id = ctx.target.parent_run_id
    assert parent_id is not None
    try:
        client = MlflowClient(ctx.target.tracking_uri)
        parent = client.get_run(parent_id)
        if parent.info.status != "RUNNING":
            return
        reason = "interrupted before the sweep finished"
        for child in children_of(client, parent):
            if child.info.status == "RUNNING":  # its worker was stopped with the sweep
                client.set_tag(child.info.run_id, "end_reason", reason)
                client.set_terminated(child.info.run_id, "KILLED")
        try:
            summarize_sweep(ctx.target.tracking_uri, parent_id, Path(ctx.sweep_dir))
        finally:
            client.set_tag(parent_id, "end_reason", reason)
            client.set_terminated(parent_id, "KILLED")
        print(
            f"Sweep parent run {parent_id} ended KILLED; the summary of what finished is in "
            f"{ctx.sweep_dir}",
            file=sys.stderr,
        )
    except Exception as e:  # noqa: BLE001 - at exit, report rather than raise
        print(f"Could not close sweep {parent_id}: {e}", file=sys.stderr)
