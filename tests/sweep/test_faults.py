"""The fault table: bad input and failing jobs, each one line, each typed as a user would (called
in this process; the rows marked `process` as a real `python -m src.train`), each checked
against the README's invariants."""

from __future__ import annotations

import base64
import re
import sqlite3
import sys
import threading
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from src.ml.targets import TargetError
from src.sweep.checks import check_typed_hydra_targets
from src.sweep.credentials import keep_credentials_out
from src.tracking.store import (
    TrackingError,
    check_reachable,
    resolve_tracking_uri,
)

from ..helpers import (
    HEART_CSV,
    REPO,
    cli,
    free_port,
    heart_sweep,
    in_process,
    mlflow_process,
    new_store,
    train_in_process,
)

# every row runs a small KNN sweep on the heart data, without models and plots (fast)
BASE = ["data=heart", "data.path={heart}", "mlflow.log_model=false", "mlflow.log_plots=false"]


@dataclass(frozen=True)
class Fault:
    """One row: what is typed, the exit code, a fragment of what is printed, and the runs that
    end up in the store by status (parents and children apart)."""

    id: str
    args: str  # as typed after `python -m src.train` (split on spaces)
    code: int
    says: str
    parents: dict[str, int] = field(default_factory=dict)
    children: dict[str, int] = field(default_factory=dict)
    tracking_uri: str | None = None  # default: the test's own fresh sqlite store
    slow: bool = False
    process: bool = False  # True: run as `python -m src.train` (others are called in this process)
    hides: str | None = None  # what must not be printed (a secret the input holds)


JOBLIB = "hydra/launcher=joblib hydra.launcher.n_jobs=2"
SLOW = True
LONG_NAME = "x" * 300
PER_MODEL = "mlflow.experiment_name=${hydra:runtime.choices.model}-heart"
# fmt: off
FAULTS = [
    # unknown options and keys, values an estimator rejects: before any run, sweep or not
    Fault("unknown_model_in_sweep", "-m model=knn,nope", 1, "nope", process=True),
    Fault("unknown_model", "-m model=nope", 1, "nope"),
    Fault("unknown_model_single", "model=nope", 1, "nope"),
    Fault("unknown_key", "-m model=knn model.foo=1,2", 1, "foo"),
    Fault("unknown_key_single", "model=knn model.foo=1", 1, "foo"),
    Fault("bad_value", "-m model=knn model.n_neighbors=3,abc", 1, "model.n_neighbors='abc'"),
    Fault("bad_value_single", "model=knn model.n_neighbors=abc", 1, "model.n_neighbors='abc'"),
    # the joblib workers' server starts before validation, and must end quietly with it
    Fault("bad_value_joblib", f"-m model=knn model.weights=uniform,bogus {JOBLIB}", 1, "model.weights='bogus'", process=True, slow=SLOW),
    Fault("no_csv", "-m data=csv data.path=/no/such.csv data.target=y", 1, "/no/such.csv"),
    Fault("no_target", "-m data=csv data.path={heart} data.target=nope", 1, "data.target='nope'"),
    Fault("no_target_single", "data=csv data.path={heart} data.target=nope", 1, "Run not started: data.target='nope'"),
    Fault("offline_single", "data.path={tmp}/none.data data.url=http://127.0.0.1:9/heart.data", 1, "Run not started: data.path="),
    Fault("csv_without_path", "-m data=csv data.path=???", 1, "data.path, data.target: no value given"),
    # settings no run can use: one line, before the parent exists
    Fault("test_size", "-m model=knn data.test_size=1.5", 1, "data.test_size=1.5"),
    Fault("test_size_one_job", "-m model=knn data.test_size=0.2,1.5", 1, "data.test_size=1.5", process=True, slow=SLOW),
    Fault("joblib_no_workers", "-m model=knn hydra/launcher=joblib hydra.launcher.n_jobs=0", 1, "hydra.launcher.n_jobs=0 is not valid; use a number of workers >= 1", process=True),
    Fault("big_grid_checked", "-m model=knn model.n_neighbors=range(1,151) model.weights=uniform,bogus", 1, "Checking 300 jobs before the sweep starts"),
    Fault("seed", "-m model=knn seed=-1", 1, "seed=-1 is not valid"),
    Fault("metric", "-m sweep.metric=not_a_metric", 1, "sweep.metric='not_a_metric' is not valid; use one of cv_accuracy_mean"),
    Fault("metric_on_test", "-m sweep.metric=f1_score", 1, "tunes to the test set. Did you mean cv_f1_mean?"),
    Fault("metric_on_test_single", "sweep.metric=test_accuracy", 1, "Did you mean cv_accuracy_mean?"),
    Fault("select_on_test_unknown", "-m sweep.metric=nope sweep.select_on_test=true", 1, "sweep.metric='nope' is not valid; use one of cv_accuracy_mean"),
    Fault("select_on_test_text", "-m sweep.select_on_test=yes", 1, "sweep.select_on_test='yes' is not valid; use true or false"),
    Fault("direction", "-m sweep.direction=sideways", 1, "sweep.direction='sideways'"),
    Fault("objectives_unequal", "-m sweep.metric=[cv_accuracy_mean,cv_fit_time_mean] sweep.direction=[maximize,minimize,minimize]", 1, "sweep.metric has 2 metrics (cv_accuracy_mean, cv_fit_time_mean) but sweep.direction 3 directions"),
    Fault("objective_unknown", "-m sweep.metric=[cv_accuracy_mean,speed] sweep.direction=[maximize,minimize]", 1, "sweep.metric='speed' is not valid"),
    Fault("constraint_unparseable", '-m sweep.constraints=["model_bytes=<1e6"]', 1, "sweep.constraints: 'model_bytes=<1e6' is not a constraint"),
    Fault("constraint_unknown_metric", '-m sweep.constraints=["speed<=1"]', 1, "sweep.constraints='speed<=1' is not valid; use a constraint on a metric every child records"),
    Fault("search_directions_unequal", "-m sweeps=random_forest_tradeoffs_optuna hydra.sweeper.direction=maximize", 1, "hydra.sweeper.direction='maximize' has 1 directions for the 2 objectives"),
    Fault("search_batches_not_bool", "-m sweeps=knn_optuna hydra.sweeper.batches=maybe", 1, "hydra.sweeper.batches='maybe': true (wait for each batch of n_jobs trials) or false"),
    Fault("search_no_trials_at_once", "-m sweeps=knn_optuna hydra.sweeper.n_jobs=0", 1, "hydra.sweeper.n_jobs=0: the trials running at once, >= 1"),
    Fault("search_single_objective_sampler", "-m sweeps=random_forest_tradeoffs_optuna hydra/sweeper/sampler=cmaes ~hydra.sweeper.sampler.population_size", 1, "hydra.sweeper.sampler=CmaEsSampler searches one objective, sweep.metric has 2"),
    Fault("alpha", "-m sweep.alpha=1.5", 1, "sweep.alpha=1.5 is not valid; use a significance level"),
    Fault("heartbeat", "-m sweep.heartbeat_s=0", 1, "sweep.heartbeat_s=0 is not valid; use seconds between"),
    Fault("prefer_format", "-m sweep.prefer=n_neighbors", 1, "sweep.prefer='n_neighbors' is not valid; use null or <param key>:max|min"),
    Fault("prefer_unknown_key", "-m model=knn sweep.prefer=model.n_neighbour:max", 1, "names 'model.n_neighbour', which no job's config has"),
    Fault("max_failures_negative", "-m sweep.max_failures=-1", 1, "sweep.max_failures=-1"),
    Fault("max_failures_text", "-m sweep.max_failures=abc", 1, "sweep.max_failures='abc'"),
    Fault("one_fold", "-m cv.folds=1", 1, "cv.folds=1 is not valid"),
    Fault("too_many_folds", "-m cv.folds=1000", 1, "cv.folds=1000 is more than the"),
    Fault("zero_repeats", "cv.repeats=0", 1, "cv.repeats=0 is not valid; use a whole number >= 1"),
    Fault("cv_seed", "-m cv.seed=-1", 1, "cv.seed=-1 is not valid"),
    Fault("race_one_repeat", "-m model=knn model.n_neighbors=3,5 sweep.race=true", 1, "Sweep not started: sweep.race=true with cv.repeats=1: a race runs one CV repeat per round"),
    Fault("race_alpha", "-m sweep.race=true cv.repeats=3 sweep.race_alpha=1.5", 1, "sweep.race_alpha=1.5 is not valid; use a significance level between 0 and 1"),
    Fault("race_alpha_zero", "-m sweep.race=true cv.repeats=3 sweep.race_alpha=0", 1, "sweep.race_alpha=0 is not valid"),
    Fault("race_on_test", "-m sweep.race=true cv.repeats=3 sweep.select_on_test=true sweep.metric=test_accuracy", 1, "sweep.race=true with sweep.select_on_test=true"),
    Fault("race_repeats_swept", "-m sweep.race=true cv.repeats=2,3", 1, "cv.repeats is the race's number of rounds, one for every job, so it cannot be swept"),
    Fault("race_search_resume", "-m sweeps=knn_optuna sweep.race=true cv.repeats=3 sweep.resume=latest", 1, "sweep.race=true with hydra/sweeper=optuna cannot sweep.resume yet"),
    Fault("race_single_run", "sweep.race=true cv.repeats=3", 1, "Run not started: sweep.race=true races the jobs of a sweep"),
    Fault("served_output", "mlflow.pyfunc_predict_fn=score", 1, "mlflow.pyfunc_predict_fn='score' is not valid; use predict | predict_proba"),
    Fault("resume_nonsense", "-m sweep.resume=nonsense", 1, "sweep.resume='nonsense'"),
    Fault("resume_nothing", "-m sweep.resume=latest", 1, "has no sweeps"),
    Fault("long_experiment", f"-m mlflow.experiment_name={LONG_NAME}", 1, "mlflow.experiment_name is 300 bytes long"),
    Fault("experiment_escapes", "-m mlflow.experiment_name=../../escaped/x", 1, "mlflow.experiment_name='../../escaped/x' is not valid; use a name, not a path"),
    Fault("experiment_absolute", "-m mlflow.experiment_name={tmp}/abs", 1, "is not valid; use a name, not a path"),
    Fault("experiment_escapes_single", "mlflow.experiment_name=a/../../x", 1, "Run not started: mlflow.experiment_name='a/../../x' is not valid"),
    Fault("experiment_per_model", f"-m model=knn,logistic_regression {PER_MODEL}", 1, "mlflow.experiment_name differs between the jobs (knn-heart, logistic_regression-heart)"),
    # data files that are not tables: named in the message
    Fault("empty_csv", "-m data=csv data.path={empty} data.target=num", 1, "empty.csv' is empty"),
    Fault("header_only_csv", "-m data=csv data.path={header} data.target=num", 1, "header.csv' has a header but no rows"),
    Fault("latin1_csv", "-m data=csv data.path={latin1} data.target=num", 1, "latin1.csv' is not UTF-8 text"),
    Fault("ragged_csv", "-m data=csv data.path={ragged} data.target=num", 1, "ragged.csv' is not a valid CSV table"),
    Fault("heart_ragged", "-m data.path={ragged}", 1, "ragged.csv' is not a valid CSV table"),
    # a `_target_` is code: only scikit-learn classes (Optuna samplers) are called, checked first
    Fault("target_open", "-m model._target_=builtins.open +model.file={tmp}/a_file +model.mode=w", 1, "model._target_='builtins.open' is not allowed"),
    Fault("target_open_single", "model._target_=builtins.open +model.file={tmp}/a_file +model.mode=w", 1, "Run not started: model._target_='builtins.open' is not allowed"),
    Fault("target_nested", "-m model=svm model.estimator._target_=shutil.copyfile +model.estimator.src={heart} +model.estimator.dst={tmp}/copy.csv", 1, "model.estimator._target_='shutil.copyfile' is not allowed"),
    Fault("target_private", "-m model._target_=sklearn.utils._testing.assert_run_python_script_without_output", 1, "is not allowed: use a public class under sklearn."),
    Fault("target_not_classifier", "-m model._target_=sklearn.linear_model.LinearRegression", 1, "model._target_='sklearn.linear_model.LinearRegression' is not a scikit-learn classifier class"),
    Fault("target_no_class", "-m model._target_=sklearn.neighbors.Nope", 1, "model._target_='sklearn.neighbors.Nope' cannot be imported"),
    Fault("target_sampler", "-m sweeps=knn_optuna hydra.sweeper.sampler._target_=builtins.print", 1, "hydra.sweeper.sampler._target_='builtins.print' is not allowed"),
    # Hydra makes its callbacks (and the launcher, with what its options nest) before any hook
    # of ours: their typed targets are checked before Hydra starts
    Fault("target_callback", "-m +hydra.callbacks.x._target_=builtins.open +hydra.callbacks.x.file={tmp}/a_file +hydra.callbacks.x.mode=w", 1, "Not started: hydra.callbacks.x._target_='builtins.open' is not allowed", process=True),
    Fault("target_callback_single", "+hydra.callbacks.x._target_=builtins.open +hydra.callbacks.x.file={tmp}/a_file +hydra.callbacks.x.mode=w", 1, "hydra.callbacks.x._target_='builtins.open' is not allowed"),
    Fault("target_callback_ours", "-m hydra.callbacks.mlflow_sweep._target_=shutil.copyfile +hydra.callbacks.mlflow_sweep.src={heart} +hydra.callbacks.mlflow_sweep.dst={tmp}/copy.csv", 1, "hydra.callbacks.mlflow_sweep._target_='shutil.copyfile' is not allowed"),
    Fault("target_callback_nested", "-m +hydra.callbacks.x._target_=hydra.experimental.callbacks.LogJobReturnCallback +hydra.callbacks.x.y._target_=shutil.copyfile +hydra.callbacks.x.y.src={heart} +hydra.callbacks.x.y.dst={tmp}/copy.csv", 1, "a callback takes no nested _target_"),
    Fault("target_launcher_nested", "-m +hydra.launcher.x._target_=shutil.copyfile +hydra.launcher.x.src={heart} +hydra.launcher.x.dst={tmp}/copy.csv", 1, "a launcher takes no _target_"),
    # Hydra refuses a typo before our code runs, echoing the override: stderr is redacted
    Fault("password_in_a_typo", "model=knn mlflow.trackinguri=http://u:S3CRETPW@127.0.0.1:9/", 1, "+mlflow.trackinguri=http://u:***@127.0.0.1:9/", hides="S3CRETPW", process=True),
    Fault("target_sampler_other", "-m sweeps=knn_optuna hydra.sweeper.sampler._target_=optuna.samplers.nsgaii.UniformCrossover", 1, "is not an Optuna sampler class"),
    # a file that is not a table: named, its content not printed
    Fault("secret_file", "-m data=csv data.path={secret} data.target=num", 1, "secret.csv: its first line is not a header", hides="S3CRET"),
    Fault("duplicate_column", "-m data=csv data.path={duplicate} data.target=num", 1, "duplicate.csv' has more than one column named 'age'"),
    # a store that cannot be made
    Fault("store_path", "-m model=knn", 1, "cannot create its folder", tracking_uri="sqlite:///{tmp}/a_file/mlflow.db"),
    Fault("foreign_store", "-m model=knn", 1, "foreign.db is another application's database (1 tables, none of MLflow's); not touched", tracking_uri="sqlite:///{tmp}/foreign.db"),
    Fault("foreign_store_single", "model=knn", 1, "foreign.db is another application's database", tracking_uri="sqlite:///{tmp}/foreign.db"),
    Fault("corrupt_store", "-m model=knn", 1, "corrupt.db is not usable: file is not a database", tracking_uri="sqlite:///{tmp}/corrupt.db"),
    # jobs that fail while running: FAILED children, a summary, exit 1 (more in test_failures.py)
    Fault("job_fails_single", "model=knn model.n_neighbors=500", 1, "Run failed: Expected n_neighbors <= n_samples_fit", process=True),
    Fault("one_job_fails", "-m model=knn model.n_neighbors=5,500", 1, "1 of 2 jobs failed", {"FINISHED": 1}, {"FINISHED": 1, "FAILED": 1}),
    # a value a search samples is checked in its job: a FAILED child, not a lost job
    Fault("optuna_two_objectives", "-m sweeps=knn_optuna hydra.sweeper.direction=[maximize,minimize]", 1, "hydra.sweeper.direction=['maximize', 'minimize'] has 2 directions for the 1 objectives of sweep.metric='cv_accuracy_mean'"),
    Fault("optuna_unknown_key", "-m sweeps=knn_optuna model.nope=choice(1,2)", 1, "Could not override 'model.nope'"),
    Fault("sampled_bad_value", "-m sweeps=knn_optuna hydra.sweeper.n_trials=4 data.test_size=choice(0.2,1.5)", 1, "3 of 4 jobs failed", {"FINISHED": 1}, {"FINISHED": 1, "FAILED": 3}, slow=SLOW),
    # what works must keep working
    Fault("select_on_test", "-m model=knn model.n_neighbors=3,5 sweep.metric=f1_score sweep.select_on_test=true", 0, "f1_score=", {"FINISHED": 1}, {"FINISHED": 2}, slow=SLOW),
    Fault("experiment_from_choice", f"-m model=knn model.n_neighbors=3,5 {PER_MODEL}", 0, "in experiment 'knn-heart'", {"FINISHED": 1}, {"FINISHED": 2}, slow=SLOW),
]
# fmt: on


A_FILE = "a file where the store's folder would go"


def bad_files(tmp: Path) -> dict[str, str]:
    """CSV files a user may point data.path at by mistake, by the name the rows use."""
    header, *lines = HEART_CSV.read_text().splitlines()
    rows = "\n".join(lines[:40]) + "\n"
    files = {
        "empty": "",
        "header": header + "\n",
        "latin1": header + "\n" + "café,1\n",
        "ragged": header + "\n1,2\n1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n",
        "secret": "root:$6$S3CRET:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
        "duplicate": header.replace("sex", "age", 1) + "\n" + rows,
    }
    paths = {}
    for name, text in files.items():
        path = tmp / f"{name}.csv"
        path.write_bytes(text.encode("latin-1"))
        paths[name] = str(path)
    (tmp / "a_file").write_text(A_FILE)
    with closing(sqlite3.connect(tmp / "foreign.db")) as db, db:
        db.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
        db.execute("INSERT INTO contacts VALUES ('Ada', '555-0100')")
    (tmp / "corrupt.db").write_bytes(bytes(range(256)) * 64)
    return paths | {"heart": str(HEART_CSV), "tmp": str(tmp)}


@pytest.mark.parametrize(
    "fault",
    [pytest.param(f, id=f.id, marks=[pytest.mark.slow] if f.slow else []) for f in FAULTS],
)
def test_fault(fault: Fault, tracking_uri: str, tmp_path: Path) -> None:
    names = bad_files(tmp_path)
    files = [
        p for p in tmp_path.iterdir() if p.is_file() and p.name != "mlflow.db"
    ]  # not the store
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    args = [a.format(**names) if "{" in a and "${" not in a else a for a in fault.args.split()]
    uri = fault.tracking_uri.format(**names) if fault.tracking_uri else tracking_uri
    dirs = [f"hydra.sweep.dir={tmp_path}/sweep", f"hydra.run.dir={tmp_path}/run"]
    base = [a.format(**names) for a in BASE]
    sweep = "-m" in args
    rest = [a for a in args if a != "-m"]  # the row's own values win over BASE
    argv = [*(["-m"] if sweep else []), *base, *rest, *dirs]
    result = cli(uri, "src.train", *argv) if fault.process else train_in_process(uri, *argv)
    output = result.stdout + result.stderr
    assert result.returncode == fault.code, output
    assert fault.says in output, output
    if fault.code and not fault.parents and not fault.children:  # bad input: one line
        assert "Traceback" not in output, output
    if fault.hides is not None:
        assert fault.hides not in output, output
    # bad input touches no file of the user's (a store that is not MLflow's included)
    assert before == {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before}
    assert not (tmp_path / "copy.csv").exists()
    if fault.tracking_uri is None:
        parents, children = runs_by_status(uri)
        assert (parents, children) == (Counter(fault.parents), Counter(fault.children))
        check_invariants(uri)


SECRET = "S3CRETPW"  # a store's password, typed in a URI: printed, tagged, logged, written nowhere


def leaks(folder: Path) -> list[Path]:
    """The files under `folder` (sweep folders, the store's database and artifacts) holding
    SECRET, read as bytes."""
    return [p for p in folder.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


@pytest.mark.parametrize("sweep", [True, False], ids=["sweep", "single"])
def test_store_password_in_override_is_nowhere(
    sweep: bool, tracking_uri: str, tmp_path: Path
) -> None:
    """mlflow.tracking_uri typed with a password (MLFLOW_TRACKING_URI, set here, wins): not in
    the output, multirun.yaml, any job's .hydra/ files, the runs' config artifacts, tags or
    params (the sqlite database is read as bytes)."""
    base = [a.format(heart=HEART_CSV) for a in BASE]
    uri = f"mlflow.tracking_uri=postgresql+psycopg2://u:{SECRET}@db.invalid/mlflow"
    dirs = [f"hydra.sweep.dir={tmp_path}/sweep", f"hydra.run.dir={tmp_path}/run"]
    args = [*(["-m", "model.n_neighbors=3,5"] if sweep else []), *base, "model=knn", uri, *dirs]
    result = train_in_process(tracking_uri, *args)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert SECRET not in output
    assert not leaks(tmp_path)
    saved = tmp_path / ("sweep/multirun.yaml" if sweep else "run/.hydra/overrides.yaml")
    assert "u:***@db.invalid" in saved.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("given", ["override", "environment"])
def test_store_reached_with_credentials(given: str, tmp_path: Path) -> None:
    """A tracking server's URI with user-info, typed as mlflow.tracking_uri or set as
    MLFLOW_TRACKING_URI: the sweep reaches the server (its reachability check sends them as
    MLflow's client does) and the password is nowhere: output, files, the server's store."""
    server = ["server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db"]
    server += ["--serve-artifacts", "--artifacts-destination", (tmp_path / "served").as_uri()]
    with mlflow_process(server, tmp_path / "server.log") as url:
        uri = url.replace("http://", f"http://u:{SECRET}@")
        base = [a.format(heart=HEART_CSV) for a in BASE]
        args = ["-m", *base, "model=knn", "model.n_neighbors=3,5", f"hydra.sweep.dir={tmp_path}/s"]
        if given == "override":
            result = cli("", "src.train", *args, f"mlflow.tracking_uri={uri}")
        else:
            result = cli(uri, "src.train", *args)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert SECRET not in output
    assert "Sweep parent run" in output
    assert not leaks(tmp_path)


def test_store_password_moves_out_of_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The typed URI is the one used (from MLFLOW_TRACKING_URI, which it moves to), its
    password gone from the config and its overrides."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    uri = f"http://u:{SECRET}@127.0.0.1:9/"
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        config = compose("config", [f"mlflow.tracking_uri={uri}"], return_hydra_config=True)
    keep_credentials_out(config)
    assert SECRET not in OmegaConf.to_yaml(config)
    assert config.hydra.overrides.task == ["mlflow.tracking_uri=http://u:***@127.0.0.1:9/"]
    assert resolve_tracking_uri(config.mlflow.tracking_uri) == uri


def test_reachability_check_sends_credentials() -> None:
    """A server that wants basic auth is reached with a URI's user-info; a refusal names the
    server without the password."""
    seen: list[str | None] = []

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(200 if seen[-1] else 401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        check_reachable(f"http://u:{SECRET}@127.0.0.1:{port}")
        assert seen == [f"Basic {base64.b64encode(f'u:{SECRET}'.encode()).decode()}"]
        with pytest.raises(TrackingError) as refused:
            check_reachable(f"http://u:{SECRET}@127.0.0.1:{free_port()}")
        assert SECRET not in str(refused.value)
        assert "http://u:***@127.0.0.1" in str(refused.value)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def logged_model(migrated_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A store holding one heart run with its model; the store's URI and the model's."""
    tmp = tmp_path_factory.mktemp("model")
    uri = new_store(migrated_store, tmp)
    args = [f"data.path={HEART_CSV}", "data=heart", "model=knn", "mlflow.log_plots=false"]
    result = train_in_process(uri, *args, f"hydra.run.dir={tmp}/run")
    found = re.search(r"\(([0-9a-f]{32})\) FINISHED", result.stdout)
    assert found, result.stdout + result.stderr
    return uri, f"runs:/{found.group(1)}/model"


HEART_HEADER = HEART_CSV.read_text().splitlines()[0].removesuffix(",num")
PREDICT_FAULTS = [  # (id, the input CSV's text, what is printed)
    ("empty", "", "in.csv' is empty"),
    ("header_only", HEART_HEADER + "\n", "in.csv' has a header but no rows"),
    (
        "text_in_number",
        HEART_HEADER + "\nabc" + ",1" * 12 + "\n",
        "column 'age' must hold numbers: data row 1",
    ),
]


@pytest.mark.parametrize(
    ("text", "says"), [p[1:] for p in PREDICT_FAULTS], ids=[p[0] for p in PREDICT_FAULTS]
)
def test_predict_fault(text: str, says: str, logged_model: tuple[str, str], tmp_path: Path) -> None:
    """`python -m src.predict` on bad input: one line, exit 1."""
    uri, model = logged_model
    (tmp_path / "in.csv").write_text(text)
    result = in_process(uri, "src.predict", "--model", model, "--input", str(tmp_path / "in.csv"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert says in result.stderr
    lines = [x for x in result.stderr.splitlines() if x.strip() and "Downloading" not in x]
    assert lines == [f"error: {lines[0].removeprefix('error: ')}"], result.stderr  # one line


def test_html_in_values_is_shown_not_run_in_the_summary(tracking_uri: str, tmp_path: Path) -> None:
    """A value (a label, a param) holding HTML is escaped in sweep_summary.md, which the MLflow
    UI renders: raw only inside code spans, where markdown shows it as written."""
    html = "<img src=x onerror=alert(1)>"
    heart_sweep(tracking_uri, tmp_path / "sweep", "model=knn", f"+notes='{html}',plain")
    text = (tmp_path / "sweep" / "sweep_summary.md").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "<img" not in re.sub(r"`[^`\n]*`", "", text), text


def test_a_failed_summary_still_counts_the_failed_jobs(tracking_uri: str, tmp_path: Path) -> None:
    """The summary cannot be written (here a folder where its file goes; a full disk alike):
    exit 1, the reason, and the closing count of failed jobs all the same."""
    (tmp_path / "sweep" / "sweep_summary.md").mkdir(parents=True)
    base = [a.format(heart=HEART_CSV) for a in BASE]
    args = [
        "-m",
        *base,
        "model=knn",
        "model.n_neighbors=5,500",
        f"hydra.sweep.dir={tmp_path}/sweep",
    ]
    result = train_in_process(tracking_uri, *args)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "failed: IsADirectoryError" in output
    assert "1 of 2 jobs failed" in output


def runs_by_status(uri: str) -> tuple[Counter, Counter]:
    """How many parents and children the store holds, by status (deleted runs aside)."""
    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    parents = Counter(r.info.status for r in runs if r.data.tags.get("sweep") == "true")
    children = Counter(r.info.status for r in runs if "mlflow.parentRunId" in r.data.tags)
    return parents, children


def check_invariants(uri: str) -> None:
    """What holds after any sweep: nothing RUNNING, every child under an existing parent, one
    best child at most, one child per configuration."""
    client = MlflowClient(uri)
    runs = [
        r
        for e in client.search_experiments(view_type=ViewType.ALL)
        for r in client.search_runs([e.experiment_id])
    ]
    ids = {r.info.run_id for r in runs}
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    for parent in [r for r in runs if r.data.tags.get("sweep") == "true"]:
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        best = [c for c in children if c.data.tags.get("best_in_sweep") == "true"]
        assert len(best) <= 1, [c.info.run_name for c in best]
        keys = Counter(c.data.tags.get("job_key") for c in children)
        assert max(keys.values(), default=1) == 1, keys
    orphans = [r for r in runs if r.data.tags.get("mlflow.parentRunId", r.info.run_id) not in ids]
    assert not orphans


@pytest.mark.parametrize(
    ("argument", "refused"),
    [
        ("+hydra.callbacks.x={_target_: builtins.print}", "hydra.callbacks.x._target_='builtins"),
        ("+hydra.callbacks={x: {_target_: os.getcwd}}", "hydra.callbacks.x._target_='os.getcwd'"),
        ("+hydra.callbacks.x._target_=antigravity.Fly", "(hydra.*, src.*)"),  # not imported
        ("+hydra.callbacks.x._target_=hydra.experimental.callbacks.LogJobReturnCallback", None),
        ("hydra.launcher._target_=hydra_plugins.x.Y", None),  # Hydra's: installed plugins only
        ("model._target_=builtins.open", None),  # ours, checked once composed (rows above)
    ],
)
def test_typed_hydra_targets(argument: str, refused: str | None) -> None:
    """What Hydra instantiates before our hooks, typed: a whole node or its key, checked
    without calling (or, for another package, importing) anything."""
    if refused is None:
        check_typed_hydra_targets(["-m", argument])
        return
    with pytest.raises(TargetError) as error:
        check_typed_hydra_targets(["-m", argument])
    assert refused in str(error.value)
    assert "antigravity" not in sys.modules
