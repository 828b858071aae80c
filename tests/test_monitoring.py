"""Prometheus metrics (issue 34): what `medcore metrics serve` reads from the store, what the watcher counts, the
example alert rules (promtool), and a real Prometheus scraping `medcore metrics serve` and answering a query."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import insert

from medcore import audit, registry
from medcore.observability import drift_state
from medcore.observability.store_collector import StoreCollector
from medcore.store import schema, write

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "medcore-rules.yml"


def _scrape() -> tuple[CollectorRegistry, str]:
    drift_state.forget()
    metrics = CollectorRegistry()
    metrics.register(StoreCollector(cache_seconds=0, wait_for_drift=True))
    return metrics, generate_latest(metrics).decode()


def test_the_store_metrics_count_outcomes_jobs_versions_and_the_watcher(store):
    version = registry.production("xray").version
    for outcome in ("PNEUMONIA", "PNEUMONIA", "NORMAL", "unreadable", "outside intended use", "invalid model output"):
        audit.record("dr.lee", "predict_xray", outcome, version, study="0123456789abcdef", probability=0.5)
    audit.record("pacs-watcher", "pacs_analysis", "not a chest study", version, study="fedcba9876543210")
    audit.record("dr.lee", "predict_notes:symptom2disease", "Psoriasis", "notes-v1", note="aaaa")
    audit.record("dr.lee", "predict_notes:symptom2disease", "rejected", "notes-v1", note="bbbb")
    with write() as db:
        db.execute(insert(schema.jobs).values(id="job-20260101-000000-abcdef", task="xray", data_path="/d",
                                              data_label="d", options="{}", status="queued", created_by="chief",
                                              created_at=time.time() - 120, cancel_requested=False))
        db.execute(insert(schema.pacs_state).values(key="watch_last_poll", value=json.dumps({"at": 1700000000.0})))
    metrics, text = _scrape()
    value = metrics.get_sample_value
    assert value("medcore_studies_analysed_total", {"decision": "PNEUMONIA"}) == 2
    assert value("medcore_studies_refused_total", {"reason": "unreadable"}) == 1
    assert value("medcore_studies_refused_total", {"reason": "outside_intended_use"}) == 1
    assert value("medcore_studies_refused_total", {"reason": "not_chest"}) == 1
    assert value("medcore_studies_failed_total", {"reason": "invalid_output"}) == 1
    assert value("medcore_notes_total", {"task": "symptom2disease", "result": "analysed"}) == 1
    assert value("medcore_notes_total", {"task": "symptom2disease", "result": "rejected"}) == 1
    assert value("medcore_jobs", {"status": "queued"}) == 1 and value("medcore_job_queue_depth") == 1
    assert value("medcore_job_oldest_queued_age_seconds") >= 120
    assert value("medcore_production_version_info", {"task": "xray", "version": version}) == 1
    assert value("medcore_pacs_watcher_last_poll_timestamp_seconds") == 1700000000.0
    assert value("medcore_drift_warning", {"check": "share flagged PNEUMONIA"}) in (0, 1)
    assert value("medcore_store_up") == 1
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE medcore_")}
    assert len(families) >= 5, families
    for identifier in ("0123456789abcdef", "fedcba9876543210", "dr.lee", "chief", "job-2026"):
        assert identifier not in text  # no study digests, users or job ids in labels


def test_the_watcher_counts_polls_pacs_errors_and_study_latency(monkeypatch):
    from medcore.observability import instruments
    from medcore.pacs import watcher
    from medcore.pacs.client import PacsUnavailable

    calls = []

    class DownPacs:
        def chest_studies(self, first, last):
            calls.append(1)
            raise PacsUnavailable("connection refused")

    monkeypatch.setattr(watcher, "PacsClient", DownPacs)
    monkeypatch.setattr(watcher.production, "current_version", lambda task: "xray-v")
    monkeypatch.setattr(watcher.production, "load", lambda task: type("Served", (), {
        "model": type("Model", (), {"version": "xray-v"})()})())
    monkeypatch.setattr(watcher, "cursor", lambda default: default)
    before = REGISTRY.get_sample_value("medcore_pacs_errors_total", {"kind": "unavailable"}) or 0
    watcher.watch(should_stop=lambda: len(calls) >= 1, poll_seconds=0.01)
    assert REGISTRY.get_sample_value("medcore_pacs_up") == 0
    assert REGISTRY.get_sample_value("medcore_pacs_errors_total", {"kind": "unavailable"}) == before + 1
    instruments.study_handled("analysed", 1.5)
    assert REGISTRY.get_sample_value("medcore_pacs_study_duration_seconds_bucket",
                                     {"outcome": "analysed", "le": "2.0"}) >= 1


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus) is not installed")
def test_the_example_alert_rules_pass_promtool():
    checked = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for alert in ("MedCoreWatcherStalled", "MedCoreQueueStuck", "MedCoreDriftWarning", "MedCorePacsUnreachable"):
        assert alert in RULES.read_text()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus is not installed")
def test_a_real_prometheus_scrapes_medcore_metrics_serve(store, tmp_path):
    audit.record("dr.lee", "predict_xray", "NORMAL", registry.production("xray").version, study="0123456789abcdef")
    metrics_port, prometheus_port = _free_port(), _free_port()
    import os

    environment = {**os.environ, "MEDCORE_METRICS_CACHE_SECONDS": "0"}
    server = subprocess.Popen([sys.executable, "-m", "medcore.cli", "metrics", "serve", "--port", str(metrics_port)],
                              env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{RULES}']\n"
                      f"scrape_configs:\n  - job_name: medcore-store\n    static_configs:\n"
                      f"      - targets: ['127.0.0.1:{metrics_port}']\n")
    prometheus = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert json.loads(server.stdout.readline())["metrics"].endswith(f":{metrics_port}/metrics")
        query = urllib.parse.urlencode({"query": 'medcore_studies_analysed_total{decision="NORMAL"}'})

        def answered():
            with urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/api/v1/query?{query}", timeout=5) as r:
                return json.loads(r.read())["data"]["result"]

        result = _wait_for(answered, 60, "Prometheus to scrape medcore metrics serve")
        assert result[0]["metric"]["job"] == "medcore-store" and float(result[0]["value"][1]) == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/api/v1/rules", timeout=5) as response:
            groups = json.loads(response.read())["data"]["groups"]
        assert {rule["name"] for group in groups for rule in group["rules"]} >= {"MedCoreWatcherStalled",
                                                                                "MedCoreQueueStuck"}
    finally:
        for process in (prometheus, server):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
