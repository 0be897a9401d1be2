"""The command-line options the commands share: the store (--tracking-uri, config overrides)
and the sweep (--sweep, --experiment), resolved through the project's config."""

from __future__ import annotations

import argparse
from pathlib import Path

from src.tracking.store import resolve_tracking_uri

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every CLI shares to name its store: --tracking-uri and config overrides."""
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI or the config's")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data=heart")


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The options the CLIs that read a sweep share: --sweep, --experiment, and the store's."""
    parser.add_argument(
        "--sweep", metavar="RUN_ID", help="a sweep's parent run (default: the latest sweep)"
    )
    parser.add_argument(
        "--experiment",
        metavar="NAME",
        help="default: the whole store (or the experiment config overrides name)",
    )
    add_store_arguments(parser)


def chosen_store(args: argparse.Namespace) -> tuple[str, str | None]:
    """The tracking URI and the experiment (None: the whole store) that `add_sweep_arguments`'
    options name: --experiment, else the configured one if overrides were given."""
    uri, configured = configured_store(args.overrides, args.tracking_uri)
    return uri, args.experiment or (configured if args.overrides else None)


def configured_store(overrides: list[str], tracking_uri: str | None) -> tuple[str, str]:
    """The tracking URI and experiment name of the project's config (with overrides)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    uri = resolve_tracking_uri(tracking_uri or cfg.mlflow.tracking_uri)
    return uri, str(cfg.mlflow.experiment_name)
