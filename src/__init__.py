"""Hydra-configured scikit-learn sweeps tracked in MLflow."""

import os

# No network at run time: MLflow 3 would otherwise send usage telemetry from every process.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
