"""sweep.metric and sweep.direction as lists, sweep.constraints: parsed, judged, checked."""

from __future__ import annotations

import math

import pytest

from src.ml.objectives import (
    Constraint,
    ObjectiveError,
    broken,
    objective_tags,
    objectives,
    parse_constraint,
    sweep_objectives,
    violations,
)
from src.sweep.checks import SettingsError, check_settings

from ..helpers import compose_cfg

MULTI = ["sweep.metric=[cv_accuracy_mean,cv_fit_time_mean]", "sweep.direction=[maximize,minimize]"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model_bytes<=1e6", Constraint("model_bytes", "<=", 1e6)),
        (" predict_ms_per_row < 0.05 ", Constraint("predict_ms_per_row", "<", 0.05)),
        ("cv_accuracy_mean>=.8", Constraint("cv_accuracy_mean", ">=", 0.8)),
        ("cv_fit_time_mean>-1E-3", Constraint("cv_fit_time_mean", ">", -1e-3)),
    ],
)
def test_constraints_parse(text, expected) -> None:
    assert parse_constraint(text) == expected


@pytest.mark.parametrize("text", ["model_bytes=<1e6", "model_bytes<=", "<=3", "a<=1<=2", 5, ""])
def test_unparseable_constraint_is_refused(text) -> None:
    with pytest.raises(ObjectiveError, match="is not a constraint"):
        parse_constraint(text)


def test_a_constraint_is_kept_or_broken_and_says_by_how_much() -> None:
    at_most = Constraint("model_bytes", "<=", 100.0)
    assert at_most.holds(100.0) and not at_most.holds(101.0) and not at_most.holds(math.nan)
    assert at_most.violation(90.0) == -10.0 and at_most.violation(130.0) == 30.0
    strict = Constraint("cv_accuracy_mean", ">", 0.8)
    assert strict.violation(0.8) > 0 and strict.violation(0.9) < 0 and strict.violation(0.7) > 0
    metrics = {"model_bytes": 130.0, "cv_accuracy_mean": 0.9}
    assert violations([at_most, strict], metrics) == pytest.approx(
        {"model_bytes<=100": 30.0, "cv_accuracy_mean>0.8": -0.1}
    )
    assert broken([at_most, strict, Constraint("tp", ">=", 1)], metrics) == [
        "model_bytes<=100",
        "tp>=1",  # not recorded: broken
    ]


def test_objectives_pair_metrics_with_directions() -> None:
    assert objectives("cv_f1_mean", "maximize") == [("cv_f1_mean", "maximize")]
    assert objectives(["a", "b"], "minimize") == [("a", "minimize"), ("b", "minimize")]
    with pytest.raises(ObjectiveError, match="2 metrics .* but sweep.direction 3 directions"):
        objectives(["a", "b"], ["maximize", "minimize", "maximize"])
    with pytest.raises(ObjectiveError, match="names a metric twice"):
        objectives(["a", "a"], "maximize")


def test_the_parent_records_the_objectives_and_reads_them_back() -> None:
    single = objective_tags("cv_accuracy_mean", "maximize", [], None)
    assert single == {"sweep_metric": "cv_accuracy_mean", "sweep_direction": "maximize"}
    tags = objective_tags(["a", "b"], ["maximize", "minimize"], ["b<=1"], None)
    assert tags["sweep_metric"] == "a" and tags["sweep_choose_by"] == "a"
    assert tags["sweep_constraints"] == '["b<=1"]'
    assert sweep_objectives(tags) == [("a", "maximize"), ("b", "minimize")]
    assert sweep_objectives(single) == [("cv_accuracy_mean", "maximize")]
    assert objective_tags(["cv_accuracy_mean"], ["maximize"], [], None) == single  # one in a list


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (MULTI, None),
        ([*MULTI, 'sweep.constraints=["model_bytes<=1e6","predict_ms_per_row<=0.05"]'], None),
        ([*MULTI[:1], "sweep.direction=[maximize]"], None),  # one direction for both
        (
            [*MULTI[:1], "sweep.direction=[maximize,minimize,minimize]"],
            "sweep.metric has 2 metrics (cv_accuracy_mean, cv_fit_time_mean) but "
            "sweep.direction 3 directions",
        ),
        (["sweep.metric=[cv_accuracy_mean,speed]"], "sweep.metric='speed' is not valid"),
        (["sweep.metric=[cv_accuracy_mean,test_accuracy]"], "is a score on the test split"),
        ([*MULTI[:1], "sweep.direction=[maximize,down]"], "sweep.direction='down' is not valid"),
        (['sweep.constraints=["model_bytes=<1e6"]'], "'model_bytes=<1e6' is not a constraint"),
        (['sweep.constraints=["speed<=1"]'], "sweep.constraints='speed<=1' is not valid"),
        ([*MULTI, "sweep.choose_by=model_bytes"], "sweep.choose_by='model_bytes' is not valid"),
        ([*MULTI, "sweep.race=true", "cv.repeats=3"], "sweep.race=true with 2 objectives"),
    ],
)
def test_objective_settings_are_checked(overrides, message) -> None:
    cfg = compose_cfg(*overrides)
    if message is None:
        check_settings(cfg)
        return
    with pytest.raises(SettingsError) as error:
        check_settings(cfg)
    assert message in str(error.value) and "\n" not in str(error.value)
