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


class ExitGuard:
    """Closes one launch's parent if this process ends (or is signalled) before the sweep
    closes it; the interpreter's exit handlers hold it while it is armed."""

    def __init__(self, launch: Launch) -> None:
        self.launch = launch

    def arm(self) -> None:
        """From now until `disarm`, close the parent at this process's exit; SIGTERM and
        SIGINT become an interrupt (that the sweep handles) where nothing else handles them."""
        atexit.register(self.close)
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler, None):
                signal.signal(signum, remember_and_interrupt)

    def disarm(self) -> None:
        """The parent is closed: nothing left to do at exit."""
        atexit.unregister(self.close)

    def close(self) -> None:
        """End the parent KILLED (and its RUNNING children), after summarising what
        finished; nothing if the sweep closed its parent itself."""
        self.disarm()
        close_launch(self.launch)


def close_launch(launch: Launch) -> None:
    """What the guard does at exit: summarise what finished, end RUNNING children and the
    parent KILLED (a parent the sweep closed itself is left alone)."""
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
