"""The drift checks' warning state for the metrics: the same checks as `medcore drift xray` (30 days of the audit
log against the production X-ray model's validation reference), recomputed at most every few minutes.

Why not the loaded model: the checks need only the version's folder (meta.json, validation.npz and the quality
reference's feature summaries), so the metrics server reads those and never loads TensorFlow.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from prometheus_client.core import GaugeMetricFamily

from medcore import config, drift, registry
from medcore.artifacts import ModelInfo

log = logging.getLogger("medcore")
DAYS = 30
QUALITY_FILE = "quality.npz"  # the X-ray folder's out-of-distribution reference (imaging.model writes it)
_lock = threading.Lock()
_cached: dict[str, object] = {}


class _Reference(ModelInfo):
    """A production X-ray version as the drift checks see it, read from its folder alone."""

    def __init__(self, folder: Path) -> None:
        self.path = folder
        self.meta = json.loads((folder / "meta.json").read_text())

    def feature_summary_reference(self) -> np.ndarray | None:
        path = Path(self.path) / QUALITY_FILE
        if not path.is_file():
            return None
        with np.load(path) as npz:
            return npz["validation_summary"] if "validation_summary" in npz.files else None


def _compute() -> drift.DriftReport | None:
    version = registry.production("xray")
    if version is None:
        return None
    return drift.report(_Reference(version.path), drift.recent_studies(DAYS))


def _refresh() -> None:
    try:
        report = _compute()
    except Exception as exc:  # a model folder that cannot be read: no drift figures, the rest stands
        log.warning("metrics: the drift checks could not run (%s)", type(exc).__name__)
        report = None
    with _lock:
        _cached.update(at=time.time(), report=report, running=False)


def families(wait: bool = False) -> Iterable:
    """`medcore_drift_warning{check}` (1: the check warns) and how many recent studies it looked at.

    The checks read weeks of the audit log (seconds on a busy store), longer than a scrape may take: a stale
    result is recomputed in the background and the last one is served meanwhile (none before the first).
    wait=True computes in the caller (tests)."""
    with _lock:
        stale = not _cached.get("at") or time.time() - float(_cached["at"]) >= config.metrics_drift_seconds()
        start = stale and not _cached.get("running")
        if start:
            _cached["running"] = True
    if start and wait:
        _refresh()
    elif start:
        threading.Thread(target=_refresh, name="medcore-drift-metrics", daemon=True).start()
    with _lock:
        report = _cached.get("report")
    if report is None:
        return
    warning = GaugeMetricFamily("medcore_drift_warning", f"1 when a drift check on the last {DAYS} days of X-ray "
                                "studies warns (p < alpha), 0 when it does not or cannot test", labels=["check"])
    for check in report.checks:
        warning.add_metric([check.name], 1 if check.warning else 0)
    yield warning
    yield GaugeMetricFamily("medcore_drift_recent_studies", f"X-ray studies of the production version in the last "
                            f"{DAYS} days (the drift checks' sample)", value=report.n)


def forget() -> None:
    """Drop the cached result (tests; a process that must see a new state at once)."""
    with _lock:
        _cached.clear()
