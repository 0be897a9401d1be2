"""The model registry gate: register a sweep's best model, and make it the `champion` only if
it beats the current champion by enough, and significantly on the same CV folds."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlflow.entities import RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from src.analysis.ranking import SweepSummary, only_seeds
from src.analysis.verdict import (
    FOLD_SIZE_TAGS,
    fold_metric,
    fold_scores,
    fold_sizes,
    p_value_better,
    split_differences,
    split_record,
)
from src.ml.evaluate import TEST_METRICS
from src.tracking.store import using_store, with_retries

CHAMPION, CHALLENGER = "champion", "challenger"


class RegistryError(RuntimeError):
    """The sweep's best model cannot be registered; nothing was registered."""


@dataclass
class Decision:
    """What the gate decided for one registered version."""

    name: str
    version: str
    promoted: bool
    reason: str
    created: bool  # False when this run was already registered (no duplicate version)
    p_value: float | None = None  # the paired test against the champion, when there was one
    forced: bool = False  # promoted by --force, whatever the gate said
    source: str = ""  # the registered run, for the reader: name (id), metric=value


def default_model_name(experiment_name: str) -> str:
    """`heart-classification` -> `heart-classifier`."""
    base = experiment_name.removesuffix("-classification")
    return f"{base}-classifier"


def register_best(
    client: MlflowClient,
    summary: SweepSummary,
    name: str,
    min_improvement: float = 0.0,
    force: bool = False,
) -> Decision:
    """Register the best child's model as a version of `name` and run the promotion gate
    (`force`: promote whatever the gate says, recorded as forced)."""
    best = summary.best
    if best is None:
        raise RegistryError(
            f"sweep {summary.parent.info.run_id} has no finished child with a finite "
            f"{summary.metric}: nothing to register"
        )
    seeds = only_seeds(summary)
    if seeds:
        raise RegistryError(
            f"sweep {summary.parent.info.run_id} varies only seeds ({', '.join(seeds)}): its "
            f"best is the luckiest seed, not a better model; nothing registered"
        )
    # MLflow resolves the version's `models:/m-...` source through the process's store
    with using_store(client.tracking_uri):
        return _register(client, summary, best, name, min_improvement, force)


def _register(client, summary, best, name, min_improvement, force) -> Decision:
    """register_best's work, inside the store's MLflow state."""
    run = client.get_run(best["run_id"])
    score = float(run.data.metrics[summary.metric])
    model_id = logged_model_id(client, run)
    dataset = run.data.params.get("data", "unknown")
    existing = find_version(client, name, run.info.run_id)
    if existing is not None:
        version, created = existing, False
    else:
        version, created = create_version(client, name, run, model_id, summary, dataset), True
    evidence = gate(client, name, version, run, summary, min_improvement)
    forced = force and not evidence.promoted
    promoted = evidence.promoted or forced
    reason = evidence.reason
    if forced:  # recorded as forced, on the version and the sweep
        reason = f"forced by --force, although the gate said: {reason}"
        client.set_model_version_tag(name, version.version, "registry.forced", "true")
    if promoted:
        promote(client, name, version)
    elif client.get_model_version(name, version.version).aliases != [CHAMPION]:
        client.set_registered_model_alias(name, CHALLENGER, version.version)
    source = f"{run.info.run_name!r} ({run.info.run_id}), {summary.metric}={score:.4f}"
    decision = Decision(
        name, str(version.version), promoted, reason, created, evidence.p_value, forced, source
    )
    record_decision(client, summary.parent.info.run_id, decision)
    return decision


def logged_model_id(client: MlflowClient, run) -> str:
    """The id of the MLflow model `model` that a child run logged."""
    outputs = run.outputs.model_outputs if run.outputs else []
    if not outputs:
        raise RegistryError(
            f"the best child {run.info.run_name!r} ({run.info.run_id}) logged no model "
            f"(was the sweep run with mlflow.log_model=false?): nothing registered"
        )
    return outputs[0].model_id


def find_version(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The version of `name` already registered from `run_id`, if any."""
    try:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except MlflowException:
        return None
    return min(versions, key=lambda v: int(v.version)) if versions else None


def create_version(client, name, run, model_id, summary, dataset) -> ModelVersion:
    """A new version of `name` from the run's logged model, described and tagged."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description=f"Best models of {dataset} sweeps, promoted by src.register."
        )
    metrics = run.data.metrics
    tags = {
        "selection_metric": summary.metric,
        "selection_value": repr(float(metrics[summary.metric])),
        "selection_direction": summary.direction,
        "selection_rule": summary.rule[:5000],  # which child of the sweep, and why
        "dataset": dataset,
        "sweep_run_id": summary.parent.info.run_id,
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
    }
    tags |= {f"metric.{m}": repr(metrics[m]) for m in TEST_METRICS if m in metrics}
    # the CV folds it was scored on: the gate pairs two versions only on the same folds
    tags |= split_record(run) or {}
    tags |= {t: run.data.tags[t] for t in FOLD_SIZE_TAGS if t in run.data.tags}
    tags |= {
        f"param.{k}": v[:5000]
        for k, v in run.data.params.items()
        if k.startswith("model") or k in ("data", "seed")
    }
    source = f"models:/{model_id}"
    return client.create_model_version(  # waits until the version is READY
        name,
        source,
        run_id=run.info.run_id,
        tags=tags,
        model_id=model_id,
        description=(
            f"{run.info.run_name}: {summary.metric}={metrics[summary.metric]:.4f}, "
            f"best child of sweep {summary.parent.info.run_name!r}"
        ),
    )


@dataclass
class Evidence:
    """The gate's answer: promote or not, why, and the paired test's p-value if one was run."""

    promoted: bool
    reason: str
    p_value: float | None = None


def gate(client, name, version, run, summary: SweepSummary, min_improvement: float) -> Evidence:
    """Promote `version` (of the best child `run`) only if it beats the champion by at least
    min_improvement and is significantly better on the same CV folds (the sweep's alpha)."""
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return Evidence(True, f"no champion yet: version {version.version} becomes {CHAMPION}")
    if champion.version == version.version:
        return Evidence(True, f"version {version.version} is already the {CHAMPION}")
    metric, direction = summary.metric, summary.direction
    dataset = run.data.params.get("data", "unknown")
    tags = champion.tags
    if tags.get("dataset") != dataset or tags.get("selection_metric") != metric:
        return Evidence(False, (
            f"the {CHAMPION} (version {champion.version}) was selected on "
            f"{tags.get('dataset')}/{tags.get('selection_metric')}, this one on "
            f"{dataset}/{metric}: not comparable, so it stays the {CHAMPION}"
        ))  # fmt: skip
    score = float(run.data.metrics[metric])
    best_so_far = float(tags["selection_value"])
    gain = (score - best_so_far) if direction != "minimize" else (best_so_far - score)
    against = f"the {CHAMPION}'s {best_so_far:.4f} (version {champion.version})"
    if gain == 0:
        return Evidence(False, f"{metric} {score:.4f} ties {against}: the {CHAMPION} stays")
    if not (math.isfinite(gain) and gain > 0):
        return Evidence(
            False, f"{metric} {score:.4f} is worse than {against}: the {CHAMPION} stays"
        )
    if gain < min_improvement:
        return Evidence(False, (
            f"{metric} {score:.4f} beats {against} by {gain:.4f}, less than the "
            f"--min-improvement {min_improvement:g}: the {CHAMPION} stays"
        ))  # fmt: skip
    beats = f"{metric} {score:.4f} beats {against} by {gain:.4f}"
    key = fold_metric(metric)
    mine = split_record(run)
    differs = split_differences(mine, tags) if mine is not None else "no record of its CV folds"
    if key is None or differs:
        why = (
            f"{metric} is not cross-validated"
            if key is None
            else f"the {CHAMPION} was scored on other CV folds ({differs})"
        )
        return Evidence(False, (
            f"{beats}, but {why}: the score alone is no evidence, so it becomes the "
            f"{CHALLENGER} (--force promotes it anyway)"
        ))  # fmt: skip
    champion_run = client.get_run(champion.run_id)
    new, old = fold_scores(client, run, key), fold_scores(client, champion_run, key)
    sizes = fold_sizes(run)
    if new is None or old is None or len(new) != len(old) or not all(sizes):
        return Evidence(False, (
            f"{beats}, but the per-fold {key} scores of both are needed to compare them: "
            f"it becomes the {CHALLENGER} (--force promotes it anyway)"
        ))  # fmt: skip
    p_value = p_value_better(new, old, sizes, direction)
    alpha = summary.verdict.alpha
    test = f"one-sided corrected resampled t-test on {len(new)} paired folds: p = {p_value:.4f}"
    if p_value < alpha:
        return Evidence(True, f"{beats}, significantly ({test} < {alpha:g})", p_value)
    return Evidence(False, (
        f"{beats}, but not significantly ({test} >= {alpha:g}): it becomes the {CHALLENGER}"
    ), p_value)  # fmt: skip


def promote(client: MlflowClient, name: str, version: ModelVersion) -> None:
    """Point `champion` at `version`; the previous champion is tagged archived, history kept."""
    try:
        previous = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        previous = None
    client.set_registered_model_alias(name, CHAMPION, version.version)
    if previous is not None and previous.version != version.version:
        client.set_model_version_tag(name, previous.version, "archived", "true")
        client.set_model_version_tag(name, previous.version, "archived_by", version.version)
    if CHALLENGER in client.get_model_version(name, version.version).aliases:
        client.delete_registered_model_alias(name, CHALLENGER)


def record_decision(client: MlflowClient, parent_run_id: str, decision: Decision) -> None:
    """The decision as tags on the sweep's parent run."""
    tags = {
        "registry.model_name": decision.name,
        "registry.version": decision.version,
        "registry.decision": CHAMPION if decision.promoted else CHALLENGER,
        "registry.reason": decision.reason[:5000],
        "registry.p_value": "n/a" if decision.p_value is None else repr(decision.p_value),
        "registry.forced": str(decision.forced).lower(),
    }
    with_retries(
        lambda: client.log_batch(parent_run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    )


def describe(decision: Decision) -> str:
    """One paragraph for the terminal."""
    verb = "Registered" if decision.created else "Already registered (no new version):"
    role = CHAMPION if decision.promoted else CHALLENGER
    return (
        f"{verb} {decision.name} version {decision.version} -> {role}: the sweep's best child "
        f"{decision.source}\n"
        f"  {decision.reason}\n  load it: models:/{decision.name}@{role}"
    )
