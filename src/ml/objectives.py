"""A sweep's objectives (sweep.metric and sweep.direction, one or a list) and its constraints
(`model_bytes<=1e6`): parsed, and judged on a child's metrics."""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

DIRECTIONS = ("maximize", "minimize")
CONSTRAINT = re.compile(
    r"\s*(?P<metric>[A-Za-z_][\w.]*)\s*(?P<op><=|>=|<|>)\s*"
    r"(?P<bound>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
)
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}


class ObjectiveError(ValueError):
    """sweep.metric, sweep.direction or sweep.constraints cannot be read; the message says why."""


@dataclass(frozen=True)
class Constraint:
    """`metric op bound`: a child whose `metric` breaks it is infeasible."""

    metric: str
    op: str
    bound: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"

    def holds(self, value: float) -> bool:
        """Whether `value` keeps the constraint (a NaN never does)."""
        return not math.isnan(value) and OPERATORS[self.op](value, self.bound)

    def violation(self, value: float) -> float:
        """How far `value` breaks it, as Optuna's constraints take it: <= 0 kept, > 0 broken
        (a strict bound met exactly, or a NaN: broken, by 1)."""
        if math.isnan(value):
            return 1.0
        over = value - self.bound if self.op in ("<=", "<") else self.bound - value
        if self.holds(value):
            return min(over, 0.0)
        return over if over > 0 else 1.0


def as_list(value: object) -> list:
    """A setting that takes one value or a list (a ListConfig too), as a list."""
    if isinstance(value, (str, int, float)) or value is None:
        return [value]
    return list(value)  # type: ignore[call-overload]


def objectives(metric: object, direction: object) -> list[tuple[str, str]]:
    """(metric, direction) pairs of sweep.metric and sweep.direction; one direction serves every
    metric, otherwise there must be one per metric."""
    metrics, directions = as_list(metric), as_list(direction)
    if len(directions) == 1 and len(metrics) > 1:
        directions = directions * len(metrics)
    if len(metrics) != len(directions):
        raise ObjectiveError(
            f"sweep.metric has {len(metrics)} metrics ({', '.join(map(str, metrics))}) but "
            f"sweep.direction {len(directions)} directions ({', '.join(map(str, directions))}): "
            f"give one direction per metric, e.g. sweep.direction=[maximize,minimize]"
        )
    if len(set(map(str, metrics))) < len(metrics):
        raise ObjectiveError(f"sweep.metric={metrics} names a metric twice")
    return [(str(m), str(d)) for m, d in zip(metrics, directions, strict=True)]


def parse_constraint(text: object) -> Constraint:
    """`predict_ms_per_row<=0.05` as a Constraint."""
    found = CONSTRAINT.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        raise ObjectiveError(
            f"sweep.constraints: {text!r} is not a constraint; write <metric><=<number> (or "
            f">=, <, >), e.g. model_bytes<=1e6 (on the command line quoted: "
            f"'sweep.constraints=[\"model_bytes<=1e6\"]')"
        )
    return Constraint(found["metric"], found["op"], float(found["bound"]))


def parse_constraints(value: object) -> list[Constraint]:
    """sweep.constraints (null, one, or a list) as Constraints."""
    if value is None:
        return []
    return [parse_constraint(text) for text in as_list(value)]


def broken(constraints: Iterable[Constraint], metrics: Mapping[str, float]) -> list[str]:
    """The constraints `metrics` break (a metric not recorded breaks its constraint), as text."""
    return [str(c) for c in constraints if not c.holds(float(metrics.get(c.metric, math.nan)))]


def violations(constraints: Iterable[Constraint], metrics: Mapping[str, float]) -> dict[str, float]:
    """How far `metrics` break each constraint (by its text), as Optuna takes it: > 0 broken."""
    return {str(c): c.violation(float(metrics.get(c.metric, math.nan))) for c in constraints}


def metric_names(metric: object) -> list[str]:
    """sweep.metric (one, or a list) as a list of names; the first is the ranking metric."""
    return [str(m) for m in as_list(metric)]


def objective_tags(
    metric: object, direction: object, constraints: object, choose_by: object
) -> dict[str, str]:
    """A sweep's objectives as its parent run records them: `sweep_metric` and
    `sweep_direction` the first (what ranks the children), and with several objectives or
    constraints `sweep_objectives` and `sweep_constraints` (JSON) and `sweep_choose_by`."""
    pairs = objectives(metric, direction)
    tags = {"sweep_metric": pairs[0][0], "sweep_direction": pairs[0][1]}
    if len(pairs) > 1:
        tags["sweep_objectives"] = json.dumps(pairs)
        tags["sweep_choose_by"] = str(choose_by or pairs[0][0])
    if texts := [str(c) for c in parse_constraints(constraints)]:
        tags["sweep_constraints"] = json.dumps(texts)
    return tags


def sweep_objectives(tags: Mapping[str, str]) -> list[tuple[str, str]]:
    """The objectives a sweep's parent records (`objective_tags`), (metric, direction) pairs."""
    if "sweep_objectives" in tags:
        return [(str(m), str(d)) for m, d in json.loads(tags["sweep_objectives"])]
    return [(tags.get("sweep_metric", "cv_accuracy_mean"), tags.get("sweep_direction", "maximize"))]
