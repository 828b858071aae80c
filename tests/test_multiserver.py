"""Two app servers and a training worker on one PostgreSQL store, driven in headless Chromium (issue 22).

An admin on server 1 starts a retrain, the worker runs it, the admin promotes it on server 2, and a clinician on
server 1 is served the new version; the audit log holds rows from both servers; `kill -9` of the worker mid-training
leaves the job failed and the registry unchanged; `kill -9` of server 1 leaves server 2's sessions alone, and a
user of server 1 signs in again on server 2 and carries on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import new_postgres_database, postgres_url
from tests.test_e2e import ADMIN, CHROMIUM, CLINICIAN, SCREENSHOTS, _free_port, sign_in
from tests.test_sso import ACCOUNTS, OIDC_URL, SSO_ENVIRONMENT, write_secrets

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed"),
              pytest.mark.skipif(postgres_url() is None, reason="needs PostgreSQL (eval $(.ci/postgres start))")]
ROOT = Path(__file__).resolve().parents[1]


def _wait_healthy(url: str, process: subprocess.Popen, seconds: float = 90) -> None:
    import urllib.request

    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url} stopped while starting")
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not start within {seconds:.0f} s")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """PostgreSQL + a shared folder; server-1, server-2 (each with a store folder of its own) and worker-1."""
    root = tmp_path_factory.mktemp("deployment")
    with new_postgres_database() as database:
        common = {**os.environ, "MEDCORE_DATABASE_URL": database, "MEDCORE_JOB_QUEUE": "procrastinate",
                  "MEDCORE_SHARED_DIR": str(root / "shared"), "MEDCORE_JOB_LEASE_SECONDS": "6",
                  "MEDCORE_ADMIN_USER": ADMIN[0], "MEDCORE_ADMIN_PASSWORD": ADMIN[1],
                  "MEDCORE_DATA_ROOTS": os.pathsep.join([str(ROOT.parent / "shared" / "data"), tempfile.gettempdir()])}
        processes, urls = {}, {}
        proxy_port = _free_port()  # one address in front of both servers (test_two_servers_...hospital_sign_in)
        hospital = ("--secrets.files", str(write_secrets(root / "secrets.toml",
                                                         f"http://127.0.0.1:{proxy_port}/oauth2callback"))) \
            if OIDC_URL else ()
        for name in ("server-1", "server-2"):
            port = _free_port()
            env = {**common, "MEDCORE_STORE_DIR": str(root / name), "MEDCORE_SERVER_NAME": name, **SSO_ENVIRONMENT}
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                 "--server.address", "127.0.0.1", "--server.headless", "true", *hospital], cwd=ROOT, env=env,
                stdout=subprocess.DEVNULL, stderr=open(root / f"{name}.log", "w"), start_new_session=True)
            urls[name] = f"http://127.0.0.1:{port}"
            _wait_healthy(urls[name], processes[name])
        added = subprocess.run([sys.executable, "-m", "medcore.cli", "users", "add", CLINICIAN[0]], cwd=ROOT,
                               env={**common, "MEDCORE_STORE_DIR": str(root / "cli"),
                                    "MEDCORE_NEW_PASSWORD": CLINICIAN[1]}, capture_output=True, text=True, timeout=120)
        assert added.returncode == 0, added.stderr

        def start_worker() -> subprocess.Popen:
            return subprocess.Popen([sys.executable, "-m", "medcore.cli", "worker"], cwd=ROOT,
                                    env={**common, "MEDCORE_STORE_DIR": str(root / "worker"),
                                         "MEDCORE_SERVER_NAME": "worker-1"},
                                    stdout=subprocess.DEVNULL, stderr=open(root / "worker.log", "a"),
                                    start_new_session=True)

        processes["worker-1"] = start_worker()
        yield {"urls": urls, "processes": processes, "database": database, "root": root, "start_worker": start_worker,
               "env": common, "proxy_port": proxy_port}
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)


def _store(deployment, monkeypatch) -> None:
    """This test process reads the same store as the servers."""
    from medcore import store

    monkeypatch.setenv("MEDCORE_DATABASE_URL", deployment["database"])
    monkeypatch.setenv("MEDCORE_SHARED_DIR", str(deployment["root"] / "shared"))
    monkeypatch.setenv("MEDCORE_JOB_QUEUE", "procrastinate")
    monkeypatch.setenv("MEDCORE_JOB_LEASE_SECONDS", "6")
    store.forget_engines()
    from medcore import registry

    registry.ensure_defaults()  # as any server or command does at its start


def test_a_retrain_started_on_one_server_runs_on_the_worker_and_is_promoted_on_the_other(
        deployment, browser, xray_model, tmp_path, monkeypatch):
    from medcore import audit, registry
    from tests.synthetic import write_opacity_folder

    _store(deployment, monkeypatch)
    urls = deployment["urls"]
    shipped = registry.production("xray").version
    films = write_opacity_folder(tmp_path / "films", xray_model.artifact.quality_reference, 16)
    one = sign_in(browser, urls["server-1"], ADMIN, 1900)
    one.get_by_role("link", name="Models & retraining").click()
    one.get_by_text("In production:").wait_for(timeout=60_000)
    one.get_by_label("Path on the server").fill(str(films))
    one.get_by_role("spinbutton", name="Epochs per member").fill("4")
    one.get_by_role("combobox", name="Image size (px)").click()
    one.get_by_role("option", name="64", exact=True).click()
    one.get_by_role("combobox", name="Ensemble members").click()
    one.get_by_role("option", name="1", exact=True).click()
    one.get_by_role("button", name="Start retraining").click()
    one.get_by_text("Both models scored on the same").wait_for(timeout=300_000)  # the worker trained and compared
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    one.screenshot(path=str(SCREENSHOTS / "multiserver_candidate_on_server1.png"), full_page=True)
    candidate = next(v for v in registry.list_versions("xray") if v.status == "candidate")

    two = sign_in(browser, urls["server-2"], ADMIN, 1900)
    two.get_by_role("link", name="Models & retraining").click()
    two.get_by_text(f"Candidate {candidate.version}").wait_for(timeout=60_000)
    two.get_by_role("button", name="Promote to production").click()
    two.get_by_text(f"In production: {candidate.version}").wait_for(timeout=60_000)
    two.screenshot(path=str(SCREENSHOTS / "multiserver_promoted_on_server2.png"), full_page=True)
    assert registry.production("xray").version == candidate.version != shipped

    clinician = sign_in(browser, urls["server-1"], CLINICIAN, 1400)
    clinician.get_by_text(f"Model `{candidate.version}`").or_(
        clinician.get_by_text(candidate.version)).first.wait_for(timeout=90_000)  # server 1 serves the new version
    clinician.screenshot(path=str(SCREENSHOTS / "multiserver_clinician_server1.png"))
    servers = {row["server"] for row in audit.recent(500)}
    assert {"server-1", "server-2", "worker-1"} <= servers
    train_rows = [r for r in audit.recent(500) if r["action"] == "train:xray"]
    assert train_rows and train_rows[0]["server"] == "worker-1"  # the job ran there
    for page in (one, two, clinician):
        page.close()


def test_killing_the_worker_mid_training_fails_the_job_and_changes_nothing(deployment, xray_model, tmp_path,
                                                                           monkeypatch, tmp_data_roots):
    from medcore import auth, jobs, registry
    from tests.synthetic import write_opacity_folder
    from tests.test_jobs import wait

    _store(deployment, monkeypatch)
    versions, production = {v.version for v in registry.list_versions("xray")}, registry.production("xray").version
    films = write_opacity_folder(tmp_path / "films", xray_model.artifact.quality_reference, 16)
    job = jobs.start("xray", films, {"epochs": 300, "image_size": 64, "members": 1, "batch_size": 8},
                     auth.operator("cli:tests"))
    wait(job.id, until=lambda j, events: any(e["stage"] == "epoch" for e in events), timeout=240)
    os.killpg(deployment["processes"]["worker-1"].pid, signal.SIGKILL)
    failed = wait(job.id, timeout=60)
    assert failed.status == "failed" and "ended unexpectedly" in failed.error
    assert {v.version for v in registry.list_versions("xray")} == versions
    assert registry.production("xray").version == production
    deployment["processes"]["worker-1"] = deployment["start_worker"]()  # back for the next test


class _OneAddress:
    """A TCP proxy on one loopback port in front of either server (HTTP and WebSocket alike), as a load balancer is:
    `to(url)` sends new connections to that server and closes the open ones, so the browser's next request goes there."""

    def __init__(self, port: int):
        import socket
        import threading

        self.target, self.open = None, set()
        self.listener = socket.create_server(("127.0.0.1", port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            self.open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            self._close(end)

    def _close(self, end) -> None:
        import socket

        self.open.discard(end)
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        end.close()

    def to(self, url: str) -> None:
        self.target = int(url.rsplit(":", 1)[1])
        for end in list(self.open):
            self._close(end)

    def close(self) -> None:
        self.listener.close()
        for end in list(self.open):
            self._close(end)


@pytest.mark.skipif(not OIDC_URL, reason="needs the OpenID Provider (eval $(.ci/oidc start))")
def test_two_servers_behind_one_address_accept_a_hospital_sign_in(deployment, browser, monkeypatch):
    """The sign-in starts on server 2 (Authlib's state in its session cookie), the provider sends the browser back to
    server 1 (which reads that state: one cookie secret), and server 2 then accepts the identity server 1 set."""
    proxy = _OneAddress(deployment["proxy_port"])
    address = f"http://127.0.0.1:{deployment['proxy_port']}"
    try:
        proxy.to(deployment["urls"]["server-2"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(address)
        page.get_by_role("button", name="Sign in with your hospital account").click()
        page.get_by_label("Username").wait_for(timeout=30_000)
        page.get_by_label("Username").fill(ACCOUNTS["clinician"][0])
        page.get_by_label("Password").fill(ACCOUNTS["clinician"][1])
        proxy.to(deployment["urls"]["server-1"])
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Signed in as").wait_for(timeout=90_000)  # on server 1
        proxy.to(deployment["urls"]["server-2"])
        page.reload()
        page.get_by_text("Signed in as").wait_for(timeout=90_000)  # server 2 accepts the same identity
        page.get_by_role("link", name="Chest X-ray").wait_for()
        page.close()
    finally:
        proxy.close()
    from medcore import audit

    _store(deployment, monkeypatch)
    rows = [row for row in audit.recent(200) if row["action"] == "sign_in" and row["user"] == "sso:dr.grey"]
    assert {row["server"] for row in rows} >= {"server-1", "server-2"}


def test_killing_a_server_leaves_the_other_servers_sessions_alone(deployment, browser, xray_model):
    from tests.synthetic import chest_like, encode

    urls = deployment["urls"]
    on_two = sign_in(browser, urls["server-2"], CLINICIAN, 1400)
    on_one = sign_in(browser, urls["server-1"], CLINICIAN, 1400)
    os.killpg(deployment["processes"]["server-1"].pid, signal.SIGKILL)
    deployment["processes"]["server-1"].wait(timeout=30)
    film = encode(chest_like(xray_model.artifact.quality_reference, 512, 512, seed=21), "PNG")
    on_two.locator("input[type=file]").set_input_files([{"name": "after.png", "mimeType": "image/png", "buffer": film}])
    on_two.get_by_text("1 studies:").wait_for(timeout=90_000)  # server 2's session carries on
    on_one.close()
    again = sign_in(browser, urls["server-2"], CLINICIAN, 1400)  # server 1's user, now on server 2
    again.locator("input[type=file]").set_input_files([{"name": "moved.png", "mimeType": "image/png", "buffer": film}])
    again.get_by_text("1 studies:").wait_for(timeout=90_000)
    again.screenshot(path=str(SCREENSHOTS / "multiserver_after_server1_died.png"))
    on_two.close()
    again.close()
