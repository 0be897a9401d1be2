"""The dataset loaders: bundled data, the UCI heart file (local, headerless, downloaded), CSV."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from src.ml.data import DataError, load_dataset, load_frame
from src.ml.pipeline import build_pipeline


def heart_cfg(path: Path, url: str = "http://127.0.0.1:9/unreachable") -> OmegaConf:
    return OmegaConf.create(
        {
            "name": "heart",
            "source": "uci_heart",
            "path": str(path),
            "url": url,
            "target": "num",
            "test_size": 0.2,
            "random_state": 42,
        }
    )


def test_heart_loader_reads_the_shared_file_with_missing_values(heart_csv: Path) -> None:
    X, y = load_frame(heart_cfg(heart_csv))
    assert X.shape == (303, 13)
    assert "num" not in X.columns
    assert int(X.isna().sum().sum()) == 6  # `?` became NaN, rows kept
    assert X["ca"].isna().sum() == 4 and X["thal"].isna().sum() == 2
    assert y.value_counts().to_dict() == {0: 164, 1: 139}  # disease = num > 0


def test_heart_split_is_stratified(heart_csv: Path) -> None:
    data = load_dataset(heart_cfg(heart_csv))
    assert len(data.X_train) + len(data.X_test) == 303
    assert len(data.X_test) == 61
    assert abs(data.y_train.mean() - data.y_test.mean()) < 0.02
    assert data.classes == [0, 1]


def test_heart_loader_reads_uci_headerless_format(heart_csv: Path, tmp_path: Path) -> None:
    raw = tmp_path / "processed.cleveland.data"
    raw.write_text("".join(heart_csv.read_text().splitlines(keepends=True)[1:]))
    X_raw, y_raw = load_frame(heart_cfg(raw))
    X, y = load_frame(heart_cfg(heart_csv))
    pd.testing.assert_frame_equal(X_raw, X)
    assert (y_raw.to_numpy() == y.to_numpy()).all()


def test_heart_missing_file_is_downloaded_into_the_cache(heart_csv: Path, tmp_path: Path) -> None:
    served = tmp_path / "www"
    served.mkdir()
    (served / "processed.cleveland.data").write_text(
        "".join(heart_csv.read_text().splitlines(keepends=True)[1:])
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/processed.cleveland.data"
        cache = tmp_path / "outputs" / "data" / "processed.cleveland.data"
        X, _ = load_frame(heart_cfg(cache, url))
    finally:
        server.shutdown()
        server.server_close()
    assert cache.is_file() and X.shape == (303, 13)


def test_heart_offline_error_names_url_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "heart.data"
    url = "http://127.0.0.1:9/processed.cleveland.data"  # closed loopback port: offline
    with pytest.raises(DataError) as error:
        load_frame(heart_cfg(missing, url))
    assert url in str(error.value) and "data.path" in str(error.value)
    assert str(missing) in str(error.value)
    # and the way out: the copy the repository ships, as a data.path= that works from here
    assert "This repository ships the file: data.path=" in str(error.value)
    assert "tests/data/heart_cleveland.csv uses it" in str(error.value)
    assert not missing.exists() and not missing.with_suffix(".data.part").exists()


def csv_cfg(path: Path, target: str) -> OmegaConf:
    return OmegaConf.create(
        {
            "name": "csv",
            "source": "csv",
            "path": str(path),
            "target": target,
            "test_size": 0.25,
            "random_state": 0,
        }
    )


@pytest.mark.parametrize(
    ("rows", "target", "message"),
    [
        ("a,b,y\n1,2,0\n3,4,1\n", "label", "data.target='label' is not a column"),
        ("a,b,y\n1,2,0\n3,4,0\n5,6,0\n", "y", "single class"),
        ("y\n0\n1\n", "y", "no feature columns"),
    ],
)
def test_csv_bad_input_names_the_culprit(tmp_path: Path, rows, target, message) -> None:
    path = tmp_path / "data.csv"
    path.write_text(rows)
    with pytest.raises(DataError, match=message):
        load_frame(csv_cfg(path, target))


def test_csv_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.path=.*no_such.csv.*no such file"):
        load_frame(csv_cfg(tmp_path / "no_such.csv", "y"))


def test_csv_string_labels_and_categorical_features(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    rows = ["colour,size,label"] + [
        f"{c},{s},{lab}"
        for c, s, lab in [("red", 1.0, "cat"), ("blue", 2.5, "dog"), ("green", 3.0, "bird")] * 10
    ]
    path.write_text("\n".join(rows) + "\n")
    data = load_dataset(csv_cfg(path, "label"))
    assert data.classes == ["bird", "cat", "dog"]
    assert not pd.api.types.is_numeric_dtype(data.X_train["colour"])
    model_cfg = OmegaConf.create({"_target_": "sklearn.linear_model.LogisticRegression"})
    pipeline = build_pipeline(model_cfg, data.X_train).fit(data.X_train, data.y_train)
    assert set(pipeline.predict(data.X_test)) <= {"bird", "cat", "dog"}
    assert "colour_red" in pipeline[:-1].get_feature_names_out()
