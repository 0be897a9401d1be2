"""Register a sweep's best model, and promote it to `champion` only if it beats the champion
by enough and significantly on the same CV folds.

`python -m src.register [--sweep RUN_ID] [--name NAME] [--min-improvement X] [--force] [overrides]`
"""

from __future__ import annotations

import argparse
import sys

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from src.analysis.ranking import load_summary
from src.analysis.registry import RegistryError, default_model_name, describe, register_best
from src.options import add_sweep_arguments, chosen_store
from src.tracking.store import NoSweepError, TrackingError, resolve_sweep


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m src.register", description=__doc__)
    add_sweep_arguments(parser)
    parser.add_argument("--name", help="registered model name (default: from the experiment)")
    parser.add_argument(
        "--min-improvement",
        type=float,
        default=0.0,
        help="how much the selection metric must beat the champion's by",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="promote to champion whatever the gate says (recorded as forced)",
    )
    args = parser.parse_args(argv)
    if args.min_improvement < 0:
        parser.error("--min-improvement must be >= 0")
    try:
        uri, experiment_name = chosen_store(args)
        client = MlflowClient(uri)
        summary = load_summary(client, resolve_sweep(client, experiment_name, args.sweep, uri))
        experiment = client.get_experiment(summary.parent.info.experiment_id).name
        name = args.name or default_model_name(experiment)
        decision = register_best(client, summary, name, args.min_improvement, args.force)
    except (NoSweepError, RegistryError, MlflowException, TrackingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(describe(decision))
    return 0


if __name__ == "__main__":
    sys.exit(main())
