"""Our Optuna sweeper: the search space from Hydra's grammar, persistent studies that resume
and continue, trials and child runs that name each other, and Optuna's dashboard on a study."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.sweeps_optuna_sweeper._asynchronous import search
from hydra_plugins.sweeps_optuna_sweeper._core import (
    JOB_STATUS,
    RETRY_OF,
    RUN_ID,
    absolute_storage,
    distribution,
    missing_trials,
    prepare,
    tell,
)
from src.tracking.child_run import RunScore

from ..helpers import (
    HEART_CSV,
    REPO,
    SLOW_TREES,
    all_runs,
    check_asked_as_workers_free,
    cli,
    free_port,
    heart_search,
    queued_study,
    start,
    train_in_process,
    trees_search,
    wait_for,
)

LEAN = ["mlflow.log_model=false", "mlflow.log_plots=false"]
PARENT = "mlflow_parent_run_id"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("k=choice(uniform,distance)", CategoricalDistribution(["uniform", "distance"])),
        ("k=range(1,31)", IntDistribution(1, 30)),  # stop excluded, as in Hydra's grid
        ("k=range(1,10,3)", IntDistribution(1, 7, step=3)),
        ("k=range(0.1,0.5,0.1)", FloatDistribution(0.1, 0.4, step=0.1)),
        ("k=interval(0.1,1.0)", FloatDistribution(0.1, 1.0)),
        ("k=tag(log,interval(0.0001,10.0))", FloatDistribution(0.0001, 10.0, log=True)),
        ("k=int(interval(20,300))", IntDistribution(20, 300)),
        ("k=5", None),
    ],
)
def test_search_space_from_hydras_grammar(override: str, expected) -> None:
    (parsed,) = OverridesParser.create().parse_overrides([override])
    found = distribution(parsed)
    if isinstance(expected, FloatDistribution) and expected.step is not None:
        assert isinstance(found, FloatDistribution) and found.step == pytest.approx(0.1)
        assert (found.low, found.high) == pytest.approx((expected.low, expected.high))
    else:
        assert found == expected


def test_a_relative_sqlite_storage_is_made_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_storage("sqlite:///optuna.db") == f"sqlite:///{tmp_path}/optuna.db"
    assert absolute_storage("sqlite:////abs/o.db") == "sqlite:////abs/o.db"
    assert absolute_storage(None) is None
    assert absolute_storage("postgresql://u@h/db") == "postgresql://u@h/db"


def test_n_trials_counts_ended_trials_and_interrupted_ones_are_asked_again() -> None:
    study = optuna.create_study()
    mine, other = {PARENT: "p1"}, {PARENT: "p2"}

    def trial(attrs, state):
        t = study.ask({"x": IntDistribution(0, 9)})
        for k, v in attrs.items():
            t.set_user_attr(k, v)
        if state == "done":
            t.set_user_attr(JOB_STATUS, "COMPLETED")
            study.tell(t, float(t.params["x"]))
        elif state == "failed":
            t.set_user_attr(JOB_STATUS, "FAILED")
            study.tell(t, state=TrialState.FAIL)
        elif state == "interrupted":
            study.tell(t, state=TrialState.FAIL)
        return t  # "running": left RUNNING, as by a killed process

    trial(mine, "done")
    trial(mine, "failed")  # a job that failed: a result, it counts
    interrupted = trial(mine, "interrupted")
    running = trial(mine, "running")  # of this sweep's dead process
    foreign = trial(other, "running")  # another sweep's, maybe alive: left alone
    assert missing_trials(None, None, 6) == 6  # in memory: every trial runs
    assert prepare(study, mine, 6) == 4  # 2 ended of 6
    states = {t.number: t.state for t in study.trials}
    assert states[running.number] == TrialState.FAIL  # no trial of this sweep stays RUNNING
    assert states[foreign.number] == TrialState.RUNNING
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.user_attrs[RETRY_OF] for t in queued) == [interrupted.number, running.number]
    assert prepare(study, mine, 6) == 4  # queued once, not once per look
    again = [study.ask({"x": IntDistribution(0, 9)}) for _ in queued]  # the queue comes first
    assert [t.user_attrs[RETRY_OF] for t in again] == [interrupted.number, running.number]
    assert [t.params for t in again] == [interrupted.params, running.params]  # same values


def test_a_failed_job_is_a_failed_trial_naming_its_run() -> None:
    study = optuna.create_study()
    error = ValueError("Expected n_neighbors <= n_samples_fit")
    error.run_id = "abc"  # as child_run.job_run sets it on the error of a FAILED child
    failed = JobReturn(status=JobStatus.FAILED, _return_value=error)
    score = pickle.loads(pickle.dumps(RunScore(0.8, "def")))  # as from a joblib worker
    finished = JobReturn(status=JobStatus.COMPLETED, _return_value=score)
    trials = [study.ask({"x": IntDistribution(0, 9)}) for _ in range(2)]
    assert tell(study, trials[0], failed) and not tell(study, trials[1], finished)
    one, two = study.trials
    assert one.state == TrialState.FAIL and one.user_attrs == {JOB_STATUS: "FAILED", RUN_ID: "abc"}
    assert two.value == 0.8 and two.user_attrs == {JOB_STATUS: "COMPLETED", RUN_ID: "def"}


@contextmanager
def thread_pool(seconds: dict[int, float], ends: dict[int, float]):
    """A pool whose job `n` (of trial `n`) sleeps `seconds[n]` in a thread, notes when it ended
    in `ends`, and returns its trial's x (or fails, or is interrupted, as x says)."""
    with ThreadPoolExecutor(max_workers=4) as threads:

        def job(number: int, x: int) -> JobReturn:
            time.sleep(seconds[number])
            ends[number] = time.monotonic()
            if x == -2:  # Ctrl-C reached the job: its run ended KILLED, the interrupt goes on
                raise KeyboardInterrupt
            if x == -1:  # its run ended FAILED
                return JobReturn(status=JobStatus.FAILED, _return_value=ValueError("bad x"))
            return JobReturn(status=JobStatus.COMPLETED, _return_value=float(x))

        yield lambda overrides, idx: threads.submit(job, int(overrides[0]), int(overrides[1]))


def asking(study: optuna.Study, xs: list[int], seen: dict[int, list[int]]):
    """`ask` for `_asynchronous.search`: trial n gets x = xs[n]; `seen` notes, at each ask,
    the trials the study then knows as ended."""

    def ask():
        ended = [t.number for t in study.get_trials(states=(TrialState.COMPLETE,))]
        trial = study.ask({"x": IntDistribution(-2, 9)})
        seen[trial.number] = ended
        return trial, [str(trial.number), str(xs[trial.number])]

    return ask


def test_a_search_asks_a_trial_as_soon_as_one_ends_and_the_sampler_knows_the_ended_ones():
    study = optuna.create_study(direction="maximize")
    seconds = {0: 1.5} | dict.fromkeys(range(1, 6), 0.1)  # trial 0 takes 15 times longer
    ends: dict[int, float] = {}
    seen: dict[int, list[int]] = {}
    ask = asking(study, [5, 1, 2, 3, 4, 6], seen)
    search(thread_pool(seconds, ends), study, ask, to_ask=6, slots=2, max_failure_rate=0.0)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    assert [t.value for t in study.trials] == [5, 1, 2, 3, 4, 6]
    assert max(ends[n] for n in range(1, 6)) < ends[0]  # 1 to 5 ran one by one beside 0
    assert seen == {0: [], 1: [], 2: [1], 3: [1, 2], 4: [1, 2, 3], 5: [1, 2, 3, 4]}


def test_an_interrupted_search_tells_its_finished_trials_and_fails_the_others():
    study = optuna.create_study()
    seconds = {0: 1.0, 1: 0.1, 2: 0.1}
    ends: dict[int, float] = {}
    ask = asking(study, [5, 1, -2], {})  # trial 2's job is interrupted, trial 0's runs on
    with pytest.raises(KeyboardInterrupt):
        search(thread_pool(seconds, ends), study, ask, to_ask=3, slots=2, max_failure_rate=1.0)
    (done_0, done_1, interrupted) = study.trials
    assert done_0.state == done_1.state == TrialState.COMPLETE  # finished jobs: told
    assert interrupted.state == TrialState.FAIL and JOB_STATUS not in interrupted.user_attrs


def test_a_search_stopped_by_its_failure_rate_says_so_whatever_the_later_trials_do():
    study = optuna.create_study()
    seconds = {0: 0.1, 1: 0.5}  # trial 0 fails first: 1 of 1 ended failed, above 0.5
    ask = asking(study, [-1, 3, 4, 5], {})
    with pytest.raises(ValueError, match="bad x"):  # though 1 of 2 is not above 0.5
        search(thread_pool(seconds, {}), study, ask, to_ask=4, slots=2, max_failure_rate=0.5)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]


def test_a_search_past_its_failure_rate_asks_no_more_and_ends_the_running_trials():
    study = optuna.create_study()
    seconds = {0: 1.0, 1: 0.1, 2: 0.1}
    ask = asking(study, [5, -1, 3, 4], {})
    with pytest.raises(ValueError, match="bad x"):
        search(thread_pool(seconds, {}), study, ask, to_ask=4, slots=2, max_failure_rate=0.0)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert study.trials[1].user_attrs[JOB_STATUS] == "FAILED"


def children_by_parent(uri: str) -> dict[str, list]:
    runs = all_runs(uri)
    parents = {r.info.run_id: [] for r in runs if r.data.tags.get("sweep") == "true"}
    for run in runs:
        parent = run.data.tags.get("mlflow.parentRunId")
        if parent is not None:
            parents[parent].append(run)
    return parents


def check_links(study: optuna.Study, uri: str) -> None:
    """Every trial with a run names a child that names the trial back, study and number."""
    client = MlflowClient(uri)
    for trial in study.trials:
        if RUN_ID not in trial.user_attrs:
            continue
        child = client.get_run(trial.user_attrs[RUN_ID])
        assert child.data.tags["optuna.trial_number"] == str(trial.number)
        assert child.data.tags["optuna.study"] == study.study_name
        assert child.data.tags["mlflow.parentRunId"] == trial.user_attrs[PARENT]


def test_a_persistent_study_links_trials_and_runs(tracking_uri, tmp_path) -> None:
    relative = os.path.relpath(tmp_path, REPO)
    knn = [
        "-m",
        "sweeps=knn_optuna",
        "data=heart",
        f"data.path={HEART_CSV}",
        *LEAN,
        f"hydra.sweeper.storage=sqlite:///{relative}/optuna.db",  # from where the sweep starts
        "hydra.sweeper.study_name=knn",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweep.dir={tmp_path}/sweep",
    ]
    result = cli(tracking_uri, "src.train", *knn)  # started in the repository
    assert result.returncode == 0, result.stderr
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.load_study(study_name="knn", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    check_links(study, tracking_uri)
    ((parent_id, children),) = children_by_parent(tracking_uri).items()
    assert len(children) == 3
    parent = MlflowClient(tracking_uri).get_run(parent_id)
    assert parent.data.tags["search_best_run_id"] == study.best_trial.user_attrs[RUN_ID]
    assert parent.data.metrics["search_best_value"] == pytest.approx(study.best_value)
    assert parent.data.tags["search_study_name"] == "knn"
    assert parent.data.tags["search_storage"] == storage


@pytest.mark.slow  # three sweeps and a dashboard; make test and CI run them
def test_an_interrupted_study_resumes_then_continues(tracking_uri, tmp_path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    process, out = start(
        tracking_uri, tmp_path, *heart_search(tmp_path, "hydra.sweeper.n_trials=4")
    )
    wait_for(out, "[2/4]", process)
    deadline = time.monotonic() + 60
    while not [
        r
        for r in all_runs(tracking_uri)
        if r.info.status == "RUNNING" and r.data.tags.get("optuna.trial_number")
    ]:
        assert time.monotonic() < deadline and process.poll() is None, out.read_text()
        time.sleep(0.1)  # the third trial's child is running: interrupt it mid-trial
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    assert process.returncode != 0
    study = optuna.load_study(study_name="heart_rf", storage=storage)
    assert TrialState.RUNNING not in {t.state for t in study.trials}  # Ctrl-C: none left
    assert [r.info.status for r in all_runs(tracking_uri) if r.info.status == "RUNNING"] == []
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) >= 2

    resumed = train_in_process(
        tracking_uri, *heart_search(tmp_path, "hydra.sweeper.n_trials=4"),
        "sweep.resume=latest", f"hydra.sweep.dir={tmp_path}/sweep",
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    study = optuna.load_study(study_name="heart_rf", storage=storage)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4  # n_trials reached, the kept ones counted
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL]
    assert interrupted and all(JOB_STATUS not in t.user_attrs for t in interrupted)
    retries = {t.user_attrs[RETRY_OF]: t for t in study.trials if RETRY_OF in t.user_attrs}
    assert set(retries) == {t.number for t in interrupted}  # each asked again, same values
    assert all(retries[t.number].params == t.params for t in interrupted)
    ((parent_id, children),) = children_by_parent(tracking_uri).items()
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(finished) == 4 == len(children)  # the killed child went to the trash
    numbers = [c.data.tags["optuna.trial_number"] for c in finished]
    assert sorted(numbers) == sorted(str(t.number) for t in complete)  # no duplicates
    check_links(study, tracking_uri)

    more = train_in_process(
        tracking_uri, *heart_search(tmp_path, "hydra.sweeper.n_trials=6"),
        f"hydra.sweep.dir={tmp_path}/sweep2",
    )  # fmt: skip
    assert more.returncode == 0, more.stderr
    assert "earlier trials, numbers go on" in more.stderr + more.stdout
    parents = children_by_parent(tracking_uri)
    assert len(parents) == 2
    (second,) = [c for p, c in parents.items() if p != parent_id]
    study = optuna.load_study(study_name="heart_rf", storage=storage)
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 6
    last = max(int(n) for n in numbers)
    assert sorted(int(c.data.tags["optuna.trial_number"]) for c in second) == [last + 1, last + 2]
    check_links(study, tracking_uri)
    again = train_in_process(
        tracking_uri, *heart_search(tmp_path, "hydra.sweeper.n_trials=6"),
        f"hydra.sweep.dir={tmp_path}/sweep3",
    )  # fmt: skip
    assert again.returncode == 1
    assert "already holds hydra.sweeper.n_trials=6 ended trials" in again.stderr
    assert len(children_by_parent(tracking_uri)) == 2  # refused before any run

    port = free_port()
    dashboard = subprocess.Popen(
        [Path(sys.executable).parent / "optuna-dashboard", storage, "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        studies = dashboard_json(f"http://127.0.0.1:{port}/api/studies")
        (listed,) = studies["study_summaries"]
        assert listed["study_name"] == "heart_rf"
        detail = dashboard_json(f"http://127.0.0.1:{port}/api/studies/{listed['study_id']}")
        complete = [t for t in detail["trials"] if t["state"] == "Complete"]
        assert len(complete) == 6
        runs = [{a["key"]: a["value"] for a in t["user_attrs"]}.get(RUN_ID) for t in complete]
        assert set(runs) == {c.info.run_id for c in finished + second}  # each trial its child
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


def dashboard_json(url: str, timeout: float = 60) -> dict:
    """GET `url` of a starting optuna-dashboard, retrying until it answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            assert time.monotonic() < deadline, f"optuna-dashboard did not answer {url}"
            time.sleep(0.3)


JOBLIB_2 = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
SUBMITIT_LOCAL = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                  "hydra.launcher.tasks_per_node=1"]  # fmt: skip


@pytest.mark.slow  # a real search on 2 joblib workers
def test_a_search_on_workers_asks_a_trial_as_soon_as_a_worker_is_free(tracking_uri, tmp_path):
    """Trial 0 is slow: the other worker runs trials 1 to 4 one after another beside it (in
    batches of 2, trial 2 would wait for trial 0)."""
    storage = queued_study(tmp_path, [SLOW_TREES, 5, 6, 7, 8])
    result = cli(tracking_uri, "src.train", *trees_search(tmp_path, JOBLIB_2, 5),
                 f"hydra.sweep.dir={tmp_path}/sweep")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "A new trial is asked as soon as one ends, 2 running at once" in result.stdout
    check_asked_as_workers_free(storage, tracking_uri)


@pytest.mark.slow  # sweeps interrupted and resumed, on 2 workers
@pytest.mark.parametrize("launcher", [JOBLIB_2, SUBMITIT_LOCAL], ids=["joblib", "submitit"])
def test_an_interrupted_search_on_workers_resumes_with_no_duplicate(
    launcher, tracking_uri, tmp_path
) -> None:
    storage = queued_study(tmp_path, [SLOW_TREES, 5, 6, 7, SLOW_TREES - 1, SLOW_TREES - 2])
    process, out = start(
        tracking_uri, tmp_path, *trees_search(tmp_path, launcher, 6), new_session=True
    )
    deadline = time.monotonic() + 240
    while True:  # two trials done and the slow one still running: Ctrl-C, as in a terminal
        runs = [r for r in all_runs(tracking_uri) if r.data.tags.get("optuna.trial_number")]
        if sum(r.info.status == "FINISHED" for r in runs) >= 2:
            break
        assert time.monotonic() < deadline and process.poll() is None, out.read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # the sweep, its workers and their jobs
    process.wait(timeout=120)
    assert process.returncode != 0
    study = optuna.load_study(study_name="heart_rf", storage=storage)
    assert TrialState.RUNNING not in {t.state for t in study.trials}, out.read_text()[-3000:]
    stopped = {r.info.status for r in all_runs(tracking_uri)} - {"FINISHED"}
    assert stopped <= {"KILLED"}, out.read_text()[-4000:]  # no RUNNING, no job made FAILED
    study_trials = {str(t.number): t.state for t in study.trials}
    finished = [
        r.data.tags["optuna.trial_number"]
        for r in all_runs(tracking_uri)
        if r.info.status == "FINISHED" and r.data.tags.get("optuna.trial_number")
    ]
    complete = [n for n, state in study_trials.items() if state == TrialState.COMPLETE]
    assert set(complete) <= set(finished) and complete, out.read_text()[-4000:]
    # a job stopped after its run finished, before its return came back: its trial is FAIL
    assert {study_trials[n] for n in set(finished) - set(complete)} <= {TrialState.FAIL}

    resumed = cli(tracking_uri, "src.train", *trees_search(tmp_path, launcher, 6),
                  "sweep.resume=latest", f"hydra.sweep.dir={tmp_path}/sweep")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = optuna.load_study(study_name="heart_rf", storage=storage)
    complete_trials = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete_trials) == 6
    ((parent_id, children),) = children_by_parent(tracking_uri).items()
    ran = [(c.data.tags["optuna.trial_number"], c.data.tags["job_key"]) for c in children]
    assert [c.info.status for c in children] == ["FINISHED"] * 6, (ran, resumed.stdout[-4000:])
    assert len({key for _, key in ran}) == 6  # no job ran twice
    runs = {c.info.run_id for c in children}
    assert {t.user_attrs[RUN_ID] for t in complete_trials} == runs  # each trial its own child


def test_the_pruner_is_found_after_hydras_plugin_scan_reexecutes_the_package() -> None:
    """Hydra's plugin scan re-executes a plugin package in its loaded module (rebinding its
    globals) but not its `_`-modules: the pruner the app hands over must reach the launch."""
    import importlib

    import hydra_plugins.sweeps_optuna_sweeper as package
    from hydra_plugins.sweeps_optuna_sweeper import _pruning

    importlib.reload(package)  # as the scan does: exec_module on sys.modules' module
    pruner, round_job = (lambda *args: set()), (lambda job, r, run: job)
    package.prune_trials(pruner, 2, round_job)
    try:
        assert _pruning.pruning() == (pruner, 2, round_job)
    finally:
        package.prune_trials(None)
