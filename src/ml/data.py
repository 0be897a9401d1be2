"""Load a dataset named by the `data` config group and split it for training and testing."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split

SKLEARN_LOADERS = {
    "breast_cancer": sk_datasets.load_breast_cancer,
    "iris": sk_datasets.load_iris,
    "wine": sk_datasets.load_wine,
}
HEART_COLUMNS = [
    "age", "sex", "cp", "trestbps", "chol", "fbs", "restecg",
    "thalach", "exang", "oldpeak", "slope", "ca", "thal", "num",
]  # fmt: skip
DOWNLOAD_TIMEOUT_S = 30
# what a column name in a header looks like: a word, maybe with spaces, dots or dashes
_HEADER_NAME = re.compile(r"[A-Za-z_][\w .()-]{0,63}")


class DataError(ValueError):
    """A dataset cannot be loaded or used for classification; the message names the culprit."""


@dataclass
class Dataset:
    """Features and labels, split into train and test parts."""

    name: str
    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    class_names: dict = field(default_factory=dict)  # label -> how a reader calls it
    categorical: list[str] = field(default_factory=list)  # numeric codes to one-hot encode
    category_names: dict = field(default_factory=dict)  # column -> {code -> what it means}

    def class_name(self, label: object) -> str:
        """The label's name from `data.class_names`, or the label itself."""
        return str(self.class_names.get(label, label))

    @property
    def classes(self) -> list:
        """The sorted class labels seen in the whole dataset."""
        return sorted(pd.concat([self.y_train, self.y_test]).unique().tolist())

    @cached_property
    def train_fingerprint(self) -> str:
        """A SHA-256 of the training split (rows in order, columns, dtypes, labels): two runs
        with the same fingerprint, seed and folds cross-validated on the same folds."""
        digest = hashlib.sha256()
        for frame in (self.X_train, self.y_train.to_frame()):
            digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
            digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
        return digest.hexdigest()


def load_dataset(data_cfg: DictConfig) -> Dataset:
    """Load the dataset described by `data_cfg` and return its stratified train/test split.

    Cached per process by the resolved config, so the jobs of a sweep that a process runs read
    the file once; callers must not modify the frames (scikit-learn does not)."""
    return _load_dataset_cached(OmegaConf.to_yaml(data_cfg, resolve=True))


@lru_cache(maxsize=4)
def _load_dataset_cached(data_yaml: str) -> Dataset:
    data_cfg = OmegaConf.create(data_yaml)
    assert isinstance(data_cfg, DictConfig)
    X, y = load_frame(data_cfg)
    return split_dataset(str(data_cfg.name), X, y, data_cfg)


def load_frame(data_cfg: DictConfig) -> tuple[pd.DataFrame, pd.Series]:
    """Load features and labels (unsplit), validated for classification."""
    source = data_cfg.source
    if source == "sklearn":
        X, y = _load_sklearn(str(data_cfg.name))
    elif source == "uci_heart":
        X, y = _load_heart(data_cfg)
    elif source == "csv":
        X, y = _load_csv(Path(str(data_cfg.path)), str(data_cfg.target), "data.path")
    else:
        raise DataError(f"data.source={source!r} is unknown; valid: sklearn, uci_heart, csv")
    return _validate(X, y, data_cfg)


def split_dataset(name: str, X: pd.DataFrame, y: pd.Series, data_cfg: DictConfig) -> Dataset:
    """Stratified train/test split with `data.test_size` and `data.random_state`."""
    test_size = data_cfg.test_size
    check_test_size(test_size)
    try:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=test_size, stratify=y, random_state=data_cfg.random_state
        )
    except ValueError as e:
        raise DataError(f"cannot split {name} with data.test_size={test_size}: {e}") from e
    names = data_cfg.get("class_names") or {}
    class_names = {k: str(v) for k, v in dict(names).items()}
    categorical = [str(c) for c in data_cfg.get("categorical") or []]
    codes = data_cfg.get("category_names") or {}
    category_names = {
        str(c): {k: str(v) for k, v in dict(m).items()} for c, m in dict(codes).items()
    }
    return Dataset(name, X_train, X_test, y_train, y_test, class_names, categorical, category_names)


def check_test_size(test_size: object) -> None:
    """data.test_size must be a fraction in (0, 1) or a whole number of rows."""
    if (
        isinstance(test_size, bool)
        or not isinstance(test_size, (int, float))
        or test_size <= 0
        or (test_size >= 1 and test_size % 1)
    ):
        raise DataError(
            f"data.test_size={test_size!r} is not valid; use a fraction in (0, 1) or a whole "
            f"number of rows"
        )


def _load_sklearn(name: str) -> tuple[pd.DataFrame, pd.Series]:
    if name not in SKLEARN_LOADERS:
        raise DataError(f"data.name={name!r} is not bundled; valid: {sorted(SKLEARN_LOADERS)}")
    bunch = SKLEARN_LOADERS[name](as_frame=True)
    return bunch.data, bunch.target.rename("target")


# the copy of the UCI file this repository ships (its source and licence: tests/data/README.md)
SHIPPED_HEART = Path(__file__).resolve().parents[2] / "tests" / "data" / "heart_cleveland.csv"


def _load_heart(data_cfg: DictConfig) -> tuple[pd.DataFrame, pd.Series]:
    path = Path(str(data_cfg.path))
    if not path.exists():
        try:
            download(str(data_cfg.url), path)
        except DataError as e:
            if not SHIPPED_HEART.is_file():
                raise
            shipped = os.path.relpath(SHIPPED_HEART)  # from the repository: tests/data/...
            shipped = str(SHIPPED_HEART) if shipped.startswith("..") else shipped
            raise DataError(
                f"{e} This repository ships the file: data.path={shipped} uses it (or copy it "
                f"to {str(path)!r})."
            ) from e.__cause__
    text = _read_text(path, "data.path")
    has_header = not _is_number(text.partition("\n")[0].split(",")[0].strip())
    frame = _parse_csv(
        text, path, "data.path", header=0 if has_header else None,
        names=None if has_header else HEART_COLUMNS,
    )  # fmt: skip
    target = str(data_cfg.target)
    if target not in frame.columns:
        raise DataError(_not_a_column(target, path, frame))
    y = (frame.pop(target) > 0).astype(int).rename(target)
    return frame, y


def download(url: str, path: Path) -> None:
    """Download `url` into `path` (atomically), or fail with a message naming both."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            partial.write_bytes(response.read())
    except (urllib.error.URLError, OSError) as e:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"data.path={str(path)!r} does not exist and downloading it from {url} failed ({e}). "
            f"Offline? Put the file at data.path or point data.path=... at a local copy."
        ) from e
    partial.replace(path)


def _load_csv(path: Path, target: str, path_key: str) -> tuple[pd.DataFrame, pd.Series]:
    if not path.is_file():
        raise DataError(f"{path_key}={str(path)!r}: no such file")
    frame = _parse_csv(_read_text(path, path_key), path, path_key)
    if target not in frame.columns:
        raise DataError(_not_a_column(target, path, frame))
    return frame.drop(columns=[target]), frame[target]


def _not_a_column(target: str, path: Path, frame: pd.DataFrame) -> str:
    """Why `target` is not found, naming the file; its columns only when they look like a
    header (names), never a line of a file that is not a table of ours (/etc/shadow)."""
    columns = [str(c) for c in frame.columns]
    if all(_HEADER_NAME.fullmatch(c) for c in columns):
        return f"data.target={target!r} is not a column of {path}: {columns}"
    return (
        f"data.target={target!r} is not a column of {path}: its first line is not a header of "
        f"column names ({len(columns)} fields, not shown)"
    )


def _read_text(path: Path, path_key: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        where = f"{e.reason} at byte {e.start}"
        raise DataError(f"{path_key}={str(path)!r} is not UTF-8 text ({where})") from e
    except OSError as e:
        raise DataError(f"{path_key}={str(path)!r} cannot be read: {e.strerror}") from e


def _parse_csv(
    text: str, path: Path, path_key: str, header: int | None = 0, names: list[str] | None = None
) -> pd.DataFrame:
    """The CSV `text` read from `path` (missing values as `?`); a file that is not a table with
    rows is an error naming the file."""
    if not text.strip():
        raise DataError(f"{path_key}={str(path)!r} is empty")
    try:
        frame = pd.read_csv(
            io.StringIO(text), header=header, names=names, na_values="?", skipinitialspace=True
        )
    except (pd.errors.ParserError, ValueError) as e:
        reason = str(e).strip()
        raise DataError(f"{path_key}={str(path)!r} is not a valid CSV table: {reason}") from e
    if frame.empty:
        raise DataError(f"{path_key}={str(path)!r} has a header but no rows")
    if header is not None:  # pandas renames a repeated name (age, age.1): a silent new column
        names_read = next(csv.reader(io.StringIO(text), skipinitialspace=True))
        repeated = [n for n, count in Counter(names_read).items() if count > 1]
        if repeated:
            raise DataError(
                f"{path_key}={str(path)!r} has more than one column named {repeated[0]!r}: "
                f"give each column its own name"
            )
    return frame


def _validate(
    X: pd.DataFrame, y: pd.Series, data_cfg: DictConfig
) -> tuple[pd.DataFrame, pd.Series]:
    if y.isna().any():
        raise DataError(f"data.target={y.name!r} has {int(y.isna().sum())} missing labels")
    if y.nunique() < 2:
        raise DataError(
            f"data.target={y.name!r} of data={data_cfg.name} has a single class "
            f"({y.iloc[0]!r}); classification needs at least two"
        )
    if X.shape[1] == 0:
        raise DataError(f"data={data_cfg.name} has no feature columns besides the target")
    unknown = [str(c) for c in data_cfg.get("categorical") or [] if c not in X.columns]
    if unknown:
        raise DataError(
            f"data.categorical names {', '.join(map(repr, unknown))}, not a feature column of "
            f"data={data_cfg.name}: {list(map(str, X.columns))}"
        )
    numeric = X.select_dtypes("number").columns
    # float64 throughout, so a missing value in a column at predict time keeps the logged signature
    X = X.astype({c: "float64" for c in numeric})
    return X, y


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
