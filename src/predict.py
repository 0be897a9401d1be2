"""Predict with any logged or registered model: `python -m src.predict --model URI --input X.csv`.

Writes one row per input row: the predicted class and the probability of every class.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from src.options import add_store_arguments, configured_store
from src.tracking.store import TrackingError, using_store


class InputError(ValueError):
    """The input does not match the model's signature; the message names the columns."""


def load_input(path: Path) -> pd.DataFrame:
    """Read a CSV the way training data is read (`?` is missing)."""
    if not path.is_file():
        raise InputError(f"--input {str(path)!r}: no such file")
    try:
        frame = pd.read_csv(path, na_values="?", skipinitialspace=True)
    except pd.errors.EmptyDataError as e:
        raise InputError(f"--input {str(path)!r} is empty") from e
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"--input {str(path)!r} is not a CSV table of UTF-8 text") from e
    if frame.empty:
        raise InputError(f"--input {str(path)!r} has a header but no rows")
    return frame


def check_columns(frame: pd.DataFrame, expected: list[str], drop_extra: bool) -> pd.DataFrame:
    """The model's input columns in its order; missing (or, unless dropped, extra) ones fail."""
    missing = [c for c in expected if c not in frame.columns]
    extra = [c for c in frame.columns if c not in expected]
    if missing:
        raise InputError(f"the input lacks columns the model needs: {missing}")
    if extra and not drop_extra:
        raise InputError(
            f"the input has columns the model does not take: {extra} (pass --drop-extra to ignore)"
        )
    return frame[expected]


def check_numeric(frame: pd.DataFrame, numeric: list[str]) -> pd.DataFrame:
    """`frame` with its `numeric` columns as float64; a value that is not a number fails,
    naming the column and the row (not the value)."""
    for column in numeric:
        converted = pd.to_numeric(frame[column], errors="coerce")
        bad = converted.isna() & frame[column].notna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0]) + 1
            raise InputError(
                f"column {column!r} must hold numbers: data row {row} does not "
                f"({int(bad.sum())} such rows)"
            )
    return frame.astype({c: "float64" for c in numeric})


def predict_frame(model_uri: str, frame: pd.DataFrame, drop_extra: bool = False) -> pd.DataFrame:
    """Predictions and class probabilities for `frame`, checked against the model's signature."""
    info = mlflow.models.get_model_info(model_uri)
    if info.signature is None or info.signature.inputs is None:
        raise InputError(f"model {model_uri} has no input signature to check the columns against")
    schema = info.signature.inputs
    features = check_columns(frame, schema.input_names(), drop_extra)
    numeric = [
        s.name
        for s in schema.inputs
        if getattr(s.type, "name", str(s.type)) in ("double", "float", "long", "integer")
    ]
    features = check_numeric(features, numeric)
    model = mlflow.sklearn.load_model(model_uri)
    result = pd.DataFrame({"prediction": model.predict(features)}, index=frame.index)
    if hasattr(model, "predict_proba"):
        probabilities = model.predict_proba(features)
        for i, label in enumerate(model.classes_):
            result[f"probability_{label}"] = probabilities[:, i]
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m src.predict", description=__doc__)
    parser.add_argument("--model", required=True, help="e.g. models:/heart-classifier@champion")
    parser.add_argument("--input", required=True, type=Path, help="a CSV with the model's columns")
    parser.add_argument("--output", type=Path, help="CSV to write (default: standard output)")
    parser.add_argument("--drop-extra", action="store_true", help="ignore columns the model lacks")
    add_store_arguments(parser)  # where models:/ and runs:/ URIs are looked up
    args = parser.parse_args(argv)
    try:
        uri, _ = configured_store(args.overrides, args.tracking_uri)
        with using_store(uri):
            result = predict_frame(args.model, load_input(args.input), args.drop_extra)
    except (InputError, MlflowException, OSError, TrackingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        result.to_csv(args.output, index=False)
        print(f"Wrote {len(result)} predictions to {args.output}")
    else:
        result.to_csv(sys.stdout, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
