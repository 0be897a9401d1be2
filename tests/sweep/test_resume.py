"""sweep.resume: the same parent, only what did not finish runs again, one child per
configuration."""

from __future__ import annotations

import signal

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from src.sweep.parent import command_tag
from src.sweep.recovery import finished_trials, resume_parent
from src.tracking.store import COMMAND_TAG, NoSweepError

from ..helpers import (
    HEART_CSV,
    LEAN,
    hand_sweep,
    make_child,
    run,
    start,
    sweep_runs,
    train_in_process,
    wait_for,
)


@pytest.mark.parametrize(
    "launcher",
    [  # both with the slow tests: two sweeps each (make test and CI run them)
        pytest.param([], marks=pytest.mark.slow),
        pytest.param(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], marks=pytest.mark.slow),
    ],
    ids=["basic", "joblib"],
)
def test_resume_reruns_only_what_did_not_finish(tracking_uri, tmp_path, launcher) -> None:
    sweep = [
        "-m",
        "model=knn",
        "model.n_neighbors=3,5,7,9,11,13",
        "data=heart",
        f"data.path={HEART_CSV}",
        *LEAN,
        *launcher,
    ]
    process, out = start(tracking_uri, tmp_path, *sweep)
    wait_for(out, "[2/6]", process)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    parent, before = sweep_runs(tracking_uri)
    finished_before = {c.info.run_id for c in before if c.info.status == "FINISHED"}
    assert 2 <= len(finished_before) < 6
    kept_numbers = {c.data.tags["job_number"] for c in before if c.info.status == "FINISHED"}
    resumed_dir = tmp_path / "resumed"
    result = run(tracking_uri, tmp_path, *sweep, "sweep.resume=latest", sweep_dir=resumed_dir)
    assert result.returncode == 0, result.stderr
    assert f"Resuming sweep {parent.info.run_id}: {len(finished_before)} finished" in result.stdout
    assert result.stdout.count("SKIPPED (finished in an earlier attempt)") == len(finished_before)
    # the finished jobs were not launched (no job folder); the others kept their grid numbers
    launched = {p.name for p in resumed_dir.iterdir() if p.name.isdigit()}
    assert launched == {str(n) for n in range(6)} - kept_numbers
    resumed, children = sweep_runs(tracking_uri)  # still exactly one parent
    assert {c.data.tags["job_number"] for c in children} == {str(n) for n in range(6)}
    assert resumed.info.run_id == parent.info.run_id and resumed.info.status == "FINISHED"
    assert sorted(c.data.params["model.n_neighbors"] for c in children) == sorted(
        ["3", "5", "7", "9", "11", "13"]
    )
    assert {c.info.status for c in children} == {"FINISHED"}
    assert finished_before <= {c.info.run_id for c in children}  # kept, not rerun
    assert resumed.data.metrics["n_children"] == 6


@pytest.mark.slow
def test_resume_latest_joins_only_a_sweep_of_the_same_command(tracking_uri, tmp_path) -> None:
    common = ["-m", "model=knn", "data=heart", f"data.path={HEART_CSV}", *LEAN]
    first = run(tracking_uri, tmp_path, *common, "model.n_neighbors=5,500")
    assert first.returncode == 1  # n_neighbors=500 fails
    parent, children = sweep_runs(tracking_uri)
    other = run(tracking_uri, tmp_path, *common, "model.n_neighbors=3,5", "sweep.resume=latest")
    assert other.returncode == 1
    assert "no sweep of experiment" in other.stderr
    assert "model.n_neighbors: 5,500 there, 3,5 here" in other.stderr
    by_id = run(
        tracking_uri, tmp_path, *common, "model.n_neighbors=3,5", "mlflow.log_plots=true",
        f"sweep.resume={parent.info.run_id}",
    )  # fmt: skip
    assert by_id.returncode == 1
    assert "ran another command: model.n_neighbors: 5,500 there, 3,5 here; only here: " \
        "mlflow.log_plots=true" in by_id.stderr  # fmt: skip
    after, still = sweep_runs(tracking_uri)  # untouched: nothing deleted, nothing added
    assert after.info.run_id == parent.info.run_id
    assert {c.info.run_id for c in still} == {c.info.run_id for c in children}


@pytest.mark.slow
def test_resume_into_the_same_sweep_dir_counts_only_this_attempt(tracking_uri, tmp_path) -> None:
    sweep = ["-m", "model=knn", "model.n_neighbors=3,500,5,7", "data=heart",
             f"data.path={HEART_CSV}", *LEAN, f"hydra.sweep.dir={tmp_path}/same"]  # fmt: skip
    first = train_in_process(tracking_uri, *sweep)
    assert first.returncode == 1 and "1 of 4 jobs failed" in first.stderr
    again = train_in_process(tracking_uri, *sweep, "sweep.resume=latest", "sweep.max_failures=0")
    assert again.returncode == 1, again.stderr
    assert again.stdout.count("SKIPPED (finished in an earlier attempt)") == 3
    assert "[5/4]" not in again.stdout and "[4/4]" in again.stdout
    assert "exceeded" not in again.stdout  # the first attempt's failure is not this one's
    parent, children = sweep_runs(tracking_uri)
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED", "FINISHED", "FINISHED"]
    assert [c.data.tags.get("best_in_sweep") for c in children].count("true") == 1
    assert parent.data.tags["sweep_dir"] == str(tmp_path / "same")


def test_resume_matches_a_command_longer_than_a_tag(tracking_uri) -> None:
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("long")
    swept = {"model.n_neighbors": [str(k) for k in range(1, 3000)]}
    command = command_tag({"sweeper": "BasicSweeper", "swept": swept, "fixed": []})
    longer = command_tag({"sweeper": "BasicSweeper", "swept": swept | {"seed": ["1"]}, "fixed": []})
    assert len(command) <= MAX_TAG_VAL_LENGTH and command != longer  # no shared-prefix match
    parent = client.create_run(experiment_id, tags={"sweep": "true", COMMAND_TAG: command})
    assert resume_parent(client, experiment_id, "latest", command).info.run_id == (
        parent.info.run_id
    )
    with pytest.raises(NoSweepError, match="too long to list what differs"):
        resume_parent(client, experiment_id, parent.info.run_id, longer)


def test_a_resumed_search_skips_only_the_finished_jobs_of_its_retried_trials(tracking_uri):
    """A trial interrupted after its job finished is asked again when the search resumes: its
    job is skipped with that child's result; other finished children are the study's business."""
    client = MlflowClient(tracking_uri)
    parent_id = hand_sweep(client, "search", {})
    experiment_id = client.get_run(parent_id).info.experiment_id
    for trial, status in (("0", "FINISHED"), ("1", "FINISHED"), ("2", "KILLED")):
        tags = {"optuna.trial_number": trial, "job_key": f"k={trial}"}
        child = make_child(client, experiment_id, parent_id, trial, [0.8, 0.9], 3, tags=tags)
        client.set_terminated(child, status)
    parent = client.get_run(parent_id)
    skipped = finished_trials(client, parent, {"1", "2"})  # 2's job did not finish
    assert list(skipped) == ["k=1"]
    assert skipped["k=1"] == pytest.approx(0.85)
    assert (
        skipped["k=1"].run_id
        == client.search_runs(  # type: ignore[attr-defined]
            [experiment_id], "tags.`optuna.trial_number` = '1'"
        )[0].info.run_id
    )
