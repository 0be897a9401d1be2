"""Model families compared across an experiment's runs: `python -m src.summary --compare`."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from src.analysis.families import family_table, plot_families
from src.ml.stats import corrected_ttest

from ..helpers import BEST, in_process, make_child

WORSE = [v - 0.2 for v in BEST]


@pytest.fixture
def families(tracking_uri):
    """Two sweeps and a single run: knn (two configs, one of them run twice), logistic
    regression (close to knn's best), a random forest far behind, and an svm scored on other
    folds."""
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("families")
    ids = {}
    for sweep, children in {
        "knn #1": [
            ("knn k=5", BEST, {"model": "knn", "model.n_neighbors": "5"}),
            ("knn k=1", WORSE, {"model": "knn", "model.n_neighbors": "1"}),
            # the same configuration again, as a sweep records it (its sweep file, its policy)
            (
                "knn k=5 again",
                WORSE,
                {
                    "model": "knn",
                    "model.n_neighbors": "5",
                    "sweeps": "knn_grid",
                    "sweep.resume": "latest",
                },
            ),
        ],
        "model_comparison #2": [
            ("lr", [0.89, 0.86, 0.86, 0.91, 0.87], {"model": "logistic_regression"}),
            ("rf", WORSE, {"model": "random_forest"}),
        ],
    }.items():
        parent = client.create_run(experiment_id, run_name=sweep, tags={"sweep": "true"})
        for name, folds, params in children:
            ids[name] = make_child(client, experiment_id, parent.info.run_id, name, folds, 5,
                                   params=params)  # fmt: skip
    ids["svm"] = make_child(client, experiment_id, None, "svm", BEST, 5,
                            params={"model": "svm", "cv.seed": "7"})  # fmt: skip
    return client, experiment_id, ids


def test_each_family_s_best_is_compared_with_the_best(families, tracking_uri, tmp_path) -> None:
    client, experiment_id, ids = families
    table, verdict = family_table(client, experiment_id)
    assert table.iloc[0]["model"] == "knn"  # ties svm's mean; the earlier run first
    rows = table.set_index("model")
    assert rows.loc["svm", "sweep"] == "(single run)"
    # distinct configurations: k=5 run twice counts once
    assert rows.loc["knn", "run_name"] == "knn k=5" and rows.loc["knn", "n_configs"] == 2
    assert rows.loc["random_forest", "n_configs"] == 1
    lr = [0.89, 0.86, 0.86, 0.91, 0.87]
    assert rows.loc["logistic_regression", "p_value_vs_best"] == pytest.approx(
        corrected_ttest(BEST, lr, 194, 48)[1]
    )
    assert not rows.loc["random_forest", "equivalent_to_best"]
    assert "another cv.seed" in verdict.unpaired[ids["svm"]]
    assert pd.isna(rows.loc["svm", "equivalent_to_best"])
    result = in_process(tracking_uri, "src.summary", "--compare", "--experiment", "families",
                        "--out", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Model families of experiment 'families', by cv_accuracy_mean" in result.stdout
    assert "Significantly worse: random_forest." in result.stdout
    assert "Not comparable fold by fold: svm (scored on other CV folds" in result.stdout
    csv = pd.read_csv(tmp_path / "out" / "model_comparison.csv")
    assert set(csv["model"]) == {"knn", "logistic_regression", "random_forest", "svm"}
    markdown = (tmp_path / "out" / "model_comparison.md").read_text()
    assert "| knn | 2 | knn k=5 | knn #1 |" in markdown
    with Image.open(tmp_path / "out" / "model_comparison.png") as image:
        assert image.info["dpi"][0] == pytest.approx(150, abs=1)
    figure = plot_families(table, "cv_accuracy_mean", "families")
    assert figure.axes[0].get_title() == "best configuration per model"
    assert figure.get_suptitle() == "families · model comparison · cv_accuracy_mean"
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert sorted(labels) == ["knn", "logistic_regression", "random_forest", "svm"]


def test_model_comparison_png_is_dot_and_whisker_on_the_scores_axis(families) -> None:
    """Points with error bars, not bars from 0: the axis spans the scores, so their
    differences show; the right panel draws each family's difference to the best."""
    client, experiment_id, _ = families
    table, _ = family_table(client, experiment_id)
    figure = plot_families(table, "cv_accuracy_mean", "families")
    scores, differences = figure.axes[:2]
    assert not scores.patches  # no bars
    low, high = scores.get_xlim()
    means = table["cv_accuracy_mean"].astype(float)
    assert 0 < low < means.min() and means.max() < high <= 1  # not from 0
    assert high - low < 0.5
    points = [c for c in scores.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(points) == len(table)
    paired = table["diff_vs_best"].notna()
    whiskers = [c for c in differences.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(whiskers) == paired.sum() == 2  # logistic regression and random forest
    for bar, (_, row) in zip(whiskers, table[paired].iterrows(), strict=True):
        ends = bar.lines[2][0].get_segments()[0][:, 0]
        assert sorted(ends) == pytest.approx([row["diff_ci_low"], row["diff_ci_high"]])
    assert figure.get_suptitle() == "families · model comparison · cv_accuracy_mean"
