"""The task wrapper every job runs in: the failure policy (a failed job is reported and the sweep
goes on; sweep.max_failures; a resumed sweep's finished jobs are skipped) and one line for a
failed single run."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable

from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from src.ml.objectives import metric_names
from src.sweep.context import current_sweep
from src.sweep.overrides import child_run_name, job_key, job_overrides
from src.sweep.progress import FINISHED_EARLIER, job_outcomes, report_progress
from src.sweep.racing import race_block, race_round
from src.tracking.child_run import RunFailed
from src.tracking.interrupts import stop_if_requested
from src.tracking.store import redact_text

Score = float | tuple[float, ...]  # one value per objective when there are several

GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)


_gc_settled: list[bool] = []  # per process: settle_gc has run


class JobSkipped(RuntimeError):
    """A search's job that the failure policy did not start."""


def run_task(task: Callable[[DictConfig], Score], cfg: DictConfig) -> Score:
    """Run one job. A single run that fails exits with one line (the traceback only under
    HYDRA_FULL_ERROR=1, as Hydra does). In a sweep: a job finished by an earlier attempt
    (sweep.resume) is skipped, a failed job is reported and the sweep goes on, and once
    sweep.max_failures is exceeded the jobs not yet started are skipped. A grid's failed or
    skipped job returns NaN; a search's raises, so that its sweeper records a failed trial
    (Optuna refuses NaN as a value). A race's later round returns its block's outcomes, which
    the race's judge records and reports."""
    ctx = current_sweep()
    if ctx is None:
        try:
            return task(cfg)
        except Exception as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            started = "Run failed" if isinstance(e, RunFailed) else "Run not started"
            raise SystemExit(f"{started}: {describe_error(e)}") from None
    stop_if_requested()
    if race_block() is not None:  # a race's later round: its judge records each outcome
        return task(cfg)
    overrides = job_overrides()
    name = child_run_name(cfg, overrides, ctx.swept)
    key = job_key(overrides)
    if key in ctx.finished:
        report_progress(ctx, name, "SKIPPED", FINISHED_EARLIER)
        return ctx.finished[key]
    if ctx.max_failures is not None and job_outcomes(ctx)[0] > ctx.max_failures:
        reason = f"sweep.max_failures={ctx.max_failures} exceeded"
        report_progress(ctx, name, "SKIPPED", f"({reason})")
        if ctx.search:
            raise JobSkipped(reason)
        return float("nan")
    try:
        value = task(cfg)
    except Exception as e:
        cause = e.__cause__ if isinstance(e, RunFailed) and e.__cause__ is not None else e
        report_progress(ctx, name, "FAILED", detail=f"{type(cause).__name__}: {cause}")
        if ctx.search:
            raise
        return float("nan")
    names = metric_names(cfg.sweep.metric)
    values = value if isinstance(value, tuple) else (value,)
    detail = " ".join(f"{m}={v:.4f}" for m, v in zip(names, values, strict=False))
    if (race := race_round()) is not None:
        detail = f"round {race[0] + 1}/{ctx.rounds} {detail}"
    report_progress(ctx, name, "FINISHED", detail=detail)
    return value


def describe_error(error: BaseException) -> str:
    """One line for a user: our errors and Hydra's name the culprit themselves; anything else
    gets its type too; a failed run's error is its cause's, then which run it failed."""
    if isinstance(error, RunFailed) and error.__cause__ is not None:
        return f"{describe_error(error.__cause__)}; {error}"
    if isinstance(error, (ValueError, HydraException, OmegaConfBaseException)) and str(error):
        return redact_text(str(error))
    return redact_text(f"{type(error).__name__}: {error}")


def settle_gc() -> None:
    """After the first job of this process: collect, freeze what survived (modules, caches,
    the sweep's configs) out of the garbage collector's reach, and collect the young
    generation less often. A job allocates a great many short-lived containers (OmegaConf
    nodes, matplotlib artists, SQLAlchemy rows), and with CPython's defaults the collector's
    older passes walk every long-lived object again and again. Old generations are still
    collected, so garbage cycles do not accumulate."""
    if _gc_settled:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
    _gc_settled.append(True)
