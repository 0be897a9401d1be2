"""Check that sweeps can be tracked: `python -m src.doctor [--fix] [overrides]`.

Reports whether the tracking store answers, the experiment exists, runs and artifacts can be
written (with a probe run, removed for good afterwards where the store allows it), and which
RUNNING runs have lost their process. `--fix` ends those stale runs FAILED. It creates no
experiment: before the first sweep it checks that a sqlite store's database and artifact
folder are writable, and elsewhere probes in the store's Default experiment.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from contextlib import redirect_stdout
from pathlib import Path
from urllib.parse import urlsplit

from mlflow.cli import gc
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from src.options import configured_store
from src.sweep.recovery import is_stale, liveness, mark_stale_runs
from src.tracking import store
from src.tracking.store import default_artifact_location, search_all_runs

PROBE_NAME = "doctor probe"
DEFAULT_EXPERIMENT_ID = "0"  # MLflow's own, made with every new store


def check(uri: str, experiment_name: str, fix: bool) -> list[tuple[bool, str]]:
    """(ok, message) for each check, in order; stops early when the store is unusable."""
    results: list[tuple[bool, str]] = []
    database = Path(uri.removeprefix("sqlite:///"))
    if uri.startswith("sqlite:///") and not database.exists():
        results.append((True, f"tracking store {uri}: not created yet (the first sweep will)"))
        results.append(probe_before_first_sweep(uri, experiment_name))
        return results
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
            (True, f"experiment {experiment_name!r}: not created yet (the first sweep will)")
        )
        results.append(probe_before_first_sweep(uri, experiment_name, client))
        return results
    experiment_id = experiment.experiment_id
    results.append(
        (
            True,
            f"experiment {experiment_name!r}: id {experiment_id}, artifacts at "
            f"{experiment.artifact_location}",
        )
    )
    results.append(probe_writes(client, uri, experiment_id))
    running = search_all_runs(client, [experiment_id], "attributes.status = 'RUNNING'")
    stale = [r.info.run_id for r in running if is_stale(r)]
    fixed = {r.info.run_id for r in mark_stale_runs(client, experiment_id)} if fix else set()
    for run in running:
        _, state = liveness(run)
        if run.info.run_id in fixed:
            state = f"STALE: {state}; ended FAILED (--fix)"
        elif run.info.run_id in stale:
            state = f"STALE: {state}"
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


def probe_before_first_sweep(
    uri: str, name: str, client: MlflowClient | None = None
) -> tuple[bool, str]:
    """What can be checked of writes without creating the experiment: a sqlite store's database
    and the artifact folder the experiment will get; elsewhere, a probe run in the store's
    Default experiment, whose artifacts go under the same root a new experiment's do."""
    location = default_artifact_location(uri, name)
    if location is not None:
        paths = [Path(uri.removeprefix("sqlite:///")), Path(urlsplit(location).path)]
        blocked = [str(p) for p in paths if not os.access(nearest_existing(p), os.W_OK)]
        if blocked:
            return False, f"cannot write {', '.join(blocked)}"
        return True, f"database and artifact folder writable ({paths[1]}); no probe run yet"
    assert client is not None  # only a sqlite store can be checked before it exists
    try:
        default = client.get_experiment(DEFAULT_EXPERIMENT_ID)
    except MlflowException:
        default = None
    if default is None or default.lifecycle_stage != "active":
        return True, "runs and artifacts: not probed (no experiment to write in before the first)"
    ok, message = probe_writes(client, uri, DEFAULT_EXPERIMENT_ID)
    return ok, f"{message}, probed in experiment {default.name!r}"


def nearest_existing(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists: the folder a new file would be made in."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe_writes(client: MlflowClient, uri: str, experiment_id: str) -> tuple[bool, str]:
    """Write to a probe run and read back, then delete the run and purge it where the store
    allows it. Where it cannot (through a server), the probe run of an earlier check is
    restored and reused, so the trash holds one probe at most."""
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
        failure = write_and_read_back(client, run.info.run_id)
    finally:
        client.set_terminated(run.info.run_id, "FINISHED")
        client.delete_run(run.info.run_id)
        purged = purge(uri, run.info.run_id, run.info.artifact_uri)
    if failure:
        return False, f"cannot write runs or artifacts at {run.info.artifact_uri}: {failure}"
    left = (
        "probe run removed"
        if purged
        else f"probe run kept in the trash (`mlflow gc --run-ids {run.info.run_id}` on the store)"
    )
    return True, f"runs and artifacts: writable (a param and a file written and read back); {left}"


def write_and_read_back(client: MlflowClient, run_id: str) -> str | None:
    """Log a param and an artifact to the run and read the artifact back; what failed, if any."""
    try:
        client.log_param(run_id, "probe", "1")
        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "probe.txt"
            probe.write_text("ok")
            client.log_artifact(run_id, str(probe))
            back = Path(client.download_artifacts(run_id, "probe.txt", tmp + "/back"))
            return None if back.read_text() == "ok" else "artifact written but read back wrong"
    except (MlflowException, OSError) as e:
        return str(e)


def purge(uri: str, run_id: str, artifact_uri: str) -> bool:
    """Permanently delete a deleted run and its artifacts with `mlflow gc`, which needs the
    store itself (a database or a folder), and its emptied local folder; False where it
    cannot (through a server)."""
    if uri.startswith(("http://", "https://")):
        return False
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri  # gc resolves artifact URIs with it
    try:
        with redirect_stdout(io.StringIO()):  # its "permanently deleted" line
            gc.main(["--backend-store-uri", uri, "--run-ids", run_id], standalone_mode=False)
    except MlflowException:
        return False
    finally:
        if saved is None:
            del os.environ["MLFLOW_TRACKING_URI"]
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    folder = Path(urlsplit(artifact_uri).path).parent  # <root>/<run id>/artifacts
    local = urlsplit(artifact_uri).scheme in ("", "file")
    if local and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return True


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
