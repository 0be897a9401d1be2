"""Check a config's `_target_`s before anything is instantiated: each names a class of the
kind allowed there (imported by its dotted path, nothing called), or the run is refused.

A `_target_` is code the config asks to run: `builtins.open` with `mode: w` truncates a file,
a function runs with whatever arguments the config gives it. So a target is allowed only when
it is a public class of the expected package (`sklearn.*`, `optuna.samplers.*`) or a name the
user listed in `allowed_targets`, and the class it names is of the expected kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

ALLOWED_KEY = "allowed_targets"  # conf/config.yaml: dotted names a user allows besides ours


class TargetError(ValueError):
    """A `_target_` is not a class this project may instantiate there; names key and value."""


def config_targets(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Every `(key, value)` of a `_target_` in `node` (resolved), nested ones included:
    `model._target_`, `model.estimator._target_`, `model.estimators.0._target_`."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_":
                yield f"{prefix}._target_", value
            else:
                yield from config_targets(value, f"{prefix}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from config_targets(value, f"{prefix}.{index}")


def resolve_class(
    key: str, target: Any, package: str, allowed: Iterable[str] | None = None
) -> type:
    """The class `target` names, imported without calling anything: it must be a public name
    under `package` or one of `allowed` (None: no list applies here), and a class."""
    listed = isinstance(target, str) and target in set(allowed or ())
    parts = target.split(".") if isinstance(target, str) else []
    ours = (
        isinstance(target, str)
        and target.startswith(f"{package}.")
        and all(p.isidentifier() and not p.startswith("_") for p in parts)
    )
    if not (listed or ours):
        hint = f" (or list the name in {ALLOWED_KEY})" if allowed is not None else ""
        raise TargetError(
            f"{key}={target!r} is not allowed: use a public class under {package}.{hint}"
        )
    found = _import(parts)
    if found is None:
        raise TargetError(f"{key}={target!r} cannot be imported: no such class")
    if not isinstance(found, type):
        raise TargetError(f"{key}={target!r} is not a class ({type(found).__name__})")
    return found


Kind = tuple[type, str]  # a base class, and how a message calls its subclasses


def check_targets(
    node: Any, prefix: str, package: str, top: Kind, nested: Kind, allowed: Iterable[str] = ()
) -> None:
    """Every `_target_` in `node` names an allowed class: the top one a subclass of `top`,
    the nested ones of `nested`."""
    allowed = list(allowed)
    found = False
    for key, target in config_targets(node, prefix):
        is_top = key == f"{prefix}._target_"
        found = found or is_top
        base, what = top if is_top else nested
        if not issubclass(resolve_class(key, target, package, allowed), base):
            raise TargetError(f"{key}={target!r} is not {what}")
    if not found:
        raise TargetError(f"{prefix}._target_ is missing: name a class under {package}.")


def allowed_targets(cfg: DictConfig) -> list[str]:
    """The names `allowed_targets` lists (none by default)."""
    listed = cfg.get(ALLOWED_KEY) or []
    if isinstance(listed, str) or not all(isinstance(n, str) for n in listed):
        raise TargetError(f"{ALLOWED_KEY}={listed!r} is not valid; use a list of dotted names")
    return [str(n) for n in listed]


def _import(parts: list[str]) -> Any:
    """The object at the dotted path `parts` (the longest importable module, then its
    attributes), or None."""
    for split in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name, None)
            if found is None:
                return None
        return found
    return None
