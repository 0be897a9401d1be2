"""Racing (`sweep.race=true`) on real sweeps of the heart data: one child per configuration
whose folds are a full run's, eliminations that a replay of the full run's folds predicts, the
same race on joblib workers, and what the summary records."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from src.analysis import race as rule
from src.sweep.context import SweepContext
from src.sweep.progress import PROGRESS_FILE
from src.sweep.racing import Race, RaceJudge, RoundError, RoundFolds
from src.tracking.store import RunTarget

from ..helpers import (
    HEART_CSV,
    fold_history,
    new_store,
    run,
    start,
    sweep_runs,
    train,
    train_in_process,
    wait_for,
)

GRID = ["model=knn", "model.n_neighbors=3,15", "model.metric=euclidean,chebyshev"]
LEAN = ["mlflow.log_plots=false", "mlflow.log_model=false"]
REPEATS, FOLDS = 4, 5


def sweep(uri: str, out: Path, *extra: str) -> str:
    """The 4-configuration KNN grid on the heart data with 4 CV repeats; what it printed."""
    result = train(
        uri, "-m", *GRID, "data=heart", f"data.path={HEART_CSV}", f"cv.repeats={REPEATS}",
        *LEAN, f"hydra.sweep.dir={out}", *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def record(uri: str) -> tuple[Run, dict[str, Run], dict[str, list[float]]]:
    """The sweep's parent, its children by name, and each child's cv_accuracy folds."""
    parent, children = sweep_runs(uri)
    client = MlflowClient(uri)
    folds = {c.info.run_name: fold_history(client, c.info.run_id) for c in children}
    return parent, {c.info.run_name: c for c in children}, folds


def eliminations(children: dict[str, Run]) -> dict[str, tuple[str, str, float]]:
    """Name -> (round, the leader it lost to, race p-value) of every eliminated child."""
    return {
        name: (
            child.data.tags["race_eliminated_round"],
            child.data.tags["race_leader"],
            child.data.metrics["race_p_value"],
        )
        for name, child in children.items()
        if "race_eliminated_round" in child.data.tags
    }


def replay(full_folds: dict[str, list[float]]) -> dict[str, str]:
    """The race replayed on a full run's folds: name -> the round it is eliminated after."""
    names = sorted(full_folds)
    folds = {i: full_folds[name] for i, name in enumerate(names)}
    out = rule.eliminations(folds, (193, 49), "maximize", REPEATS)  # heart: 193 and 49 rows a fold
    return {names[i]: str(r) for i, r in out.items()}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory, migrated_store: Path):
    """The same grid, not raced: every configuration on all 20 folds."""
    tmp = tmp_path_factory.mktemp("full")
    uri = new_store(migrated_store, tmp)
    sweep(uri, tmp / "sweep")
    return record(uri)


def test_a_race_eliminates_what_its_full_run_shows_worse(
    tracking_uri: str, tmp_path: Path, full_run
) -> None:
    output = sweep(tracking_uri, tmp_path / "sweep", "sweep.race=true")
    parent, children, folds = record(tracking_uri)
    full_parent, full_children, full_folds = full_run
    assert "Race round 1/4 (5 folds each): 0 of 4 eliminated, 4 go on" in output
    assert "Race round 2/4 (10 folds each): 2 of 4 eliminated, 2 go on" in output
    assert "Race round 4/4 (20 folds each): 2 of 2 ran every fold" in output
    # one parent (sweep_runs), one child per configuration across the rounds, none RUNNING
    assert sorted(children) == sorted(full_children)
    assert {c.info.status for c in children.values()} == {"FINISHED"}
    assert parent.info.status == "FINISHED"
    out = eliminations(children)
    assert sorted(out) == [
        "knn n_neighbors=15 metric=chebyshev",
        "knn n_neighbors=3 metric=chebyshev",
    ]
    winner = parent.data.tags["best_run_id"]
    for name, child in children.items():
        ran = len(folds[name])
        # the race's folds are the full run's, in the same order; an eliminated child stopped
        assert folds[name] == full_folds[name][:ran], name
        assert child.data.metrics["race_folds"] == ran
        assert [m.step for m in MlflowClient(tracking_uri).get_metric_history(
            child.info.run_id, "cv_accuracy")] == list(range(ran))  # fmt: skip
        mean = sum(folds[name]) / ran
        assert child.data.metrics["cv_accuracy_mean"] == pytest.approx(mean)
        # the test split is scored once, in the first round
        test = MlflowClient(tracking_uri).get_metric_history(child.info.run_id, "test_accuracy")
        assert len(test) == 1
        if name in out:
            assert ran == int(out[name][0]) * FOLDS < REPEATS * FOLDS
            level = rule.race_levels(REPEATS, FOLDS, (193, 49), rule.DEFAULT_RACE_ALPHA)
            assert out[name][2] < level[int(out[name][0]) - 1]
            assert parent.data.tags["sweep_race_level"] == f"{level[0]:.2g}"
            assert child.data.tags["race_leader_run_id"] == winner
        else:
            assert ran == REPEATS * FOLDS
    # a replay of the full run's folds, round by round, eliminates the same at the same rounds
    assert replay(full_folds) == {name: why[0] for name, why in out.items()}
    # the full run finds each eliminated configuration significantly worse; same winner
    table = pd.read_csv(Path(full_parent.data.tags["sweep_dir"]) / "sweep_summary.csv")
    verdict = dict(zip(table["run_name"], table["equivalent_to_best"], strict=True))
    assert all(verdict[name] == False for name in out)  # noqa: E712 - a CSV's False
    assert children[full_parent.data.tags["best_run_name"]].info.run_id == winner
    # the parent counts what racing saved; eliminated children are never ranked
    assert parent.data.metrics["n_eliminated"] == 2
    assert parent.data.metrics["race_full_fold_fits"] == 4 * REPEATS * FOLDS
    assert parent.data.metrics["race_fold_fits"] == sum(map(len, folds.values())) == 60
    raced = pd.read_csv(tmp_path / "sweep" / "sweep_summary.csv")
    assert raced[raced["race_eliminated_round"].notna()]["rank"].isna().all()
    assert "Racing eliminated 2 of 4 configurations (2 after round 2)" in output
    assert "The sweep did 60 of the 80 fold-fits a full run does (75%)" in output
    assert "## Eliminated by the race" in (tmp_path / "sweep" / "sweep_summary.md").read_text()


@pytest.mark.slow
def test_joblib_workers_run_the_same_race(tracking_uri: str, tmp_path: Path, migrated_store):
    """Two workers end jobs in any order; the judge reads them in job order."""
    basic_dir = tmp_path / "basic"
    basic_dir.mkdir()
    basic_uri = new_store(migrated_store, basic_dir)
    sweep(basic_uri, basic_dir / "sweep", "sweep.race=true")
    workers = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    output = sweep(tracking_uri, tmp_path / "sweep", "sweep.race=true", *workers)
    assert "Race round 2/4 (10 folds each): 2 of 4 eliminated, 2 go on" in output
    _, basic, basic_folds = record(basic_uri)
    parent, workers_children, worker_folds = record(tracking_uri)
    assert eliminations(workers_children) == eliminations(basic)
    assert worker_folds == basic_folds
    assert {c.info.status for c in workers_children.values()} == {"FINISHED"}
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["launcher"].endswith("SweepsJoblibLauncher")


@pytest.mark.slow
def test_ctrl_c_mid_race_then_resume_continues_from_the_last_complete_round(
    tracking_uri: str, tmp_path: Path, full_run
) -> None:
    args = ["-m", *GRID, "data=heart", f"data.path={HEART_CSV}", f"cv.repeats={REPEATS}",
            *LEAN, "sweep.race=true"]  # fmt: skip
    process, out = start(tracking_uri, tmp_path, *args)
    wait_for(out, "FINISHED round 2/4", process)  # the interrupt lands in the second round
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) != 0
    parent, before = sweep_runs(tracking_uri)
    client = MlflowClient(tracking_uri)
    assert parent.info.status == "KILLED"
    assert not [c.info.run_name for c in before if c.info.status == "RUNNING"]
    ran = {c.info.run_name: len(fold_history(client, c.info.run_id)) for c in before}
    assert max(ran.values()) <= 2 * FOLDS < sum(ran.values()), ran  # some folds of round 2 ran
    started = {c.info.run_id for c in before if ran[c.info.run_name]}
    _, full_children, full_folds = full_run
    first_round = job_folders(tmp_path / "sweep", below=len(full_children))
    assert len(first_round) == len(full_children)
    result = run(tracking_uri, tmp_path, *args, "sweep.resume=latest", sweep_dir=tmp_path / "sweep")
    assert result.returncode == 0, result.stdout + result.stderr
    resumed, after = sweep_runs(tracking_uri)  # the same single parent
    assert resumed.info.run_id == parent.info.run_id and resumed.info.status == "FINISHED"
    # the resume, in the same sweep folder, wrote over none of the first round's job folders
    assert job_folders(tmp_path / "sweep", below=len(full_children)) == first_round
    assert sorted(c.info.run_name for c in after) == sorted(full_children)  # one per config
    assert {c.info.status for c in after} == {"FINISHED"}
    assert started <= {c.info.run_id for c in after}  # their folds went on in the same run
    for child in after:
        history = client.get_metric_history(child.info.run_id, "cv_accuracy")
        steps = sorted(m.step for m in history)
        assert steps == list(range(len(steps))), child.info.run_name  # no fold twice, none lost
        name = child.info.run_name
        assert fold_history(client, child.info.run_id) == full_folds[name][: len(steps)]
        assert child.data.metrics["race_folds"] == len(steps)
    by_name = {c.info.run_name: c for c in after}
    assert {n: r[0] for n, r in eliminations(by_name).items()} == replay(full_folds)


def job_folders(sweep_dir: Path, below: int) -> dict[int, str]:
    """Job number -> the Hydra config its folder records (a later round's block job carries
    its block there), for the jobs numbered below `below`."""
    return {
        int(path.parent.parent.name): path.read_text()
        for path in sweep_dir.glob("*/.hydra/hydra.yaml")
        if path.parent.parent.name.isdigit() and int(path.parent.parent.name) < below
    }


def test_an_optuna_search_prunes_a_hopeless_trial(tracking_uri: str, tmp_path: Path) -> None:
    """Random search is Optuna's RandomSampler: its trials run round by round, and one much
    worse than the best trial on the same folds ends PRUNED after its first round; its child
    records what an eliminated child records."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = train_in_process(
        tracking_uri, "-m", "model=logistic_regression", "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=6",  # C: 1, 1, then 1e-5
        "hydra.sweeper.direction=maximize", "hydra.sweeper.params={model.C: 'choice(1.0,0.00001)'}",
        "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1", f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=pruned", "data=heart", f"data.path={HEART_CSV}", *LEAN,
        "cv.repeats=3", "sweep.race=true", f"hydra.sweep.dir={tmp_path}/sweep",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    study = optuna.load_study(study_name="pruned", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED]
    assert [t.params["model.C"] for t in study.trials] == [1.0, 1.0, 0.00001]
    hopeless, best = study.trials[2], study.best_trial
    client = MlflowClient(tracking_uri)
    child = client.get_run(hopeless.user_attrs["mlflow_run_id"])
    folds = fold_history(client, child.info.run_id)
    assert len(folds) == FOLDS  # one round of 5 folds, then pruned
    assert hopeless.intermediate_values == {0: pytest.approx(sum(folds) / FOLDS)}  # told
    assert child.info.status == "FINISHED"
    assert child.data.tags["race_eliminated_round"] == "1"
    assert child.data.tags["race_leader_run_id"] == best.user_attrs["mlflow_run_id"]
    assert child.data.metrics["race_folds"] == FOLDS
    level = rule.race_levels(3, FOLDS, (193, 49), rule.DEFAULT_RACE_ALPHA)[0]
    assert child.data.metrics["race_p_value"] < level
    assert "Trial 2 pruned after round 1/3 (5 folds)" in result.stdout
    # 15 folds cannot tell the two C=1 trials apart: a race already repeats its CV
    assert "a race of more rounds (a larger cv.repeats) gives" in result.stdout
    assert "repeated CV (cv.repeats=10)" not in result.stdout
    for trial in study.trials[:2]:  # the others ran every round, in one child each
        run_id = trial.user_attrs["mlflow_run_id"]
        assert len(fold_history(client, run_id)) == 3 * FOLDS
        assert "race_eliminated_round" not in client.get_run(run_id).data.tags
    parent, children = sweep_runs(tracking_uri)
    assert len(children) == 3 and parent.info.status == "FINISHED"
    assert parent.data.metrics["n_eliminated"] == 1
    assert parent.data.metrics["race_fold_fits"] == 2 * 3 * FOLDS + FOLDS
    table = pd.read_csv(tmp_path / "sweep" / "sweep_summary.csv")
    assert table[table["race_eliminated_round"].notna()]["rank"].isna().all()


def test_the_judge_records_a_later_round_and_fails_one_that_failed(
    tracking_uri: str, tmp_path: Path
) -> None:
    """A later round's block returns folds or an error per configuration; the judge (in the
    launching process) appends the folds to the child, ends a failed one FAILED with its
    error (it leaves the race), and, when the same round runs again for it (a resume), appends
    them and ends it FINISHED again. One progress line each. The fold-scores tag comes with a
    child's last round, whole."""
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("racing")
    parent = client.create_run(experiment).info.run_id
    first = {"cv_accuracy": [0.8, 0.7, 0.9, 0.8, 0.8], "cv_fit_time": [0.1] * FOLDS}
    runs = []
    for name in ("a", "b"):
        run_id = client.create_run(experiment, run_name=name).info.run_id
        for key, values in first.items():  # round 1, as its job logged it
            for step, value in enumerate(values):
                client.log_metric(run_id, key, value, step=step)
        client.log_metric(run_id, "race_folds", FOLDS)
        client.set_terminated(run_id, "FINISHED")
        runs.append(run_id)
    target = RunTarget(tracking_uri, experiment, parent, None, None)
    ctx = SweepContext(target, str(tmp_path), 2, time.time(), None, rounds=REPEATS)
    judge = RaceJudge(ctx, Race(REPEATS, FOLDS, "maximize", 0.05, "cv_accuracy_mean"))
    second = {"cv_accuracy": [0.9, 0.9, 0.7, 0.8, 0.9], "cv_fit_time": [0.2] * FOLDS}
    try:
        raise ValueError("n_neighbors=0: bad value")
    except ValueError as e:
        failed = RoundError.of(runs[1], e)
    went_on = judge.judge_round(1, [(0, RoundFolds(runs[0], "a", second, (193, 49))), (1, failed)])
    assert went_on == {0}
    history = client.get_metric_history(runs[0], "cv_accuracy")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [
        *first["cv_accuracy"], *second["cv_accuracy"]]  # fmt: skip
    a, b = client.get_run(runs[0]), client.get_run(runs[1])
    assert a.info.status == "FINISHED" and a.data.metrics["race_folds"] == 2 * FOLDS
    so_far = first["cv_accuracy"] + second["cv_accuracy"]
    assert a.data.metrics["cv_accuracy_mean"] == pytest.approx(sum(so_far) / len(so_far))
    assert "cv_fold_scores" not in a.data.tags  # its race goes on
    assert b.info.status == "FAILED" and b.data.metrics["race_folds"] == FOLDS
    assert b.data.tags["error_type"] == "ValueError"
    assert "n_neighbors=0" in b.data.tags["error_message"]
    again = judge.judge_round(1, [(1, RoundFolds(runs[1], "b", second, (193, 49)))])
    assert again == {1}
    b = client.get_run(runs[1])
    assert b.info.status == "FINISHED" and b.data.metrics["race_folds"] == 2 * FOLDS
    for round_index in (2, 3):  # a's last rounds: the tag holds its 20 folds
        judge.judge_round(round_index, [(0, RoundFolds(runs[0], "a", second, (193, 49)))])
    tagged = json.loads(client.get_run(runs[0]).data.tags["cv_fold_scores"])
    assert tagged["cv_fit_time"] == [0.1] * 5 + [0.2] * 15
    lines = (tmp_path / PROGRESS_FILE).read_text().splitlines()
    assert lines == ["FINISHED\ta", "FAILED\tb", "FINISHED\tb", "FINISHED\ta", "FINISHED\ta"]


def test_a_configuration_that_fails_its_first_round_leaves_the_race_and_the_race_goes_on(
    tracking_uri: str, tmp_path: Path
) -> None:
    """A race is a grid: a failed job is a FAILED child, reported in one line, and the others
    race on; the sweep ends non-zero, naming the failure (it once took the race for a search,
    whose failed job ends the sweep with a traceback)."""
    result = train(
        tracking_uri, "-m", "model=knn", "model.n_neighbors=5,7,200", "data=heart",
        f"data.path={HEART_CSV}", "cv.repeats=3", *LEAN, "sweep.race=true",
        f"hydra.sweep.dir={tmp_path}/sweep",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "1 of 3 jobs failed" in result.stderr
    assert "Race round 1/3 (5 folds each): 0 of 3 eliminated, 1 failed, 2 go on" in result.stdout
    assert "Race round 3/3 (15 folds each): 2 of 2 ran every fold" in result.stdout
    # the failed configuration's folds not run are not racing's saving
    assert (
        "Racing eliminated none of the 3 configurations: 30 of the 45 fold-fits a full run does "
        "(67%; 1 that did not finish ran fewer, not for racing)."
    ) in result.stdout
    parent, children = sweep_runs(tracking_uri)
    statuses = sorted(c.info.status for c in children)
    assert parent.info.status == "FINISHED" and statuses == ["FAILED", "FINISHED", "FINISHED"]
