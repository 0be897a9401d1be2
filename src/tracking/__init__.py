"""The MLflow store and its runs: the store's URI, experiment and queries, a job's run,
heartbeats and process identity, interrupts, and the sweep's view in the MLflow UI."""
