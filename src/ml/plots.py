"""Render a child run's plots (ROC curve, confusion matrix, feature importance) to PNG files."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless, and the cheapest backend to render PNGs with

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.metrics import accuracy_score, auc, roc_curve  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.utils import check_random_state  # noqa: E402

from src.ml.data import Dataset  # noqa: E402
from src.ml.evaluate import Evaluation  # noqa: E402

DPI = 150  # report-ready
MAX_FEATURES_SHOWN = 20
PERMUTATION_REPEATS = 30  # the test split is small (61 rows for heart): many shuffles
PERMUTED_ROWS_PER_CALL = 100_000  # rows of permuted copies predicted at once (bounds memory)


@dataclass(frozen=True)
class ChildPlots:
    """What a child's three plots show."""

    y_test: np.ndarray
    y_score: np.ndarray | None  # class probabilities on the test split, columns in `classes`
    classes: list
    confusion: np.ndarray
    roc_auc: float
    importance: Importance
    title: str = ""  # the run, as its title line names it
    class_names: tuple[str, ...] = ()  # how to call `classes`, in order


@dataclass(frozen=True)
class Importance:
    """Feature importances: names, values, their spread (None: no error bars), what they are."""

    names: list[str]
    values: np.ndarray
    spread: np.ndarray | None
    kind: str
    signed: bool = False


def child_plots(
    pipeline: Pipeline, data: Dataset, result: Evaluation, title: str = ""
) -> ChildPlots:
    """The data of a child's plots (computes feature importance)."""
    classes = list(result.classes)
    importance = feature_importance(pipeline, data)
    names = [feature_label(str(n), data.categorical, data.category_names) for n in importance.names]
    return ChildPlots(
        y_test=np.asarray(data.y_test),
        y_score=result.y_score,
        classes=classes,
        confusion=result.confusion,
        roc_auc=result.metrics["roc_auc"],
        importance=replace(importance, names=names),
        title=title,
        class_names=tuple(data.class_name(c) for c in classes),
    )


def save_child_plots(
    pipeline: Pipeline, data: Dataset, result: Evaluation, out_dir: Path, title: str = ""
) -> None:
    """Write roc_curve.png, confusion_matrix.png and feature_importance.png into `out_dir`,
    each titled with `title` (the run)."""
    render_child_plots(child_plots(pipeline, data, result, title), out_dir)


DRAWINGS = {
    "roc_curve": lambda ax, plots: plot_roc_curve(ax, plots),
    "confusion_matrix": lambda ax, plots: plot_confusion_matrix(ax, plots),
    "feature_importance": lambda ax, plots: plot_feature_importance(ax, plots),
}


def render_child_plots(plots: ChildPlots, out_dir: Path) -> None:
    """Render the three PNGs of `plots` into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in DRAWINGS:
        fig = child_figure(name, plots)
        try:
            save_png(fig, out_dir / f"{name}.png")
        finally:
            plt.close(fig)


def child_figure(name: str, plots: ChildPlots) -> plt.Figure:
    """One of the child's figures (`roc_curve`, `confusion_matrix`, `feature_importance`),
    titled with the run."""
    features = name == "feature_importance"  # wider: room on the left for named categories
    fig, ax = plt.subplots(figsize=(7.5 if features else 5.5, 4.4))
    DRAWINGS[name](ax, plots)
    if plots.title:
        fig.suptitle(_shorten(plots.title), fontsize="medium")
    # fixed margins instead of tight_layout (a third of a plot's cost)
    fig.subplots_adjust(left=0.43 if features else 0.2, right=0.96, bottom=0.13, top=0.8)
    return fig


def feature_label(name: str, categorical: list[str], category_names: dict) -> str:
    """A one-hot column's name as a reader says it: `thal_7.0` -> `thal = 7 (reversible
    defect)` with the data config's `category_names`, `thal = 7` without; others unchanged."""
    for column in sorted(categorical, key=len, reverse=True):  # `cp_x` before `cp`
        prefix = f"{column}_"
        if not name.startswith(prefix):
            continue
        code: object = name.removeprefix(prefix)
        number = pd.to_numeric(pd.Series([code]), errors="coerce").iloc[0]
        if pd.notna(number):
            code = int(number) if float(number).is_integer() else float(number)
        meaning = category_names.get(column, {}).get(code)
        return f"{column} = {code}" + (f" ({meaning})" if meaning is not None else "")
    return name


def _shorten(text: str, width: int = 58) -> str:
    """At most two lines of `width` characters (a long run name ends in …)."""
    lines = textwrap.wrap(text, width) or [""]
    if len(lines) > 2:
        lines = [lines[0], lines[1][: width - 1] + "…"]
    return "\n".join(lines)


def save_png(fig: plt.Figure, path: Path) -> None:
    """Write a PNG quickly: light zlib compression (the files stay small at this size)."""
    fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 1})


def plot_roc_curve(ax: plt.Axes, plots: ChildPlots) -> None:
    """ROC curve with its AUC (binary), or one one-vs-rest curve per class (multiclass)."""
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    if plots.y_score is None:
        ax.text(0.5, 0.5, "model gives no class probabilities", ha="center")
    else:
        y_true = plots.y_test
        curves = [(plots.classes[-1], 1)] if len(plots.classes) == 2 else [
            (label, i) for i, label in enumerate(plots.classes)
        ]  # fmt: skip
        for label, column in curves:
            positives = y_true == label
            if positives.all() or not positives.any():
                continue
            fpr, tpr, _ = roc_curve(positives, plots.y_score[:, column])
            ax.plot(fpr, tpr, label=f"{_name(plots, column)} (AUC = {auc(fpr, tpr):.3f})")
        ax.legend(loc="lower right", fontsize="small")
    # binary: scikit-learn's positive class is the larger label (breast_cancer: 1, benign)
    positive = f", positive class {_name(plots, 1)}" if len(plots.classes) == 2 else ""
    ax.set(xlabel="False positive rate", ylabel="True positive rate",
           title=f"ROC curve{positive} (AUC = {plots.roc_auc:.3f})")  # fmt: skip


def plot_confusion_matrix(ax: plt.Axes, plots: ChildPlots) -> None:
    """Heatmap of the test confusion matrix with the count in every cell."""
    counts = plots.confusion
    ax.imshow(counts, cmap="Blues")
    ticks = range(len(plots.classes))
    names = [_name(plots, i) for i in ticks]
    ax.set(xticks=ticks, yticks=ticks, xticklabels=names, yticklabels=names,
           xlabel="Predicted", ylabel="True", title="Confusion matrix (test split)")  # fmt: skip
    ax.tick_params(axis="y", labelrotation=90)
    for label in ax.get_yticklabels():
        label.set_verticalalignment("center")
    threshold = counts.max() / 2
    for (i, j), count in np.ndenumerate(counts):
        color = "white" if count > threshold else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color)


def _name(plots: ChildPlots, index: int) -> str:
    return plots.class_names[index] if plots.class_names else str(plots.classes[index])


def feature_importance(pipeline: Pipeline, data: Dataset) -> Importance:
    """The model's importances; a linear model's coefficients (signed when binary: the
    direction matters); else permutation importance on the test split, with its spread over
    the shuffles."""
    model = pipeline[-1]
    if hasattr(model, "feature_importances_"):
        names = pipeline[:-1].get_feature_names_out()
        return Importance(list(names), np.asarray(model.feature_importances_), None,
                          "impurity importance")  # fmt: skip
    coef = getattr(model, "coef_", None)
    if coef is not None and not hasattr(coef, "toarray"):
        names = list(pipeline[:-1].get_feature_names_out())
        coef = np.atleast_2d(coef)
        if coef.shape[0] == 1:
            positive = data.class_name(model.classes_[-1])
            kind = f"coefficient (scaled features; > 0 pushes towards {positive})"
            return Importance(names, coef[0], None, kind, signed=True)
        return Importance(names, np.abs(coef).mean(axis=0), None,
                          "mean |coefficient| over the classes")  # fmt: skip
    preprocess = pipeline[:-1]
    if list(preprocess.get_feature_names_out()) == list(data.X_test.columns):
        # every column is numeric and preprocessed on its own (impute, scale), so permuting a
        # raw column and transforming equals transforming once and permuting that column:
        # the same importances without re-running the preprocessing 65 times
        X, estimator = preprocess.transform(data.X_test), pipeline[-1]
    else:  # one-hot columns: permute the raw column, as a user would read the result
        X, estimator = data.X_test, pipeline
    mean, std = permutation_importances(estimator, X, data.y_test, PERMUTATION_REPEATS)
    kind = f"permutation importance (accuracy drop, ± std over {PERMUTATION_REPEATS} shuffles)"
    return Importance(list(data.X_test.columns), mean, std, kind)


def permutation_importances(
    estimator: Any, X: Any, y: Any, n_repeats: int = 5, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`sklearn.inspection.permutation_importance(...)`'s importances_mean and importances_std
    for accuracy, with the same shuffles (so the same numbers), but the permuted copies of X
    are stacked and predicted in a few large calls instead of one call per feature and repeat
    (390 for the heart data): a classifier predicts row by row, and the per-call overhead was
    most of the cost. A permuted row that shows the same value as the original row (common in
    a column of few values: sex, a coded category) is the original row, whose prediction is
    already known: only the others are predicted."""
    y = np.asarray(y)
    n_rows, n_features = X.shape
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max + 1)
    predicted = np.asarray(estimator.predict(X))
    baseline = accuracy_score(y, predicted)
    # the rows of X that permuted copy (j, r) shows in column j, and whether that changes a row
    rows_shown = np.empty((n_features, n_repeats, n_rows), dtype=np.intp)
    changes = np.empty((n_features, n_repeats, n_rows), dtype=bool)
    for j in range(n_features):
        values = np.asarray(X.iloc[:, j] if hasattr(X, "iloc") else np.asarray(X)[:, j])
        missing = np.asarray(pd.isna(values), dtype=bool)
        shown, order, rng = np.arange(n_rows), np.arange(n_rows), np.random.RandomState(seed)
        for r in range(n_repeats):  # sklearn shuffles the already shuffled column again
            rng.shuffle(order)
            shown = shown[order]
            rows_shown[j, r] = shown
            same = (values[shown] == values) | (missing[shown] & missing)
            changes[j, r] = ~np.asarray(same, dtype=bool)
    blocks = [(j, r) for j in range(n_features) for r in range(n_repeats)]
    per_call = max(1, PERMUTED_ROWS_PER_CALL // max(n_rows, 1))
    scores = np.empty(len(blocks))
    for start in range(0, len(blocks), per_call):
        chunk = blocks[start : start + per_call]
        rows = np.tile(np.arange(n_rows), (n_features, len(chunk)))  # column k's rows of X
        changed = np.concatenate([changes[j, r] for j, r in chunk])
        for b, (j, r) in enumerate(chunk):
            rows[j, b * n_rows : (b + 1) * n_rows] = rows_shown[j, r]
        rows = rows[:, changed]
        predictions = np.tile(predicted, len(chunk))
        if rows.shape[1]:
            if hasattr(X, "iloc"):
                columns = {k: X.iloc[:, k].array.take(rows[k]) for k in range(n_features)}
                stacked = pd.DataFrame(columns).set_axis(X.columns, axis=1)
            else:
                stacked = np.asarray(X)[rows, np.arange(n_features)[:, None]].T
            predictions[changed] = estimator.predict(stacked)
        hits = predictions.reshape(len(chunk), n_rows) == y
        scores[start : start + len(chunk)] = hits.mean(axis=1)
    drops = baseline - scores.reshape(n_features, n_repeats)
    return drops.mean(axis=1), drops.std(axis=1)


def plot_feature_importance(ax: plt.Axes, plots: ChildPlots) -> None:
    """Horizontal bars of the most important features, largest on top; signed coefficients in
    two colours, permutation importance with its spread as error bars."""
    imp = plots.importance
    order = np.argsort(np.abs(imp.values) if imp.signed else imp.values)[-MAX_FEATURES_SHOWN:]
    values = imp.values[order]
    colors = np.where(values >= 0, "tab:red", "tab:blue") if imp.signed else "tab:blue"
    errors = imp.spread[order] if imp.spread is not None else None
    ax.barh([str(imp.names[i]) for i in order], values, xerr=errors, color=colors, capsize=2)
    if imp.signed:
        ax.axvline(0, color="black", linewidth=0.8)
    ax.tick_params(axis="y", labelsize="small")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # small numbers' labels must not overlap
    ax.set_xlabel(imp.kind, fontsize="small")
    shown = f" (top {len(order)} of {len(imp.values)})" if len(order) < len(imp.values) else ""
    ax.set_title(f"Feature importance{shown}")
