"""Check that sweeps can be tracked: `python -m src.doctor [--fix] [overrides]`.

Reports whether the tracking store answers, the experiment exists, runs and artifacts can be
written (with a probe run that is deleted afterwards), and which RUNNING runs have lost their
process. `--fix` ends those stale runs FAILED.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
from pathlib import Path

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from src import store
from src.recovery import is_stale, mark_stale_runs
from src.store import PROCESS_TAG, configured_store, search_all_runs

PROBE_NAME = "doctor probe"


def check(uri: str, experiment_name: str, fix: bool) -> list[tuple[bool, str]]:
    """(ok, message) for each check, in order; stops early when the store is unusable."""
    results: list[tuple[bool, str]] = []
    try:
        store.check_reachable(uri)
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)
    except (store.TrackingError, MlflowException) as e:
        return [(False, f"tracking store {uri}: not reachable ({e})")]
    results.append((True, f"tracking store {uri}: reachable"))
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        results.append(
            (True, f"experiment {experiment_name!r}: not created yet (the first run will)")
        )
        experiment_id = store.ensure_experiment(uri, experiment_name)
    else:
        experiment_id = experiment.experiment_id
        results.append(
            (
                True,
                f"experiment {experiment_name!r}: id {experiment_id}, artifacts at "
                f"{experiment.artifact_location}",
            )
        )
    results.append(probe_writes(client, experiment_id))
    running = search_all_runs(client, [experiment_id], "attributes.status = 'RUNNING'")
    stale = [r.info.run_id for r in running if is_stale(r)]
    fixed = {r.info.run_id for r in mark_stale_runs(client, experiment_id)} if fix else set()
    host = socket.gethostname()
    for run in running:
        identity = run.data.tags.get(PROCESS_TAG)
        if identity is None:
            state = "no process recorded: cannot tell"
        elif run.info.run_id in fixed:
            state = "STALE: its process is gone; ended FAILED (--fix)"
        elif run.info.run_id in stale:
            state = "STALE: its process is gone"
        elif identity.split(":", 1)[0] != host:
            state = f"runs on another host ({identity}): cannot tell from here"
        else:
            state = "its process is alive"
        ok = run.info.run_id not in stale or run.info.run_id in fixed
        results.append((ok, f"RUNNING {run.info.run_name!r} ({run.info.run_id}): {state}"))
    if fixed:
        results.append((True, f"--fix: ended {len(fixed)} stale runs FAILED"))
    elif stale:
        results.append(
            (False, f"{len(stale)} stale RUNNING runs: rerun with --fix to end them FAILED")
        )
    else:
        results.append((True, f"no stale RUNNING runs ({len(running)} running)"))
    return results


def probe_writes(client: MlflowClient, experiment_id: str) -> tuple[bool, str]:
    """Log a param and an artifact to a probe run, read the artifact back, delete the run. The
    probe run of an earlier check is restored and reused: MLflow only soft-deletes a run, so a
    new probe every time would fill the experiment's trash."""
    try:
        earlier = client.search_runs(
            [experiment_id],
            f"tags.mlflow.runName = '{PROBE_NAME}'",
            run_view_type=ViewType.DELETED_ONLY,
            max_results=1,
        )
        if earlier:
            run = earlier[0]
            client.restore_run(run.info.run_id)
        else:
            run = client.create_run(experiment_id, run_name=PROBE_NAME)
    except MlflowException as e:
        return False, f"cannot create runs: {e}"
    try:
        client.log_param(run.info.run_id, "probe", "1")
        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "probe.txt"
            probe.write_text("ok")
            client.log_artifact(run.info.run_id, str(probe))
            back = Path(client.download_artifacts(run.info.run_id, "probe.txt", tmp + "/back"))
            if back.read_text() != "ok":
                return False, "artifact written but read back wrong"
        return True, f"runs and artifacts: writable ({run.info.artifact_uri})"
    except (MlflowException, OSError) as e:
        return False, f"cannot write runs or artifacts at {run.info.artifact_uri}: {e}"
    finally:
        client.set_terminated(run.info.run_id, "FINISHED")
        client.delete_run(run.info.run_id)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; exit 1 when any check fails."""
    parser = argparse.ArgumentParser(prog="python -m src.doctor", description=__doc__)
    parser.add_argument("--fix", action="store_true", help="end stale RUNNING runs FAILED")
    parser.add_argument("--experiment", metavar="NAME", help="default: the configured one")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data=heart")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the probe's read
    uri, experiment_name = configured_store(args.overrides, None)
    results = check(uri, args.experiment or experiment_name, args.fix)
    for ok, message in results:
        print(f"[{'ok' if ok else 'FAIL'}] {message}")
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
