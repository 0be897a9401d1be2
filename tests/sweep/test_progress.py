"""The progress lines (src/sweep/progress.py), in process: counts and the time left."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from src.sweep.context import SweepContext
from src.sweep.progress import FINISHED_EARLIER, report_outcomes, report_progress
from src.tracking.store import RunTarget


def test_a_resume_counts_the_time_left_at_the_pace_of_the_jobs_it_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Eight of ten jobs finished earlier and are skipped at once; the ninth took the 10 s so
    far: one job is left, ~10 s, not the ~1 s that counting the skipped ones as work says."""
    target = RunTarget("sqlite:///unused.db", "0")
    ctx = SweepContext(target, str(tmp_path), 10, time.time() - 10, None)
    report_outcomes(ctx, [(f"job {i}", "SKIPPED", FINISHED_EARLIER) for i in range(8)])
    report_progress(ctx, "job 8", "FINISHED", "cv_accuracy_mean=0.8")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9
    assert all("left" not in line for line in lines[:8])  # nothing ran yet: no pace to tell
    left = re.search(r"~(\d+\.\d)s left\)$", lines[8])
    assert lines[8].startswith("[9/10] job 8: FINISHED") and left, lines[8]
    assert 9.5 <= float(left.group(1)) <= 11
