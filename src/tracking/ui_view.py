"""The MLflow UI's view of one sweep: charts made for it, stored the way the UI's own "Save view"
stores a view (an experiment tag), and the link that opens it.

Everything this relies on of the UI's format is pinned here, read from the UI shipped with
MLflow 3.17 (its experiment page's shared-view loader); `tests/tracking/test_ui.py` opens a stored
view in Chromium and fails when a new MLflow stops reading it:
- the tag `mlflow.sharedViewState.<key>` on the experiment holds a JSON envelope
  `{name, createdAt, updatedAt, state}`, at most 20,000 characters, where `state` is
  `deflate;` + base64 of the zlib-compressed JSON of the page's state;
- `#/experiments/<id>/runs?viewStateShareKey=<key>&compareRunsMode=CHART` opens it in the chart
  view (no search facet may be in the link, or the UI skips the view);
- the state's search facets (`searchFilter`, `orderByKey`, ...) and chart cards
  (`compareRunCharts`: BAR, PARALLEL, SCATTER, LINE) and sections (`compareRunSections`, the
  UI's "Model metrics" and "System metrics" last, each with its `columns` per row and
  `cardHeight`; `isAccordionReordered` keeps them in the given order, else alphabetical);
  `runsHiddenMode: FIRST_10_RUNS` charts the first 10 rows (a bar card's `runsCountToCompare`
  is no longer read), a parallel card's `showAllRuns` every run; only a LINE card has log
  axes (`scaleType`, and `xAxisScaleType` for steps): a param is never on a log axis;
- in the chart view the run list shows run names only, at a width the view does not hold:
  `selectedColumns` are the table view's columns;
- children are listed flat (not under their parent, which a view cannot expand) when the runs
  are filtered by `tags.mlflow.parentRunId` and ordered by anything but the start time;
- the page loads the first 100 matching runs (its search's `max_results`; "Load more" adds the
  next 100) and charts only the runs it loaded: a sweep of more children is filtered to its best
  100 by the selection metric (`metrics.<metric> >= <the 100th best>`), so that the count the UI
  shows is true of the filter, and so that the store need not order every child (with 10,000
  children ordered by a metric, the page's first search takes seconds);
- the UI adds a chart for every logged metric no card names: named by deleted cards.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from src.tracking.store import with_retries

VIEW_TAG_PREFIX = "mlflow.sharedViewState."
SHARE_PARAM = "viewStateShareKey"
COMPRESSED = "deflate;"
MAX_TAG_VALUE = 20_000
UI_MARKERS = (VIEW_TAG_PREFIX, SHARE_PARAM, COMPRESSED)  # what the UI's main bundle must contain
SECTION = "sweep"  # the view's own section of charts


@dataclass(frozen=True)
class SweepView:
    """What a sweep's view charts."""

    experiment_id: str
    parent_run_id: str
    name: str  # the parent run's name: the view's name in the UI's list of views
    metric: str  # the selection metric
    direction: str  # maximize | minimize
    swept: tuple[str, ...]  # the swept param keys
    numeric: tuple[str, ...]  # those with numeric values: one scatter each
    tests: tuple[str, ...]  # the test metrics the children logged: one bar chart each
    folds: str | None  # the per-fold metric by step, if the children logged one
    logged: tuple[str, ...]  # every metric key the children logged
    cutoff: float | None = None  # the worst selection metric charted, when not every child is
    objectives: tuple[str, ...] = ()  # a multi-objective sweep's: a scatter of each pair


def card(kind: str, uuid: str, **fields: Any) -> dict[str, Any]:
    """A chart card of the UI's chart view, in the view's section."""
    common = {"uuid": uuid, "type": kind, "runsCountToCompare": 10, "metricSectionId": SECTION}
    return common | {"deleted": False, "isGenerated": False} | fields


def line(metric: str) -> dict[str, Any]:
    """A line chart of `metric` by step (the children's per-fold scores)."""
    return card(
        "LINE", f"line-{metric}", metricKey=metric, selectedMetricKeys=[metric],
        lineSmoothness=0, xAxisScaleType="linear", scaleType="linear", xAxisKey="step",
        selectedXAxisMetricKey="", yAxisKey="metric", yAxisExpressions=[], ignoreOutliers=False,
        useGlobalXaxisKey=False, useGlobalLineSmoothing=True, displayPoints=True,
    )  # fmt: skip


VISIBLE = 10  # the runs the view charts, best first: what a bar or line chart can show
PAGE = 100  # the runs the UI loads at first, and so the most a view can chart


def best_of(scores: list[float], direction: str) -> tuple[float | None, int]:
    """The worst selection metric the view charts when the finite `scores` are more than the UI
    loads (None when they are not), and how many children reach it: at most `PAGE`, a tie
    that would cross it left out (the page would show some of them); more only when over
    `PAGE` children tie at the best score itself (the page shows the first `PAGE` of them)."""
    if len(scores) <= PAGE:
        return None, len(scores)
    better = (lambda a, b: a > b) if direction != "minimize" else (lambda a, b: a < b)
    ordered = sorted(scores, reverse=direction != "minimize")
    cutoff = ordered[PAGE - 1]
    if better(cutoff, ordered[PAGE]):  # no tie across the page's end
        return cutoff, PAGE
    within = [s for s in ordered[:PAGE] if better(s, cutoff)]
    if not within:  # the best score alone is more than a page
        return cutoff, sum(s == cutoff for s in scores)
    return within[-1], len(within)


def charts_note(reach: int, children: int, metric: str) -> str:
    """What the view's charts show of a sweep with more children than the UI loads, given the
    `reach` of `best_of`; fewer than `PAGE` only when a tie would cross the page's end."""
    if reach > PAGE:
        return (
            f"its charts show {PAGE} of the {reach:,} children tied at the best {metric}: the "
            f"most the UI loads at once"
        )
    shown = f"its charts show the best {reach:,} of {children:,} children by {metric}"
    if reach == PAGE:
        return f"{shown}: the most the UI loads at once"
    return (
        f"{shown}: the UI loads {PAGE} at once, and the children tied at the next score "
        f"would not all fit"
    )


def search_filter(view: SweepView) -> str:
    """The runs the view shows: the sweep's children, or its best ones when they are too many."""
    children = f"tags.mlflow.parentRunId = '{view.parent_run_id}'"
    if view.cutoff is None:
        return children
    comparison = "<=" if view.direction == "minimize" else ">="
    return f"{children} and metrics.`{view.metric}` {comparison} {view.cutoff!r}"


TESTS = "tests"  # the section of the test metrics' charts
TRADEOFFS = "tradeoffs"  # the section of a multi-objective sweep's scatter charts


def charts(view: SweepView) -> list[dict[str, Any]]:
    """The sweep's charts: its question first (the best runs' selection metric, every run across
    the swept params, the metric against each numeric param, the best runs' folds), then the
    test metrics; a deleted card for every other logged metric (else the UI adds a chart for
    each)."""
    shown = view.objectives[:3]
    metric = {"type": "METRIC"}
    cards = [
        card(
            "SCATTER",
            f"tradeoff-{x}-{y}",
            metricSectionId=TRADEOFFS,
            xaxis=metric | {"key": x},
            yaxis=metric | {"key": y},
        )  # fmt: skip
        for i, y in enumerate(shown)
        for x in shown[i + 1 :]
    ]
    cards += [
        card("BAR", f"bar-{view.metric}", metricKey=view.metric),
        card(
            "PARALLEL",
            "parallel",
            selectedParams=list(view.swept),
            selectedMetrics=[view.metric],
            showAllRuns=True,  # the lines of every run: which values the good ones share
        ),  # fmt: skip
    ]
    for key in view.numeric:
        axes = {
            "xaxis": {"key": key, "type": "PARAM"},
            "yaxis": {"key": view.metric, "type": "METRIC"},
        }
        cards.append(card("SCATTER", f"scatter-{key}", **axes))
    if view.folds is not None:
        cards.append(line(view.folds))
    cards += [card("BAR", f"bar-{m}", metricSectionId=TESTS, metricKey=m) for m in view.tests]
    named = {c.get("metricKey") for c in cards}
    hidden = [m for m in view.logged if m not in named]
    cards += [
        card("BAR", f"hidden-{m}", metricKey=m, deleted=True, isGenerated=True) for m in hidden
    ]
    return cards


def view_state(view: SweepView) -> dict[str, Any]:
    """The page state the view restores: this sweep's children, best first, the best 10 charted
    (every one in the parallel coordinates), in large cards two to a row."""
    every = bool(view.objectives)  # a trade-off is read across every child, not the best 10
    sections = [
        {"uuid": TRADEOFFS, "name": f"Sweep {view.name}: trade-offs, every child",
         "display": True, "columns": 2, "cardHeight": 360},
    ] if every else []  # fmt: skip
    sections += [
        {"uuid": SECTION, "name": f"Sweep {view.name}: " + ("every child" if every else
         f"the best {VISIBLE}"), "display": True, "columns": 2, "cardHeight": 300},
        {"uuid": TESTS, "name": f"Sweep {view.name}: test metrics", "display": True,
         "columns": 3, "cardHeight": 260},
        {"uuid": "model", "name": "Model metrics", "display": False},
        {"uuid": "system", "name": "System metrics", "display": False},
    ]  # fmt: skip
    return {
        "searchFilter": search_filter(view),
        "orderByKey": f"metrics.`{view.metric}`",
        "orderByAsc": view.direction == "minimize",
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": [f"params.`{k}`" for k in view.swept] + [f"metrics.`{view.metric}`"],
        "runsHiddenMode": "SHOW_ALL" if every else f"FIRST_{VISIBLE}_RUNS",
        "compareRunSections": [
            s | {"isReordered": False, "deleted": False, "isGenerated": False} for s in sections
        ],
        "compareRunCharts": charts(view),
        "isAccordionReordered": True,  # keep the sections in this order, not alphabetical
        "hideEmptyCharts": True,
        "globalLineChartConfig": {
            "xAxisKey": "step",
            "lineSmoothness": 0,
            "selectedXAxisMetricKey": "",
        },
    }


def envelope(name: str, state: dict[str, Any]) -> str:
    """The tag value: the UI's saved-view envelope around the compressed state."""
    compressed = base64.b64encode(zlib.compress(json.dumps(state).encode())).decode()
    now = int(time.time() * 1000)
    return json.dumps(
        {"name": name, "createdAt": now, "updatedAt": now, "state": COMPRESSED + compressed}
    )


@cache
def unsupported() -> str | None:
    """Why this MLflow's UI would not read the view, or None when its main bundle has every
    marker of the format above."""
    bundles = sorted((Path(mlflow.__file__).parent / "server/js/build/static/js").glob("main.*.js"))
    if not bundles:
        return f"MLflow {mlflow.__version__} ships no UI bundle to check"
    text = bundles[0].read_text(errors="replace")
    missing = [m for m in UI_MARKERS if m not in text]
    if missing:
        return f"MLflow {mlflow.__version__}'s UI does not read shared views as 3.17's does"
    return None


def link_path(experiment_id: str, key: str | None) -> str:
    """The part of the UI link after the host: the sweep's view, or the experiment's charts."""
    base = f"#/experiments/{experiment_id}/runs?"
    return base + (f"{SHARE_PARAM}={key}&" if key else "") + "compareRunsMode=CHART"


def store_view(client: MlflowClient, view: SweepView) -> tuple[str, str | None]:
    """Store the sweep's view on its experiment (replacing this sweep's earlier one); the link
    path, and why it is the plain experiment link instead when the view cannot be stored."""
    reason = unsupported()
    if reason is None:
        value = envelope(f"Sweep {view.name}", view_state(view))
        if len(value) > MAX_TAG_VALUE:
            reason = f"its view is {len(value)} characters, more than the UI's {MAX_TAG_VALUE}"
    if reason is not None:
        return link_path(view.experiment_id, None), reason
    key = view.parent_run_id  # one view per sweep
    with_retries(
        lambda: client.set_experiment_tag(view.experiment_id, VIEW_TAG_PREFIX + key, value)
    )
    return link_path(view.experiment_id, key), None
