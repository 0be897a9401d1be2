"""A sweep's progress: one line per finished job (`[k/N] name: STATUS ...`), counted across
every process that runs the sweep's jobs through a file in the sweep's folder."""

from __future__ import annotations

import fcntl
import time
from pathlib import Path

from src.sweep.context import SweepContext

PROGRESS_FILE = ".sweep_progress.tsv"
# the detail of a job a resume skips, whichever process skips it
FINISHED_EARLIER = "(finished in an earlier attempt)"


def reset_progress(sweep_dir: Path) -> None:
    """Start this attempt's progress file (an earlier attempt in the same folder left its own:
    its counts and failures are not this attempt's)."""
    (sweep_dir / PROGRESS_FILE).write_text("")


def report_progress(ctx: SweepContext, run_name: str, status: str, detail: str) -> None:
    """Record the job's outcome for the whole sweep and print `[k/N] name status detail,
    elapsed, ETA`."""
    report_outcomes(ctx, [(run_name, status, detail)])


def report_outcomes(ctx: SweepContext, outcomes: list[tuple[str, str, str]]) -> None:
    """Record how these jobs ended, (run name, status, detail) each, in one write to the
    progress file (a resume's thousands of skipped jobs, a race's round: not one read of the
    whole file each), and print each one's line."""
    path = Path(ctx.sweep_dir) / PROGRESS_FILE
    with path.open("a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # jobs in several processes append to the same file
        f.write("".join(f"{status}\t{name}\n" for name, status, _ in outcomes))
        f.flush()
        f.seek(0)
        text = f.read()
        fcntl.flock(f, fcntl.LOCK_UN)
    counted = text.count("\n")
    # the time left is at the pace of the jobs this attempt ran, not of those a resume skipped
    skipped = ("\n" + text).count("\nSKIPPED\t") - sum(s == "SKIPPED" for _, s, _ in outcomes)
    elapsed = time.time() - ctx.started_at
    # a race's rounds run as many jobs as its eliminations leave: no total to count down to
    total = f"/{ctx.n_jobs}" if ctx.n_jobs and ctx.rounds == 1 else ""
    lines = []
    for done, (name, status, detail) in enumerate(outcomes, counted - len(outcomes) + 1):
        skipped += status == "SKIPPED"
        eta = ""
        if total and ctx.n_jobs and skipped < done < ctx.n_jobs:
            eta = f", ~{_duration(elapsed / (done - skipped) * (ctx.n_jobs - done))} left"
        lines.append(
            f"[{done}{total}] {name}: {status} {detail} ({_duration(elapsed)} elapsed{eta})"
        )
    if lines:
        print("\n".join(lines), flush=True)


def job_outcomes(ctx: SweepContext) -> tuple[int, int]:
    """How many jobs of this attempt failed, and how many ended in any way, in any process
    (the progress file: what is known when the store cannot be read)."""
    path = Path(ctx.sweep_dir) / PROGRESS_FILE
    if not path.exists():
        return 0, 0
    with path.open() as f:
        fcntl.flock(f, fcntl.LOCK_SH)  # jobs in other processes append to it
        statuses = [line.split("\t", 1)[0] for line in f.read().splitlines()]
        fcntl.flock(f, fcntl.LOCK_UN)
    return statuses.count("FAILED"), len(statuses)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}min"
