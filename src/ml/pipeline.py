"""Build the scikit-learn pipeline (preprocessing + the configured estimator) for a dataset."""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from sklearn.base import BaseEstimator, ClassifierMixin, is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from src.ml.targets import TargetError, check_targets

_PARAM_IN_MESSAGE = re.compile(r"The '(\w+)' parameter of")


class ModelConfigError(ValueError):
    """The `model` config does not describe a valid scikit-learn classifier."""


def check_model_targets(model_cfg: DictConfig, allowed: Iterable[str] = ()) -> None:
    """`model._target_` names a scikit-learn classifier class and every nested `_target_` a
    scikit-learn estimator class (or a name in `allowed`), checked before anything is called."""
    try:
        check_targets(
            model_cfg, "model", "sklearn",
            top=(ClassifierMixin, "a scikit-learn classifier class"),
            nested=(BaseEstimator, "a scikit-learn estimator class"),
            allowed=allowed,
        )  # fmt: skip
    except TargetError as e:
        raise ModelConfigError(str(e)) from None


def build_estimator(model_cfg: DictConfig, allowed: Iterable[str] = ()) -> ClassifierMixin:
    """Instantiate the `_target_` classifier, once its targets are checked (`allowed`: names
    `allowed_targets` adds), and validate its parameters without fitting."""
    check_model_targets(model_cfg, allowed)
    target = model_cfg.get("_target_")
    try:
        estimator = instantiate(model_cfg)
    except InstantiationException as e:
        raise ModelConfigError(f"model._target_={target!r} cannot be built: {e}") from e
    if not is_classifier(estimator):
        raise ModelConfigError(f"model._target_={target!r} is not a scikit-learn classifier")
    nested = [("", estimator)] + [
        (f"{name}.", value)
        for name, value in estimator.get_params(deep=True).items()
        if isinstance(value, BaseEstimator)
    ]
    for prefix, part in nested:  # e.g. the SVC inside CalibratedClassifierCV: model.estimator.*
        try:
            part._validate_params()
        except ValueError as e:
            match = _PARAM_IN_MESSAGE.search(str(e))
            key = f"model.{prefix}{match.group(1)}" if match else f"model.{prefix}".rstrip(".")
            value = OmegaConf.select(model_cfg, key.removeprefix("model.")) if match else None
            raise ModelConfigError(f"{key}={value!r} is invalid: {e}") from e
    return estimator


def build_pipeline(
    model_cfg: DictConfig,
    X: pd.DataFrame,
    categorical_codes: list[str] | None = None,
    allowed: Iterable[str] = (),
) -> Pipeline:
    """Impute and scale numeric columns; impute and one-hot encode the others and the numeric
    codes named in `categorical_codes` (data.categorical); then the estimator."""
    codes = set(categorical_codes or [])
    numeric = [c for c in X.select_dtypes("number").columns if c not in codes]
    categorical = [c for c in X.columns if c not in numeric]
    transformers = [
        ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")),
                              ("scale", StandardScaler())]), numeric),
    ]  # fmt: skip
    if categorical:
        transformers.append(
            ("categorical", Pipeline([
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]), categorical)
        )  # fmt: skip
    preprocess = ColumnTransformer(transformers, verbose_feature_names_out=False)
    return Pipeline([("preprocess", preprocess), ("model", build_estimator(model_cfg, allowed))])
