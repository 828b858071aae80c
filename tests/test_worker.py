"""Training on a worker through the queue (issue 22): a job started here runs in `medcore worker` (another process,
as on another machine), with live progress, cancel and the comparison with production; a worker killed with -9
leaves the job failed and the registry unchanged. Needs PostgreSQL (MEDCORE_TEST_POSTGRES_URL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from medcore import auth, jobs, registry
from medcore.jobs import store as job_store
from tests.conftest import new_postgres_database, postgres_url
from tests.synthetic import write_opacity_folder
from tests.test_jobs import TINY_XRAY, wait

pytestmark = pytest.mark.skipif(postgres_url() is None, reason="needs PostgreSQL (eval $(.ci/postgres start))")
ADMIN = auth.operator("admin-test")


@pytest.fixture()
def queued_store(tmp_path, monkeypatch, tmp_data_roots):
    """A PostgreSQL store with the procrastinate queue, a shared folder, and a short lease (a dead worker shows
    within seconds)."""
    with new_postgres_database() as url:
        for name, value in {"MEDCORE_DATABASE_URL": url, "MEDCORE_JOB_QUEUE": "procrastinate",
                            "MEDCORE_STORE_DIR": str(tmp_path / "server-store"),
                            "MEDCORE_SHARED_DIR": str(tmp_path / "shared"), "MEDCORE_JOB_LEASE_SECONDS": "6"}.items():
            monkeypatch.setenv(name, value)
        registry.ensure_defaults()
        yield tmp_path


def _worker(tmp_path) -> subprocess.Popen:
    """`medcore worker` with a store folder of its own: only the database and the shared folder are common."""
    env = {**os.environ, "MEDCORE_STORE_DIR": str(tmp_path / "worker-store"), "MEDCORE_SERVER_NAME": "worker-1"}
    return subprocess.Popen([sys.executable, "-m", "medcore.cli", "worker"], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "worker.log", "ab"), start_new_session=True)


@pytest.fixture(scope="module")
def films(tmp_path_factory, xray_model):
    return write_opacity_folder(tmp_path_factory.mktemp("films"), xray_model.artifact.quality_reference, 20)


def test_a_queued_job_runs_on_the_worker_and_is_compared_and_registered(queued_store, films):
    shipped = registry.production("xray").version
    job = jobs.start("xray", films, TINY_XRAY, ADMIN)
    assert job.status == "queued" and job.pid is None  # nothing runs here: it waits for a worker
    time.sleep(2)
    assert jobs.get(job.id).status == "queued"  # and waiting is not dying
    worker = _worker(queued_store)
    try:
        done = wait(job.id, timeout=300)
        assert done.status == "succeeded", (done.error, (queued_store / "worker.log").read_text()[-3000:])
        assert any(e["stage"] == "epoch" for e in jobs.events(job.id))  # live progress reached this server
        candidate = registry.get("xray", done.candidate_version)
        assert candidate.status == "candidate" and registry.production("xray").version == shipped
        from medcore.training import compare

        assert compare.load(candidate.path)[0]["production_version"] == shipped
        assert candidate.path.is_relative_to(queued_store / "shared")  # on the shared folder, for every server
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)


def test_cancel_reaches_the_worker_and_a_killed_worker_fails_its_job(queued_store, films):
    versions = {v.version for v in registry.list_versions("xray")}
    worker = _worker(queued_store)
    try:
        job = jobs.start("xray", films, {**TINY_XRAY, "epochs": 300}, ADMIN)
        wait(job.id, until=lambda j, events: any(e["stage"] == "epoch" for e in events), timeout=240)
        jobs.cancel(job.id, ADMIN)  # as from any server: a flag the job's own process watches
        assert wait(job.id, timeout=60).status == "cancelled"

        job = jobs.start("xray", films, {**TINY_XRAY, "epochs": 300}, ADMIN)
        running = wait(job.id, until=lambda j, events: any(e["stage"] == "epoch" for e in events), timeout=240)
        os.killpg(worker.pid, signal.SIGKILL)  # the worker, its child the job with it
        failed = wait(job.id, timeout=60)
        assert failed.status == "failed" and "ended unexpectedly" in failed.error
        time.sleep(1)
        assert not job_store._alive_here(running.pid, job.id)  # no orphan left that could still register a candidate
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    assert {v.version for v in registry.list_versions("xray")} == versions
