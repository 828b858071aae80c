"""kill -9 in the middle of a registration or a promotion leaves the registry consistent (issue 26): every
registered version's files are complete (its manifest verifies), production names a registered version whose
last history entry agrees, and the next registration or promotion goes through (no lock left behind)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "models" / "notes_symptom2disease"
TASK = "notes_symptom2disease"

WORKER = """
import sys
from pathlib import Path
from medcore import auth, registry
task, mode, arguments = sys.argv[1], sys.argv[2], sys.argv[3:]
registry.list_versions(task)  # the store opened (and its schema checked) before the clock starts
print("ready", flush=True)
if mode == "register":
    registry.register(task, Path(arguments[0]), "killer", origin="shipped")
    print("registered", flush=True)
else:
    operator, turn = auth.operator("killer"), 0
    while True:
        current = registry.production(task).version
        target = arguments[turn % len(arguments)]
        if target != current:
            registry.put_in_production(task, target, operator, expected_production=current)
        turn += 1
"""


def _candidate(tmp_path: Path, name: str) -> Path:
    """A copy of the shipped notes model under a version of its own, padded so that copying it takes a while."""
    folder = tmp_path / name
    shutil.copytree(SHIPPED, folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta["version"] = f"{meta['version']}-{name}"
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder / "padding.bin").write_bytes(os.urandom(64 * 1024 * 1024))
    return folder


def _start(*arguments: str) -> subprocess.Popen:
    worker = subprocess.Popen([sys.executable, "-c", WORKER, TASK, *arguments], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    assert worker.stdout.readline().strip() == "ready"
    return worker


def _assert_consistent() -> None:
    from medcore import registry

    versions = registry.list_versions(TASK)
    for version in versions:
        registry.verify(version)  # complete files: a half-copied version is never registered
    production = registry.production(TASK)
    assert production is not None and production.version in {v.version for v in versions}
    assert registry.history(TASK)[0]["version"] == production.version, registry.history(TASK)[0]  # newest first


@pytest.mark.both_engines
def test_a_kill_during_registration_leaves_no_half_registered_version(store, tmp_path):
    from medcore import registry

    timing = _start("register", str(_candidate(tmp_path, "timed")))  # how long one registration takes here
    started = time.perf_counter()
    assert timing.stdout.readline().strip() == "registered"
    duration = time.perf_counter() - started
    timing.wait(timeout=30)
    rng = np.random.default_rng(0)
    outcomes = []
    for attempt in range(10):
        folder = _candidate(tmp_path, f"kill{attempt}")
        version = json.loads((folder / "meta.json").read_text())["version"]
        worker = _start("register", str(folder))
        time.sleep(float(rng.uniform(0.05, 0.95)) * duration)  # somewhere inside the registration
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        _assert_consistent()
        registered = version in {v.version for v in registry.list_versions(TASK)}
        outcomes.append(registered)
        if not registered:  # what the crash left behind never stands in the way of the next try
            retry = registry.register(TASK, folder if folder.exists() else _candidate(tmp_path, f"again{attempt}"),
                                      "tester", origin="shipped")
            registry.verify(retry)
    _assert_consistent()
    assert False in outcomes, "no kill landed before the registration finished: the test proved nothing"


@pytest.mark.both_engines
def test_a_kill_during_promotions_leaves_production_and_its_history_agreeing(store, tmp_path):
    from medcore import auth, registry

    versions = [registry.register(TASK, _candidate(tmp_path, name), "tester", origin="shipped").version
                for name in ("left", "right")]
    rng = np.random.default_rng(1)
    for _ in range(4):
        worker = _start("promote", *versions)
        time.sleep(float(rng.uniform(1.0, 2.5)))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        _assert_consistent()
        assert registry.production(TASK).version in versions + [json.loads((SHIPPED / "meta.json").read_text())[
            "version"]]
    current = registry.production(TASK).version
    other = next(v for v in versions if v != current)
    registry.put_in_production(TASK, other, auth.operator("tester"), expected_production=current)  # no lock left
    assert registry.production(TASK).version == other
    assert len([h for h in registry.history(TASK) if h["by"] == "killer"]) >= 4  # the worker did promote
