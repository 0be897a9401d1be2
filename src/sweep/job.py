"""One job's work (the task function): fit and evaluate a configuration, record it as a run."""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from sklearn.pipeline import Pipeline

from src.analysis.verdict import fold_metric
from src.ml.data import Dataset, load_dataset
from src.ml.evaluate import TEST_METRICS, cross_validation, evaluate
from src.ml.objectives import broken, metric_names, parse_constraints, violations
from src.ml.pipeline import build_pipeline
from src.ml.plots import save_child_plots
from src.ml.targets import allowed_targets
from src.sweep.checks import SettingsError, check_folds, check_settings
from src.sweep.composition import compose_job
from src.sweep.context import current_sweep
from src.sweep.overrides import (
    child_run_name,
    group_choices,
    job_number,
    job_overrides,
    job_tags,
    model_choice,
)
from src.sweep.racing import RACE_FOLDS, RoundError, RoundFolds, race_block, race_round
from src.sweep.search import trial_tags
from src.tracking.child_run import (
    RunScore,
    flatten_config,
    fold_values,
    job_run,
    log_results,
    log_round,
    log_sklearn_model,
    node_tags,
    run_score,
)
from src.tracking.interrupts import stop_if_requested
from src.tracking.process import git_info
from src.tracking.store import (
    ATTEMPT_TAG,
    RunTarget,
    check_credentials_here,
    ensure_experiment,
    redact_text,
    resolve_tracking_uri,
    ui_url,
    with_retries,
    without_credentials,
)


def train(cfg: DictConfig) -> Any:
    """Fit and evaluate `cfg`, record it in MLflow, and return the selection metric (one value
    per objective when sweep.metric is a list); a race's later round of a block of
    configurations returns each one's folds instead."""
    ctx = current_sweep()
    race = race_round() if ctx is not None else None
    if ctx is None and cfg.sweep.get("race", False) is True:
        raise SettingsError(
            "sweep.race=true races the jobs of a sweep: add -m and the values to sweep "
            "(a single run runs every fold)"
        )
    if race is not None and (block := race_block()) is not None:
        return run_block(cfg, race[0], block)
    if race is not None and race[0] > 0:
        return next_round(cfg, *race)
    # a single run checks its input before its run exists; a sweep checked every job's before
    # its parent existed, so what still fails in a job is recorded on the job's FAILED child
    prepared = prepare(cfg) if ctx is None else None
    target, overrides = run_target(cfg), job_overrides()
    swept = ctx.swept if ctx is not None else ()
    attempt = ctx.attempt if ctx is not None else None
    tags = job_tags(cfg, overrides, job_number(), attempt) | trial_tags() | node_tags()
    run_name = child_run_name(cfg, overrides, swept)
    with job_run(target, run_name, tags) as run_id:
        data, pipeline = prepared or prepare(cfg)
        repeat = 0 if race is not None else None  # a race's first round: the first repeat
        result = evaluate(pipeline, data, cfg.cv.folds, cfg.cv.seed, cfg.cv.repeats, repeat)
        params = flatten_config(cfg) | group_choices()
        params |= {"model": model_choice(cfg), "data": str(cfg.data.name)}
        params.pop("sweep.resume", None)  # how this attempt started, not the job's config
        # the store the run went to (MLFLOW_TRACKING_URI wins over the config), no password
        params["mlflow.tracking_uri"] = without_credentials(target.tracking_uri)
        with tempfile.TemporaryDirectory() as tmp:
            artifacts = Path(tmp)
            model_id = log_model(cfg, target, run_id, pipeline, data, params)
            if cfg.mlflow.log_plots:
                title = f"{run_name} ({cfg.data.name}, run {run_id[:8]})"
                save_child_plots(pipeline, data, result, artifacts / "plots", title)
            (artifacts / "config").mkdir()
            # a password in a URI (a config file's tracking_uri) is not the run's to record
            config_yaml = redact_text(OmegaConf.to_yaml(cfg, resolve=True))
            (artifacts / "config" / "config.yaml").write_text(config_yaml)
            (artifacts / "config" / "overrides.yaml").write_text(
                redact_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
            )
            client = MlflowClient(target.tracking_uri)
            n_train, n_test = result.fold_sizes
            splits = {  # what pairs two children's folds (with cv.seed, cv.folds, cv.repeats)
                "data.train_fingerprint": data.train_fingerprint,
                "cv.n_train": str(n_train),
                "cv.n_test": str(n_test),
            }
            metrics = result.metrics
            if race is not None:
                metrics = metrics | {RACE_FOLDS: float(cfg.cv.folds)}
            splits |= feasibility_tags(cfg, metrics)
            log_results(
                client, run_id, params, metrics, artifacts, model_id, result.fold_scores,
                splits, fold_tag=race is None,
            )  # fmt: skip
    if ctx is None:
        print(describe_single_run(cfg, target, run_id, result.metrics), flush=True)
    names = metric_names(cfg.sweep.metric)
    constraints = parse_constraints(cfg.sweep.get("constraints"))
    if race is None:
        return run_score(result.metrics, run_id, names, violations(constraints, result.metrics))
    folds = result.fold_scores[str(fold_metric(names[0]))]
    return RunScore(
        result.metrics[names[0]], run_id, tuple(folds), result.fold_sizes,
        fold_scores=result.fold_scores,
    )  # fmt: skip


def feasibility_tags(cfg: DictConfig, metrics: dict[str, float]) -> dict[str, str]:
    """With sweep.constraints: `feasible` (true or false) and, when false, `infeasible`, the
    constraints the run breaks; nothing without constraints."""
    constraints = parse_constraints(cfg.sweep.get("constraints"))
    if not constraints:
        return {}
    if not (broke := broken(constraints, metrics)):
        return {"feasible": "true"}
    return {"feasible": "false", "infeasible": ", ".join(broke)}


# per process: a race's configurations as a later round's job prepared them (run name, data,
# unfitted pipeline, cv.folds, cv.seed, cv.repeats), by the attempt and the job's overrides:
# its next round, if this process runs it, neither composes nor builds again (cross_validate
# clones the pipeline)
Prepared = tuple[str, Dataset, Pipeline, int, int, int]
_prepared: OrderedDict[tuple[str, ...], Prepared] = OrderedDict()
MAX_PREPARED = 1024


def _remember(key: tuple[str, ...], prepared: Prepared) -> None:
    _prepared[key] = prepared
    while len(_prepared) > MAX_PREPARED:
        _prepared.popitem(last=False)


def run_block(
    cfg: DictConfig, round_index: int, block: list[tuple[str, list[str]]]
) -> list[RoundFolds | RoundError]:
    """A raced grid's later round of a block of configurations, (the run its first round made,
    its job's overrides) each, `cfg` the first's: each one's next CV repeat, returned for the
    race's judge to record on its run (none is touched here); one that fails returns its
    error, and the others go on."""
    ctx = current_sweep()
    assert ctx is not None
    results: list[RoundFolds | RoundError] = []
    for n, (run_id, overrides) in enumerate(block):
        stop_if_requested()
        try:
            key = (ctx.attempt, *overrides)
            if key not in _prepared:
                config = cfg if n == 0 else compose_job(overrides)
                cv = (int(config.cv.folds), int(config.cv.seed), int(config.cv.repeats))
                name = child_run_name(config, overrides, ctx.swept)
                _remember(key, (name, *prepare(config, checked=True), *cv))
            name, data, pipeline, folds, seed, repeats = _prepared[key]
            scores, sizes = cross_validation(pipeline, data, folds, seed, repeats, round_index)
        except Exception as e:
            results.append(RoundError.of(run_id, e))
        else:
            results.append(RoundFolds(run_id, name, scores, sizes))
    return results


def next_round(cfg: DictConfig, round_index: int, run_id: str | None) -> float:
    """A pruned search's later round of a trial: the next CV repeat of the configuration, its
    folds appended to the run its first round made (steps go on), its `cv_*_mean` and
    `cv_*_std` over every fold so far logged at step = the round; the test metrics, model and
    plots stay the first round's."""
    ctx = current_sweep()
    assert ctx is not None
    if run_id is None:
        raise RuntimeError(f"race round {round_index + 1}: its first round recorded no run")
    target = ctx.target
    client = MlflowClient(target.tracking_uri)
    name = child_run_name(cfg, job_overrides(), ctx.swept)
    folds = int(cfg.cv.folds)
    with job_run(target, name, {ATTEMPT_TAG: ctx.attempt}, run_id=run_id):
        data, pipeline = prepare(cfg, checked=True)
        scores, sizes = cross_validation(
            pipeline, data, folds, cfg.cv.seed, cfg.cv.repeats, round_index
        )
        so_far = {}
        for key, new in scores.items():
            earlier = fold_values(client, run_id, key)
            if len(earlier) != round_index * folds:  # a round lost or run twice
                raise RuntimeError(
                    f"race round {round_index + 1}: run {run_id} holds {len(earlier)} folds of "
                    f"{key}, not the {round_index * folds} of the rounds before"
                )
            so_far[key] = earlier + new
        log_round(client, run_id, scores, so_far, round_index, folds, round_index + 1 == ctx.rounds)
    key = str(fold_metric(metric_names(cfg.sweep.metric)[0]))
    mean = sum(so_far[key]) / len(so_far[key])
    return RunScore(mean, run_id, tuple(so_far[key]), sizes)


def describe_single_run(
    cfg: DictConfig, target: RunTarget, run_id: str, metrics: dict[str, float]
) -> str:
    """What a finished single run prints: its name and id, the selection metric, the test
    metrics, and where to look (the UI, the artifact folder)."""
    run = MlflowClient(target.tracking_uri).get_run(run_id)
    metric = metric_names(cfg.sweep.metric)[0]
    spread = metrics.get(metric.removesuffix("_mean") + "_std")
    plus = f" ± {spread:.4f}" if metric.endswith("_mean") and spread is not None else ""
    tests = ", ".join(f"{m}={metrics[m]:.4f}" for m in TEST_METRICS if m in metrics)
    artifacts = run.info.artifact_uri.removeprefix("file://")
    served = "" if target.tracking_uri.startswith("http") else "  (make ui serves it)"
    ui = without_credentials(ui_url(target.tracking_uri))
    link = f"{ui}/#/experiments/{target.experiment_id}/runs/{run_id}"
    return "\n".join(
        [
            f"Run {run.info.run_name!r} ({run_id}) FINISHED in experiment "
            f"{cfg.mlflow.experiment_name!r} at {without_credentials(target.tracking_uri)}",
            f"  {metric} = {metrics[metric]:.4f}{plus}",
            f"  test: {tests}",
            f"  MLflow UI: {link}{served}",
            f"  Artifacts: {artifacts}",
        ]
    )


def prepare(cfg: DictConfig, checked: bool = False) -> tuple[Dataset, Pipeline]:
    """Check the run settings (unless `checked`: a race's later round, its first round did),
    load and split the data, and build the (unfitted) pipeline."""
    if not checked:
        check_settings(cfg)
    data = load_dataset(cfg.data)
    if not checked:
        check_folds(cfg.cv.folds, data.y_train, str(cfg.data.name))
    allowed = allowed_targets(cfg)
    return data, build_pipeline(cfg.model, data.X_train, data.categorical, allowed)


def log_model(
    cfg: DictConfig,
    target: RunTarget,
    run_id: str,
    pipeline: Any,
    data: Dataset,
    params: dict[str, str],
) -> str | None:
    """Log the fitted pipeline as the run's model (if `mlflow.log_model`); its logged model id.

    The model goes before the metrics, given the params itself: MLflow would otherwise re-read
    the run's params and every metric's history to copy them onto it (a query per metric); the
    metrics, logged next, name the model, as MLflow's own linking would."""
    if not cfg.mlflow.log_model:
        return None
    example = data.X_train.dropna().head(5)
    return with_retries(
        lambda: log_sklearn_model(
            target,
            run_id,
            pipeline,
            example,
            str(cfg.mlflow.model_format),
            params,
            str(cfg.mlflow.get("pyfunc_predict_fn", "predict")),
        )  # fmt: skip
    )


def run_target(cfg: DictConfig) -> RunTarget:
    """The sweep's parent and store inside a sweep; a top-level run in `cfg`'s store otherwise."""
    ctx = current_sweep()
    if ctx is not None:
        check_credentials_here(ctx.target)
        return ctx.target
    uri = resolve_tracking_uri(cfg.mlflow.tracking_uri)
    experiment_id = ensure_experiment(uri, cfg.mlflow.experiment_name)
    commit, dirty = git_info()
    return RunTarget(uri, experiment_id, None, commit, dirty, float(cfg.sweep.heartbeat_s))
