"""One job's work: fit and evaluate a configuration and record it as an MLflow run.

`src.train` is the Hydra entry point that calls `train`; this module holds the imports that take
time (mlflow, scikit-learn, pandas: ~3 s), so that they load only once a config is composed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from src import tracking
from src.data import Dataset, load_dataset
from src.evaluate import evaluate
from src.pipeline import build_pipeline
from src.recovery import job_key
from src.sweep import RunTarget, child_run_name, current_sweep, job_overrides, model_choice


def train(cfg: DictConfig) -> float:
    """Fit and evaluate `cfg`, record it in MLflow, and return the selection metric."""
    data = load_dataset(cfg.data)  # bad data or model config fails here, before any run exists
    pipeline = build_pipeline(cfg.model, data.X_train)
    target, overrides = run_target(cfg), job_overrides()
    ctx = current_sweep()
    swept = ctx.swept if ctx is not None else ()
    job_tags = {
        "hydra_overrides": " ".join(overrides),
        "job_key": job_key(overrides),
        "model": model_choice(cfg),
    }
    if (job_num := _job_num()) is not None:
        job_tags["job_number"] = str(job_num)
    with tracking.job_run(target, child_run_name(cfg, overrides, swept), job_tags) as run_id:
        result = evaluate(pipeline, data, cfg.cv.folds, cfg.seed)
        params = tracking.flatten_config(cfg) | {"model": model_choice(cfg), "data": cfg.data.name}
        pending = None
        with tempfile.TemporaryDirectory() as tmp:
            artifacts = Path(tmp)
            if cfg.mlflow.log_plots:
                from src.plots import start_child_plots  # matplotlib only when plots are wanted

                pending = start_child_plots(pipeline, data, result, artifacts / "plots")
            try:
                model_id = log_model(cfg, target, run_id, pipeline, data, params)
                (artifacts / "config").mkdir()
                config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
                (artifacts / "config" / "config.yaml").write_text(config_yaml)
                (artifacts / "config" / "overrides.yaml").write_text(
                    OmegaConf.to_yaml(OmegaConf.create(overrides))
                )
            finally:
                if pending is not None:  # the plots are written into `artifacts`
                    pending.wait()
            client = MlflowClient(target.tracking_uri)
            tracking.log_results(client, run_id, params, result.metrics, artifacts, model_id)
    return result.metrics[str(cfg.sweep.metric)]


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
    return tracking.with_retries(
        lambda: tracking.log_sklearn_model(
            target, run_id, pipeline, example, str(cfg.mlflow.model_format), params
        )
    )


def run_target(cfg: DictConfig) -> RunTarget:
    """The sweep's parent and store inside a sweep; a top-level run in `cfg`'s store otherwise."""
    ctx = current_sweep()
    if ctx is not None:
        return ctx.target
    uri = tracking.resolve_tracking_uri(cfg.mlflow.tracking_uri)
    experiment_id = tracking.ensure_experiment(uri, cfg.mlflow.experiment_name)
    commit, dirty = tracking.git_info()
    return RunTarget(uri, experiment_id, None, commit, dirty)


def _job_num() -> int | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    num = HydraConfig.get().job.get("num")
    return int(num) if num is not None else None
