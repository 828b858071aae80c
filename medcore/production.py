"""Which model answers a prediction: the registry's production version, verified, or the last good one.

A corrupt or missing production model must not take the service down: it is reported with a clear
reason and the most recently promoted earlier version that loads is used instead, and the event is
audited. An explicit model folder (MEDCORE_XRAY_MODEL, `--model`) bypasses the registry.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from medcore import audit, config, registry
from medcore.artifacts import ModelLoadError


@dataclass
class Served:
    model: Any
    version: str
    warnings: list[str] = field(default_factory=list)


def folder_loader(task: str) -> Callable[[Path], Any]:
    """The function that loads a model folder of `task` (X-ray artifact or notes model)."""
    if task == "xray":
        from medcore.imaging.service import load_xray_model

        return load_xray_model
    from medcore.notes.service import load_task_model

    return lambda path: load_task_model(task.removeprefix("notes_"), path)


def current_version(task: str) -> str | None:
    """The production version's name (a cheap read, used as a cache key by the app)."""
    explicit = config.explicit_model_dir(task)
    if explicit is not None:
        return f"path:{explicit}"
    try:
        registry.ensure_defaults()
        entry = registry.production(task)
    except Exception:  # an unusable store must not stop predictions: load() falls back to the shipped model
        return None
    return entry.version if entry else None


def load(task: str) -> Served:
    """Load the model serving `task`; ModelLoadError only if no version at all can be loaded."""
    load_folder = folder_loader(task)
    explicit = config.explicit_model_dir(task)
    if explicit is not None:
        model = load_folder(explicit)
        return Served(model, model.version)
    warnings: list[str] = []
    try:
        registry.ensure_defaults()
        order = registry.fallback_order(task)
    except Exception as exc:
        warnings.append(f"The model registry in {config.store_dir()} cannot be read ({exc}); "
                        "using the shipped model.")
        order = []
    for entry in order:
        try:
            registry.verify(entry)
            model = load_folder(entry.path)
        except ModelLoadError as exc:
            warnings.append(f"Version {entry.version} cannot be used: {exc}")
            continue
        if warnings:
            warnings.append(f"Serving the previous good version {entry.version} instead.")
            _audit_fallback(task, entry.version, len(warnings) - 1)
        return Served(model, entry.version, warnings)
    model = load_folder(registry.shipped_dir(task))  # raises ModelLoadError with its reason if this fails too
    version = model.version
    if order:
        warnings.append(f"Serving the shipped model {version} instead.")
        _audit_fallback(task, version, len(order))
    return Served(model, version, warnings)


def _audit_fallback(task: str, version: str, failed: int) -> None:
    try:
        audit.record("system", f"model_fallback:{task}", "fallback", version, failed_versions=failed)
    except Exception as exc:  # the audit store may be what is broken; say so, keep serving
        print(f"medcore: could not audit a model fallback: {exc}", file=sys.stderr)
