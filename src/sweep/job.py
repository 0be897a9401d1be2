"""One job's work (the task function): fit and evaluate a configuration, record it as a run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from sklearn.pipeline import Pipeline

from src.ml.data import Dataset, load_dataset
from src.ml.evaluate import TEST_METRICS, evaluate
from src.ml.pipeline import build_pipeline
from src.ml.plots import save_child_plots
from src.ml.targets import allowed_targets
from src.sweep.checks import check_folds, check_settings
from src.sweep.context import current_sweep
from src.sweep.overrides import (
    child_run_name,
    group_choices,
    job_number,
    job_overrides,
    job_tags,
    model_choice,
)
from src.sweep.search import trial_tags
from src.tracking.child_run import (
    RunScore,
    flatten_config,
    job_run,
    log_results,
    log_sklearn_model,
    node_tags,
)
from src.tracking.process import git_info
from src.tracking.store import (
    RunTarget,
    check_credentials_here,
    ensure_experiment,
    redact_text,
    resolve_tracking_uri,
    ui_url,
    with_retries,
    without_credentials,
)


def train(cfg: DictConfig) -> float:
    """Fit and evaluate `cfg`, record it in MLflow, and return the selection metric."""
    ctx = current_sweep()
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
        result = evaluate(pipeline, data, cfg.cv.folds, cfg.cv.seed, cfg.cv.repeats)
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
            log_results(
                client, run_id, params, result.metrics, artifacts, model_id, result.fold_scores,
                splits,
            )  # fmt: skip
    if ctx is None:
        print(describe_single_run(cfg, target, run_id, result.metrics), flush=True)
    return RunScore(result.metrics[str(cfg.sweep.metric)], run_id)


def describe_single_run(
    cfg: DictConfig, target: RunTarget, run_id: str, metrics: dict[str, float]
) -> str:
    """What a finished single run prints: its name and id, the selection metric, the test
    metrics, and where to look (the UI, the artifact folder)."""
    run = MlflowClient(target.tracking_uri).get_run(run_id)
    metric = str(cfg.sweep.metric)
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


def prepare(cfg: DictConfig) -> tuple[Dataset, Pipeline]:
    """Check the run settings, load and split the data, and build the (unfitted) pipeline."""
    check_settings(cfg)
    data = load_dataset(cfg.data)
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
