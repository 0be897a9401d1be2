"""Check a job's run settings (seed, cv, the data split, sweep.*, registry.*, mlflow.*) before
any run exists, each failure one line naming the key, the value and what is valid; and the
`_target_`s of Hydra's own nodes (callbacks, launcher) before Hydra instantiates them."""

from __future__ import annotations

import os
import re
import time
from pathlib import PurePosixPath
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from src.analysis.race import DEFAULT_RACE_ALPHA
from src.ml.data import DataError, check_test_size, load_dataset
from src.ml.evaluate import COST_METRICS, CV_SCORES, METRICS, PER_CLASS_METRIC, TEST_METRICS
from src.ml.objectives import DIRECTIONS, ObjectiveError, objectives, parse_constraints
from src.ml.pipeline import build_estimator
from src.ml.targets import TargetError, allowed_targets, config_targets, resolve_class
from src.sweep import composition
from src.sweep.overrides import task_overrides, unresolved
from src.sweep.search import first_values

MAX_SEED = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32 - 1]
MAX_NAME_BYTES = 255  # the experiment name names its artifact folder: one path component
RUN_ID = re.compile(r"[0-9a-f]{32}")
MODEL_FORMATS = ("cloudpickle", "skops", "pickle")
PREDICT_FNS = ("predict", "predict_proba")  # what a logged model's pyfunc (and server) answers
SELECTION_METRICS = tuple(f"cv_{name}_mean" for name in CV_SCORES)
# the test-split metrics and their cross-validated twins (the two tuples name the same scores)
CV_TWIN = dict(zip(TEST_METRICS, SELECTION_METRICS, strict=True))
PREFER = re.compile(r"(?P<key>[^:\s]+):(?P<way>max|min)")


MANY_JOBS = 200  # a grid this large says that its jobs are being checked, and how far
PROGRESS_EVERY_S = 5.0


class SettingsError(ValueError):
    """A setting has a value no run can use; the message names the key and what is valid."""


def check_settings(cfg: DictConfig) -> None:
    """Raise SettingsError for the first setting of `cfg` that no run can use."""
    missing = sorted(missing_values(cfg))
    if missing:
        raise SettingsError(
            f"{', '.join(missing)}: no value given; set it on the command line "
            f"({' '.join(f'{k}=...' for k in missing)})"
        )
    _integer("seed", cfg.seed, 0, MAX_SEED)
    _integer("cv.folds", cfg.cv.folds, 2, None)
    _integer("cv.repeats", cfg.cv.repeats, 1, None)
    _integer("cv.seed", cfg.cv.seed, 0, MAX_SEED)
    try:
        check_test_size(cfg.data.get("test_size"))
    except DataError as e:
        raise SettingsError(str(e)) from None
    sweep = cfg.sweep
    _boolean("sweep.select_on_test", sweep.select_on_test)
    check_objectives(sweep)
    alpha = sweep.alpha
    if not _is_number(alpha) or not 0 < alpha < 1:
        _fail("sweep.alpha", alpha, "a significance level between 0 and 1, e.g. 0.05")
    if sweep.prefer is not None and not (
        isinstance(sweep.prefer, str) and PREFER.fullmatch(sweep.prefer)
    ):
        _fail("sweep.prefer", sweep.prefer, "null or <param key>:max|min, e.g. model.C:min")
    check_race(cfg)
    beat = sweep.heartbeat_s
    if not _is_number(beat) or not beat > 0:
        _fail("sweep.heartbeat_s", beat, "seconds between a running run's heartbeats, e.g. 30")
    if sweep.max_failures is not None:
        _integer("sweep.max_failures", sweep.max_failures, 0, None, "null or ")
    resume = sweep.resume
    if resume is not None and not (resume == "latest" or RUN_ID.fullmatch(str(resume))):
        _fail("sweep.resume", resume, "null, latest, or a parent run id (32 hex digits)")
    _boolean("sweep.compose_cache", sweep.get("compose_cache", True))
    _boolean("registry.enabled", cfg.registry.enabled)
    gain = cfg.registry.min_improvement
    if not _is_number(gain) or gain < 0:
        _fail("registry.min_improvement", gain, "a number >= 0")
    name = cfg.mlflow.experiment_name
    if not isinstance(name, str) or not name.strip():
        _fail("mlflow.experiment_name", name, "a non-empty name")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts or "." in name.split("/"):
        _fail(
            "mlflow.experiment_name",
            name,
            "a name, not a path (no leading /, no . or .. parts): it names the experiment's "
            "artifact folder, which must stay in the store's",
        )
    if len(name.encode()) > MAX_NAME_BYTES:
        raise SettingsError(
            f"mlflow.experiment_name is {len(name.encode())} bytes long; at most "
            f"{MAX_NAME_BYTES} (it names the experiment's artifact folder)"
        )
    _boolean("mlflow.log_plots", cfg.mlflow.log_plots)
    _boolean("mlflow.log_model", cfg.mlflow.log_model)
    if cfg.mlflow.model_format not in MODEL_FORMATS:
        _fail("mlflow.model_format", cfg.mlflow.model_format, " | ".join(MODEL_FORMATS))
    served = cfg.mlflow.get("pyfunc_predict_fn", "predict")
    if served not in PREDICT_FNS:
        _fail("mlflow.pyfunc_predict_fn", served, " | ".join(PREDICT_FNS))


def check_race(cfg: DictConfig) -> None:
    """sweep.race and sweep.race_alpha: a race needs rounds (cv.repeats >= 2) and folds to test
    on (a cross-validated sweep.metric, so not sweep.select_on_test)."""
    sweep = cfg.sweep
    race = sweep.get("race", False)
    _boolean("sweep.race", race)
    alpha = sweep.get("race_alpha", DEFAULT_RACE_ALPHA)
    if not _is_number(alpha) or not 0 < alpha < 1:
        _fail("sweep.race_alpha", alpha, "a significance level between 0 and 1, e.g. 0.025")
    if not race:
        return
    if cfg.cv.repeats < 2:
        raise SettingsError(
            f"sweep.race=true with cv.repeats={cfg.cv.repeats}: a race runs one CV repeat per "
            f"round, so one repeat leaves nothing to race; set cv.repeats=10 (up to 10 rounds)"
        )
    if sweep.select_on_test:
        raise SettingsError(
            "sweep.race=true with sweep.select_on_test=true: a race compares configurations "
            "on their CV folds; it cannot select on the test split"
        )


def check_objectives(sweep: DictConfig) -> None:
    """sweep.metric and sweep.direction (one, or lists of the same length: the objectives of a
    multi-objective sweep), and sweep.constraints on metrics a child records."""
    try:
        pairs = objectives(sweep.metric, sweep.direction)
        constraints = parse_constraints(sweep.get("constraints"))
    except ObjectiveError as e:
        raise SettingsError(str(e)) from None
    for metric, direction in pairs:
        check_metric(metric, sweep.select_on_test)
        if direction not in DIRECTIONS:
            _fail("sweep.direction", direction, "maximize or minimize (or a list of them)")
    if len(pairs) > 1 and sweep.get("race", False) is True:
        raise SettingsError(
            f"sweep.race=true with {len(pairs)} objectives: a race eliminates on one metric; "
            f"race a single sweep.metric, or sweep all objectives without sweep.race"
        )
    choose_by = sweep.get("choose_by")
    if choose_by is not None and choose_by not in [m for m, _ in pairs]:
        _fail("sweep.choose_by", choose_by, f"null or one of sweep.metric: {[m for m, _ in pairs]}")
    for constraint in constraints:
        if not (constraint.metric in METRICS or PER_CLASS_METRIC.fullmatch(constraint.metric)):
            _fail(
                "sweep.constraints",
                str(constraint),
                f"a constraint on a metric every child records: {', '.join(METRICS)}",
            )


def check_metric(metric: object, select_on_test: bool) -> None:
    """sweep.metric must be a cross-validated score (cv_<score>_mean) or a cost
    (cv_fit_time_mean, predict_ms_per_row, model_bytes); any metric a child records only with
    sweep.select_on_test, which then selects on what it reports."""
    if metric in SELECTION_METRICS or metric in COST_METRICS:
        return
    if isinstance(metric, str) and select_on_test:
        if metric in METRICS or PER_CLASS_METRIC.fullmatch(metric):
            return
        _fail("sweep.metric", metric, f"one of {', '.join(METRICS)} (or class_<label>_f1, ...)")
    if metric in CV_TWIN:
        raise SettingsError(
            f"sweep.metric={metric!r} is a score on the test split: selecting on it tunes to the "
            f"test set. Did you mean {CV_TWIN[metric]}? (To select on the test split on purpose: "
            f"sweep.select_on_test=true)"
        )
    _fail(
        "sweep.metric",
        metric,
        f"one of {', '.join(SELECTION_METRICS + COST_METRICS)} (the cross-validated scores "
        f"and the costs; any other metric a child records only with sweep.select_on_test=true)",
    )


def missing_values(cfg: DictConfig) -> set[str]:
    """The keys left `???` (mandatory, not given), Hydra's own config aside."""
    missing = set()
    for key in cfg:
        if key == "hydra":
            continue
        if OmegaConf.is_missing(cfg, str(key)):
            missing.add(str(key))
        elif isinstance(node := cfg[key], DictConfig):
            missing |= OmegaConf.missing_keys(node)  # full keys: data.path
    return missing


def check_folds(folds: int, y_train: Any, data_name: str) -> None:
    """cv.folds must not exceed the training rows of the smallest class (each fold needs one)."""
    smallest = int(y_train.value_counts().min())
    if folds > smallest:
        raise SettingsError(
            f"cv.folds={folds} is more than the {smallest} training rows of the smallest class "
            f"of data={data_name}; use at most cv.folds={smallest}"
        )


def _boolean(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(key, value, "true or false")


def _integer(key: str, value: Any, low: int, high: int | None, also: str = "") -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        upper = f" and <= {high}" if high is not None else ""
        _fail(key, value, f"{also}a whole number >= {low}{upper}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fail(key: str, value: Any, valid: str) -> None:
    raise SettingsError(f"{key}={value!r} is not valid; use {valid}")


_ABSENT = object()


def validate_jobs(config: DictConfig, jobs: list[list[str]] | None) -> str:
    """Compose every job's config and build its model and data, so that bad input fails before
    the parent run exists. With sweep.compose_cache (the default), composition goes through
    `composition.CachingConfigLoader` (once per distinct set of group choices), which then
    serves the launcher and Hydra's own batch check the same configs from its cache (without it,
    it composes each with Hydra's code; either way it keeps passwords out of them). Returns
    the experiment the jobs go to (one for all of them)."""
    cached = config.sweep.get("compose_cache", True)
    loader = composition.install(cache=bool(cached))
    if jobs is None:  # the sweeper picks values later: what is fixed, and one of each range
        parsed = OverridesParser.create().parse_overrides(task_overrides(config))
        jobs = [[str(o.input_line) for o in parsed if not o.is_sweep_override()]]
        jobs[0] += first_values(config, task_overrides(config))
    seen_data: set[tuple[str, int]] = set()
    names: set[str] = set()
    prefer = config.sweep.get("prefer")
    preferred_key = str(prefer).partition(":")[0] if prefer else None
    have_key = False
    many = len(jobs) >= MANY_JOBS
    if many:  # composing each takes a while: say so before the first line would come
        print(f"Checking {len(jobs)} jobs before the sweep starts ...", flush=True)
    said = time.monotonic()
    for number, job in enumerate(jobs, 1):
        if many and time.monotonic() - said >= PROGRESS_EVERY_S:
            print(f"  {number - 1} of {len(jobs)} jobs checked", flush=True)
            said = time.monotonic()
        cfg = loader.load_sweep_config(config, job)
        names.add(experiment_name(cfg))
        check_settings(cfg)
        if config.sweep.get("race", False) is True and cfg.cv.repeats != config.cv.repeats:
            raise SettingsError(
                f"sweep.race=true: cv.repeats is the race's number of rounds, one for every "
                f"job, so it cannot be swept (job {number} has cv.repeats={cfg.cv.repeats}, the "
                f"sweep {config.cv.repeats})"
            )
        if preferred_key and not have_key:
            have_key = OmegaConf.select(cfg, preferred_key, default=_ABSENT) is not _ABSENT
        build_estimator(cfg.model, allowed_targets(cfg))
        data_key = (OmegaConf.to_yaml(cfg.data, resolve=True), int(cfg.cv.folds))
        if data_key not in seen_data:
            seen_data.add(data_key)
            data = load_dataset(cfg.data)
            check_folds(cfg.cv.folds, data.y_train, str(cfg.data.name))
    if preferred_key and not have_key:
        raise SettingsError(
            f"sweep.prefer={prefer!r} names {preferred_key!r}, which no job's config has; use a "
            f"param key as the children record it, e.g. model.n_neighbors:max"
        )
    if len(names) > 1:
        raise SettingsError(
            f"mlflow.experiment_name differs between the jobs ({', '.join(sorted(names))}): a "
            f"sweep is one parent run in one experiment; sweep each experiment on its own"
        )
    return names.pop()


def experiment_name(cfg: DictConfig) -> str:
    """`cfg`'s mlflow.experiment_name, resolved as Hydra would for that job (it may use
    `${hydra:runtime.choices.model}`, which reads the running job's Hydra config)."""
    if "${hydra:" in str(unresolved(cfg.mlflow)["experiment_name"]):
        HydraConfig.instance().set_config(cfg)
    return str(cfg.mlflow.experiment_name)


def check_typed_hydra_targets(arguments: list[str]) -> None:
    """The `_target_`s typed on the command line (`arguments`, as Hydra gets them) under
    hydra.callbacks and hydra.launcher, checked before Hydra runs: it instantiates every
    callback as soon as it has composed the config, before any hook of ours. A callback must
    name a Hydra `Callback` class of Hydra's or this app's (imported, nothing called; a module
    of another package is not even imported) and holds no nested `_target_`; a
    launcher's own `_target_` is Hydra's to check (an installed plugin class), any other under
    it is refused. Overrides Hydra cannot parse are left to Hydra's own message."""
    from hydra.experimental.callback import Callback

    parser = OverridesParser.create()
    for argument in arguments:
        if argument.startswith("-") or "=" not in argument:
            continue
        try:
            override = parser.parse_overrides([argument])[0]
            values = (
                list(override.sweep_iterator())
                if override.is_sweep_override()
                else [override.value()]
            )
        except Exception:  # noqa: BLE001 - Hydra reports a malformed override itself
            continue
        key = str(override.key_or_group)
        if not key.startswith(("hydra.callbacks", "hydra.launcher")):
            continue
        for value in values:
            if isinstance(value, dict):  # a whole node: +hydra.callbacks.x={_target_: ...}
                found = list(config_targets(value, key))
            else:
                found = [(key, value)] if key.endswith("._target_") else []
            for name, target in found:
                _check_hydra_target(name, target, Callback)


def _check_hydra_target(key: str, target: Any, callback: type) -> None:
    parts = key.split(".")
    if parts[:2] == ["hydra", "launcher"]:
        if key != "hydra.launcher._target_":
            raise TargetError(f"{key}={target!r} is not allowed: a launcher takes no _target_")
        return
    if len(parts) != 4 or parts[3] != "_target_":  # hydra.callbacks.<name>._target_
        raise TargetError(f"{key}={target!r} is not allowed: a callback takes no nested _target_")
    ours = isinstance(target, str) and target.startswith(("src.", "hydra."))
    if not ours or not issubclass(resolve_class(key, target, target.split(".")[0]), callback):
        raise TargetError(
            f"{key}={target!r} is not allowed: a callback typed on the command line must be a "
            f"Hydra Callback class of Hydra's or this app's (hydra.*, src.*); name others in a "
            f"conf file"
        )


def check_launcher(config: DictConfig) -> None:
    """hydra.launcher.n_jobs (the joblib launcher's workers), when the launcher has it, is a
    count joblib takes: >= 1, or negative for all CPUs but some (-1: one per CPU). No
    `_target_` inside the launcher's options (Hydra would call it as it makes the launcher)."""
    for key, target in config_targets(config.hydra.launcher, "hydra.launcher"):
        if key != "hydra.launcher._target_":
            raise TargetError(f"{key}={target!r} is not allowed: a launcher takes no _target_")
    n_jobs = OmegaConf.select(config, "hydra.launcher.n_jobs", default=None)
    if n_jobs is None:
        return
    cpus = os.cpu_count() or 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -cpus:
        raise SettingsError(
            f"hydra.launcher.n_jobs={n_jobs!r} is not valid; use a number of workers >= 1, or "
            f"-1 for one per CPU (down to -{cpus} on this machine)"
        )
