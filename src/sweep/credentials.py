"""Keep the passwords of URIs out of every config Hydra saves or sends to a job: the tracking
store's moves to MLFLOW_TRACKING_URI, the Optuna storage's to the sweeper's memory, and a
password in any other value is refused; and out of what Hydra itself prints to stderr.

Hydra saves the sweep's config (multirun.yaml) and every job's (`.hydra/config.yaml`,
`hydra.yaml`, `overrides.yaml`) before any code of a job runs, and a cluster launcher pickles
the job's config into its job folder. So the launching process redacts the sweep's config (the
callback's first hook, before Hydra saves it), and the composition of every job redacts the
job's config (`composition.CachingConfigLoader`), conf files' values included. A job reads the
real tracking URI from MLFLOW_TRACKING_URI, which it inherits from the launching process
(under SLURM, sbatch passes the environment on; on a Ray cluster, set it on the nodes).
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from src.sweep.search import STORAGE_ENV, open_storage_as
from src.tracking.store import redact_text, redacted

STORE_KEY, STORAGE_KEY = "mlflow.tracking_uri", "hydra.sweeper.storage"
# a search's trial names its storage to its job as the sweeper shows it (password hidden)
SHOWN = (STORE_KEY, STORAGE_KEY, f"hydra.job.env_set.{STORAGE_ENV}")
# what Hydra derives from the overrides: redacted with them, not refused
DERIVED = ("hydra.overrides.", "hydra.job.override_dirname")


class CredentialsError(ValueError):
    """A password in a config value that cannot be kept out of Hydra's files; names the key."""


def keep_credentials_out(config: DictConfig) -> None:
    """Redact the user-info of the URIs in `config` (the tracking store's, the Optuna storage's)
    and in its override lists, after handing the real ones on (MLFLOW_TRACKING_URI; the
    sweeper's memory); refuse a password anywhere else, naming the key."""
    for key, value in _strings(OmegaConf.to_container(config, resolve=False), ""):
        carried = key in SHOWN or key.startswith(DERIVED)
        if not carried and redact_text(value) != value:
            raise _refused(key, value)
    overrides = OmegaConf.select(config, "hydra.overrides", default=None)
    # as typed: an override's `${...}` is text here, not an interpolation to resolve
    lines = OmegaConf.to_container(overrides, resolve=False) if overrides is not None else {}
    assert isinstance(lines, dict)
    for line in [str(o) for group in ("task", "hydra") for o in lines.get(group) or []]:
        key = line.lstrip("+~").partition("=")[0]
        if redact_text(line) != line and key not in SHOWN:
            raise _refused(key, line.partition("=")[2])
    uri = _selected(config, STORE_KEY)
    storage = _selected(config, STORAGE_KEY)
    if uri is None and storage is None:
        return
    if uri is not None and not os.environ.get("MLFLOW_TRACKING_URI"):  # a set one wins
        os.environ["MLFLOW_TRACKING_URI"] = uri
    if storage is not None:
        open_storage_as(redacted(storage), storage)
    with read_write(config), open_dict(config):
        if uri is not None:
            config.mlflow.tracking_uri = redacted(uri)
        if storage is not None:
            config.hydra.sweeper.storage = redacted(storage)
        for group in ("task", "hydra"):
            if overrides is not None and group in lines:
                overrides[group] = [redact_text(str(o)) for o in lines[group]]
        job = OmegaConf.select(config, "hydra.job", default=None)
        if job is not None and isinstance(job.get("override_dirname"), str):
            job.override_dirname = redact_text(job.override_dirname)


def _selected(config: DictConfig, key: str) -> str | None:
    """The value at `key` when it is a URI with user-info, else None."""
    value = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
    return value if isinstance(value, str) and redacted(value) != value else None


def _strings(node: object, prefix: str) -> list[tuple[str, str]]:
    """Every string value of a container, with its dotted key."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _strings(v, f"{prefix}{k}.")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _strings(v, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), node)] if isinstance(node, str) else []


def _refused(key: str, value: str) -> CredentialsError:
    return CredentialsError(
        f"{key}={redact_text(value)!r} holds a password, which Hydra would save in its job "
        f"files; only {STORE_KEY} and {STORAGE_KEY} keep theirs out: give it as "
        f"${{oc.env:VARIABLE}} (resolved when used, never saved)"
    )


class RedactingStream:
    """A text stream (the command's stderr) that writes with the user-info of URIs redacted:
    Hydra echoes an override it refuses (`Could not override 'mlflow.trackinguri'. To append
    to your config use +mlflow.trackinguri=...`), password and all, before any code of ours."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        """Write `text`, redacted."""
        return int(self.stream.write(redact_text(text)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
