"""A store as MedCore wrote it before the shared SQL layer (four SQLite files), for the migration test.

The schemas below are copied verbatim from the modules of that version (registry.py, auth.py, jobs/store.py and
audit.py at commit 8a13f3d); the rows are what those modules wrote.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

REGISTRY = """
CREATE TABLE IF NOT EXISTS versions (
    task TEXT NOT NULL,
    version TEXT NOT NULL,
    folder TEXT NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    origin TEXT NOT NULL,
    manifest TEXT NOT NULL,
    summary TEXT NOT NULL,
    discarded_at REAL,
    PRIMARY KEY (task, version)
);
CREATE TABLE IF NOT EXISTS production (
    task TEXT PRIMARY KEY,
    version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS promotions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    version TEXT NOT NULL,
    previous TEXT,
    at REAL NOT NULL,
    by TEXT NOT NULL,
    action TEXT NOT NULL
);
"""

USERS = """
CREATE TABLE IF NOT EXISTS sign_in_failures (
    client TEXT NOT NULL,
    name TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sign_in_failures_by_client ON sign_in_failures (client, at);
CREATE INDEX IF NOT EXISTS sign_in_failures_by_name ON sign_in_failures (name, at);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('clinician', 'admin')),
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    disabled_at REAL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,  -- unused since throttling moved to sign_in_failures; kept
    locked_until REAL NOT NULL DEFAULT 0         -- so that existing stores open unchanged
);
"""

JOBS = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    data_path TEXT NOT NULL,
    data_label TEXT NOT NULL,
    options TEXT NOT NULL,
    status TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    candidate_version TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL,
    at REAL NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events (job_id);
"""

AUDIT = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    model_version TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def write_legacy_store(folder: Path, password_hash: str, shipped: dict[str, str], candidate: tuple[str, str]) -> dict:
    """Four files with accounts, a throttle row, versions, production, promotions, a job with events and audit rows.

    shipped: task -> version of each shipped model (already copied under folder/models); candidate: (task, version)
    of one more registered version, promoted. Returns what the migration must carry over.
    """
    now = time.time()
    folder.mkdir(parents=True, exist_ok=True)
    files = {"registry": REGISTRY, "users": USERS, "jobs": JOBS, "audit": AUDIT}
    connections = {}
    for name, schema in files.items():
        connections[name] = sqlite3.connect(folder / f"{name}.sqlite")
        connections[name].execute("PRAGMA journal_mode=WAL")
        connections[name].executescript(schema)
    registry, users, jobs, audit = (connections[n] for n in files)
    rows = []
    for task, version in [*shipped.items(), candidate]:
        manifest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                    for p in sorted((folder / "models" / task / version).iterdir()) if p.is_file()}
        origin = "retrained" if (task, version) == candidate else "shipped"
        rows.append((task, version, f"models/{task}/{version}", now, "system", origin, json.dumps(manifest),
                     json.dumps({"metrics": {}, "labels": []})))
    registry.executemany("INSERT INTO versions (task, version, folder, created_at, created_by, origin, manifest, "
                         "summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    for task, version in shipped.items():
        registry.execute("INSERT INTO production (task, version) VALUES (?, ?)", (task, version))
        registry.execute("INSERT INTO promotions (task, version, previous, at, by, action) VALUES (?, ?, NULL, ?, "
                         "'system', 'install shipped model')", (task, version, now))
    task, version = candidate
    registry.execute("UPDATE production SET version=? WHERE task=?", (version, task))
    registry.execute("INSERT INTO promotions (task, version, previous, at, by, action) VALUES (?, ?, ?, ?, 'chief', "
                     "'promote')", (task, version, shipped[task], now + 1))
    users.execute("INSERT INTO users (name, role, password_hash, created_at, created_by) VALUES "
                  "('chief', 'admin', ?, ?, 'environment')", (password_hash, now))
    users.execute("INSERT INTO sign_in_failures (client, name, at) VALUES ('ip:10.0.0.9', 'chief', ?)", (now,))
    jobs.execute("INSERT INTO jobs (id, task, data_path, data_label, options, status, created_by, created_at, "
                 "finished_at, cancel_requested, candidate_version) VALUES ('job-old-1', ?, '/data', 'data', '{}', "
                 "'succeeded', 'chief', ?, ?, 0, ?)", (task, now, now, version))
    jobs.executemany("INSERT INTO job_events (job_id, at, event) VALUES ('job-old-1', ?, ?)",
                     [(now, json.dumps({"stage": "loading"})), (now + 1, json.dumps({"stage": "done"}))])
    for i in range(5):
        audit.execute("INSERT INTO audit (at, user, action, model_version, outcome, detail) VALUES (?, 'chief', "
                      "'sign_in', NULL, 'success', '{}')", (now + i,))
    for connection in connections.values():
        connection.commit()
        connection.close()
    return {"production": {**shipped, task: version}, "audit_rows": 5, "events": 2}

