"""Which model answers a prediction: the registry's production version, verified, or the last good one.

A corrupt or missing production model must not take the service down: it is reported with a clear
reason and the most recently promoted earlier version that loads is used instead, and the event is
audited. An explicit model folder (MEDCORE_<TASK>_MODEL, `--model`) bypasses the registry. Nothing
here writes to the registry: the shipped models are installed once at start (registry.ensure_defaults),
and an empty registry simply serves the shipped model.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Any

from medcore import audit, config, registry, store, tasks
from medcore.artifacts import ModelLoadError

log = logging.getLogger("medcore")


@dataclass
class Served:
    model: Any
    version: str
    warnings: list[str] = field(default_factory=list)


def current_version(task: str) -> str | None:
    """The production version's name (a cheap read, used as a cache key by the app)."""
    task = tasks.get(task)
    explicit = config.model_pin(task.key)
    if explicit is not None:
        return f"path:{explicit}"
    try:
        entry = registry.production(task.key)
    except Exception:  # an unusable store must not stop predictions: load() falls back to the shipped model
        return None
    return entry.version if entry else None


def load(task: str) -> Served:
    """Load the model serving `task` (a key or alias); ModelLoadError only if no version at all can be loaded."""
    task = tasks.get(task)
    explicit = config.model_pin(task.key)
    if explicit is not None:
        model = task.load(explicit)
        return Served(model, model.version)
    warnings: list[str] = []
    try:
        order = registry.fallback_order(task.key)
    except Exception as exc:
        warnings.append(f"The model registry ({store.describe()}) cannot be read ({type(exc).__name__}); "
                        "using the shipped model.")
        order = []
    for entry in order:
        try:
            registry.verify(entry)
            model = task.load(entry.path)
        except ModelLoadError as exc:
            warnings.append(f"Version {entry.version} cannot be used: {exc}")
            continue
        if warnings:
            warnings.append(f"Serving the previous good version {entry.version} instead.")
            _audit_fallback(task.key, entry.version, len(warnings) - 1)
            _log_warnings(task.key, warnings)
        return Served(model, entry.version, warnings)
    model = task.load(task.shipped_dir)  # raises ModelLoadError with its reason if this fails too
    version = model.version
    if order:
        warnings.append(f"Serving the shipped model {version} instead.")
        _audit_fallback(task.key, version, len(order))
    _log_warnings(task.key, warnings)
    return Served(model, version, warnings)


def _log_warnings(task: str, warnings: list[str]) -> None:
    """The reasons for a fallback, for the administrator: the server log (pages show no server paths)."""
    for warning in warnings:
        log.warning("%s model: %s", task, warning)


def _audit_fallback(task: str, version: str, failed: int) -> None:
    try:
        audit.record("system", f"model_fallback:{task}", "fallback", version, failed_versions=failed)
    except Exception as exc:  # the audit store may be what is broken; say so, keep serving
        print(f"medcore: could not audit a model fallback: {exc}", file=sys.stderr)
