"""Render a child run's plots (ROC curve, confusion matrix, feature importance) to PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless, and the cheapest backend to render PNGs with

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.inspection import permutation_importance  # noqa: E402
from sklearn.metrics import auc, roc_curve  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

from src.data import Dataset  # noqa: E402
from src.evaluate import Evaluation  # noqa: E402

DPI = 80
MAX_FEATURES_SHOWN = 20


def save_child_plots(pipeline: Pipeline, data: Dataset, result: Evaluation, out_dir: Path) -> None:
    """Write roc_curve.png, confusion_matrix.png and feature_importance.png into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, draw in (
        ("roc_curve", lambda ax: plot_roc_curve(ax, data, result)),
        ("confusion_matrix", lambda ax: plot_confusion_matrix(ax, result)),
        ("feature_importance", lambda ax: plot_feature_importance(ax, pipeline, data)),
    ):
        fig, ax = plt.subplots(figsize=(5, 4))
        try:
            draw(ax)
            fig.tight_layout()
            fig.savefig(out_dir / f"{name}.png", dpi=DPI)
        finally:
            plt.close(fig)


def plot_roc_curve(ax: plt.Axes, data: Dataset, result: Evaluation) -> None:
    """ROC curve with its AUC (binary), or one one-vs-rest curve per class (multiclass)."""
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    if result.y_score is None:
        ax.text(0.5, 0.5, "model gives no class probabilities", ha="center")
    else:
        y_true = np.asarray(data.y_test)
        curves = [(result.classes[-1], 1)] if len(result.classes) == 2 else [
            (label, i) for i, label in enumerate(result.classes)
        ]  # fmt: skip
        for label, column in curves:
            positives = y_true == label
            if positives.all() or not positives.any():
                continue
            fpr, tpr, _ = roc_curve(positives, result.y_score[:, column])
            ax.plot(fpr, tpr, label=f"class {label} (AUC = {auc(fpr, tpr):.3f})")
        ax.legend(loc="lower right", fontsize="small")
    ax.set(xlabel="False positive rate", ylabel="True positive rate",
           title=f"ROC curve (AUC = {result.metrics['roc_auc']:.3f})")  # fmt: skip


def plot_confusion_matrix(ax: plt.Axes, result: Evaluation) -> None:
    """Heatmap of the test confusion matrix with the count in every cell."""
    counts = result.confusion
    ax.imshow(counts, cmap="Blues")
    ticks = range(len(result.classes))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=result.classes, yticklabels=result.classes,
           xlabel="Predicted", ylabel="True", title="Confusion matrix (test)")  # fmt: skip
    threshold = counts.max() / 2
    for (i, j), count in np.ndenumerate(counts):
        color = "white" if count > threshold else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color)


def feature_importance(pipeline: Pipeline, data: Dataset) -> tuple[list[str], np.ndarray, str]:
    """The model's importances or |coefficients|, else permutation importance on the test set."""
    model = pipeline[-1]
    if hasattr(model, "feature_importances_"):
        names = pipeline[:-1].get_feature_names_out()
        return list(names), np.asarray(model.feature_importances_), "impurity importance"
    coef = getattr(model, "coef_", None)
    if coef is not None and not hasattr(coef, "toarray"):
        names = pipeline[:-1].get_feature_names_out()
        return list(names), np.abs(np.atleast_2d(coef)).mean(axis=0), "|coefficient|"
    perm = permutation_importance(
        pipeline, data.X_test, data.y_test, n_repeats=5, random_state=0, n_jobs=1
    )
    return list(data.X_test.columns), perm.importances_mean, "permutation importance"


def plot_feature_importance(ax: plt.Axes, pipeline: Pipeline, data: Dataset) -> None:
    """Horizontal bars of the most important features, largest on top."""
    names, values, kind = feature_importance(pipeline, data)
    order = np.argsort(values)[-MAX_FEATURES_SHOWN:]
    ax.barh([str(names[i]) for i in order], values[order], color="tab:blue")
    ax.tick_params(axis="y", labelsize="small")
    ax.set(xlabel=kind, title="Feature importance")
