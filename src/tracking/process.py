"""Which process a run belongs to: its identity on this host (from /proc, so a reused pid does
not pass for the original), and the git commit the code runs from."""

from __future__ import annotations

import socket
import subprocess
from functools import cache
from pathlib import Path

PROCESS_TAG = "process"


@cache
def git_info() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout the code runs from, or (None, None) outside git."""
    cwd = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit.stdout.strip(), bool(status.stdout.strip())


def process_identity(pid: int) -> str | None:
    """`host:pid:start` of a live process on this host (start: its start time in clock ticks
    since boot, from /proc, so a reused pid does not pass for the original), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    start = stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counted after the name
    return f"{socket.gethostname()}:{pid}:{start}"
