"""Accounts and sign-in: only bcrypt hashes are stored, failures lock, sessions expire, admin pages refuse others."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from medcore import audit, auth, config
from tests.conftest import PASSWORDS, ensure_user, signed_in_app

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDCORE_STORE_DIR", str(tmp_path))
    return tmp_path


def test_only_a_bcrypt_hash_is_stored(store):
    password = "a long secret phrase 42"
    auth.add_user("dr.grey", password, "clinician", "tests")
    for path in store.glob("medcore.sqlite*"):
        assert password.encode() not in path.read_bytes()
    with sqlite3.connect(store / "medcore.sqlite") as db:
        stored = db.execute("SELECT password_hash FROM users WHERE name='dr.grey'").fetchone()[0]
    assert stored.startswith("$2b$12$") and bcrypt.checkpw(password.encode(), stored.encode())
    assert auth.authenticate("dr.grey", password)[0].role == "clinician"
    assert auth.authenticate("dr.grey", password + "x") == (None, auth.WRONG)
    assert auth.authenticate("nobody", password) == (None, auth.WRONG)


@pytest.mark.parametrize("name, password, reason", [
    ("dr.grey", "short", "at least 12"),
    ("dr.grey", "dr.grey-is-my-password", "user name"),
    ("dr.grey", "é" * 40, "at most 72 bytes"),
    ("Dr Grey!", "a long secret phrase", "lower-case"),
])
def test_weak_passwords_and_odd_names_are_refused(store, name, password, reason):
    with pytest.raises(auth.AuthError, match=reason):
        auth.add_user(name, password, "admin", "tests")
    assert not auth.has_users()


def test_repeated_failures_slow_that_address_and_name_with_a_growing_delay_never_a_lock(store):
    auth.add_user("chief", "a long secret phrase", "admin", "tests")
    now = time.time()
    for i in range(auth.PAIR_FREE_FAILURES):
        assert auth.authenticate("chief", "wrong guess here", "ip:stranger", now + i)[0] is None
    last = now + auth.PAIR_FREE_FAILURES - 1
    user, reason = auth.authenticate("chief", "a long secret phrase", "ip:stranger", last + 0.5)
    assert user is None and "Too many failed sign-ins; try again in 1 s" in reason
    # The real admin, from another address, is not slowed; the stranger's wait grows 1, 2, 4 s ... and then passes.
    assert auth.authenticate("chief", "a long secret phrase", "ip:chief-desk", last + 0.5)[0].is_admin
    for extra, wait in enumerate((1, 2, 4, 8)):
        assert auth.authenticate("chief", "wrong guess here", "ip:stranger", last + wait + 0.01)[0] is None
        last += wait + 0.01
        assert "try again" in auth.authenticate("chief", "x" * 12, "ip:stranger", last + 0.5)[1]
    assert auth.authenticate("chief", "a long secret phrase", "ip:stranger", last + 16.1)[0].is_admin


def test_a_name_guessed_from_many_addresses_is_slowed_for_a_minute_at_most(store, monkeypatch):
    """Behind one NAT many people share an address; a botnet uses many: the name itself gets a growing delay, capped
    at a minute, so an attacker can slow an admin but never lock them out."""
    auth.add_user("chief", "a long secret phrase", "admin", "tests")
    auth.add_user("dr.nat", "a long secret phrase", "clinician", "tests")
    monkeypatch.setattr(auth.bcrypt, "checkpw", lambda secret, hashed: secret == b"a long secret phrase")  # fast
    now = time.time()
    evaluated = []
    for second in range(300):  # a botnet tries once a second, from a new address each time
        answer = auth.authenticate("chief", "wrong guess here", f"ip:bot{second}", now + second)[1]
        evaluated += [now + second] if answer == auth.WRONG else []
    assert auth.NAME_FREE_FAILURES < len(evaluated) < 40  # after 20 failures, one guess a minute at most
    assert "try again" in auth.authenticate("chief", "a long secret phrase", "ip:chief-desk", evaluated[-1] + 1)[1]
    assert auth.authenticate("chief", "a long secret phrase", "ip:chief-desk",
                             evaluated[-1] + auth.NAME_MAX_DELAY + 1)[0].is_admin
    # Twenty wrong names from one address (colleagues behind one NAT mistyping) slow nobody else's name there.
    for i in range(25):
        auth.authenticate(f"name{i}", "wrong guess here", "ip:hospital-nat", now)
    assert auth.authenticate("dr.nat", "a long secret phrase", "ip:hospital-nat", now + 1)[0]


@pytest.mark.parametrize("peer, forwarded, trusted, expected", [
    ("203.0.113.7", None, [], "ip:203.0.113.7"),
    (None, None, [], "ip:127.0.0.1"),  # loopback: an address, never the session (a reload would reset it)
    ("203.0.113.7", "198.51.100.1", [], "ip:203.0.113.7"),  # not from a proxy: the header is ignored
    ("10.0.0.2", "198.51.100.1", ["10.0.0.0/8"], "ip:198.51.100.1"),
    ("10.0.0.2", "6.6.6.6, 198.51.100.1, 10.0.0.9", ["10.0.0.0/8"], "ip:198.51.100.1"),  # a forged left part is
    (None, "198.51.100.1", ["127.0.0.1"], "ip:198.51.100.1"),  # a proxy on the same host
    # two header lines (HAProxy adds its own line): the browser's forged first line is not believed
    ("10.0.0.2", ["198.51.100.77", "203.0.113.9"], ["10.0.0.0/8"], "ip:203.0.113.9"),
    ("10.0.0.2", "203.0.113.9:4444", ["10.0.0.0/8"], "ip:203.0.113.9"),  # a port does not make a new address
    ("10.0.0.2", "[2001:db8::1]:443", ["10.0.0.0/8"], "ip:2001:db8::1"),
    ("10.0.0.2", "198.51.100.1", ["proxy.internal", "10.0.0.0/8"], "ip:198.51.100.1"),  # a bad entry is ignored
    ("10.0.0.2", "not-an-address", ["10.0.0.0/8"], "ip:10.0.0.2"),
])
def test_the_client_address_believes_forwarded_for_only_from_trusted_proxies(peer, forwarded, trusted, expected):
    assert auth.client_address(peer, forwarded, trusted) == expected


def test_sign_in_tells_a_stranger_nothing(store):
    """Unknown name, wrong password, disabled account (even with the right password), throttled name that does
    or does not exist: one message per situation, the same bcrypt cost for unknown names."""
    auth.add_user("dr.gone", "a long secret phrase", "clinician", "tests")
    auth.add_user("dr.here", "a long secret phrase", "clinician", "tests")
    auth.set_disabled("dr.gone", True)
    answers = {auth.authenticate("dr.gone", "a long secret phrase")[1], auth.authenticate("dr.gone", "wrong one!!")[1],
               auth.authenticate("dr.here", "wrong one!!")[1], auth.authenticate("nobody.at.all", "whatever")[1]}
    assert answers == {auth.WRONG}
    assert auth._dummy().startswith(f"$2b${auth.BCRYPT_ROUNDS}$".encode())  # same cost as real hashes
    now = time.time()
    for name in ("dr.here", "nobody.at.all"):
        for _ in range(auth.PAIR_FREE_FAILURES):
            auth.authenticate(name, "wrong one!!", "ip:probe", now)
    assert auth.authenticate("dr.here", "x", "ip:probe", now)[1] == auth.authenticate("nobody.at.all", "x",
                                                                                      "ip:probe", now)[1]


def test_first_admin_comes_from_the_environment_only_while_there_is_no_admin(store, monkeypatch):
    auth.add_user("dr.early", "a long secret phrase", "clinician", "tests")
    monkeypatch.setenv("MEDCORE_ADMIN_USER", "chief")
    monkeypatch.setenv("MEDCORE_ADMIN_PASSWORD", "first start secret")
    assert auth.create_admin_from_environment() == "chief"
    assert auth.get_user("chief").is_admin
    monkeypatch.setenv("MEDCORE_ADMIN_USER", "intruder")
    assert auth.create_admin_from_environment() is None and auth.get_user("intruder") is None


def test_sessions_expire_when_idle_and_when_old():
    now = time.time()
    assert auth.session_expired(now - 60, now - 10, now) is None
    assert "without activity" in auth.session_expired(now - 3600, now - config.session_idle_seconds() - 1, now)
    assert "hours" in auth.session_expired(now - config.session_max_seconds() - 1, now - 5, now)


def test_users_cli_creates_the_first_admin_without_echoing_the_password(store):
    env = {**os.environ, "MEDCORE_STORE_DIR": str(store), "MEDCORE_NEW_PASSWORD": "cli typed secret"}
    done = subprocess.run([sys.executable, "-m", "medcore.cli", "users", "add", "--admin", "boss"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"user": "boss", "role": "admin"} and "cli typed secret" not in done.stdout
    assert auth.authenticate("boss", "cli typed secret")[0].is_admin
    again = subprocess.run([sys.executable, "-m", "medcore.cli", "users", "add", "boss"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_anonymous_visitors_see_only_the_sign_in_page():
    ensure_user("test-clinician", "clinician")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "MedCore" and at.button[0].label == "Sign in"
    assert "Chest X-ray" not in " ".join(str(m.value) for m in at.markdown)


def test_signing_in_through_the_form_opens_the_clinical_pages_only():
    ensure_user("test-clinician", "clinician")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.text_input[0].input("test-clinician")
    at.text_input[1].input("wrong password here")
    at.button[0].click().run()
    assert at.error[0].value == auth.WRONG
    at.text_input[1].input(PASSWORDS["clinician"])
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Chest X-ray: pneumonia"
    assert "Signed in as **test\\-clinician** (clinician)" in [m.value for m in at.sidebar.markdown]
    assert [r["outcome"] for r in audit.recent(2) if r["action"] == "sign_in"] == ["success", "refused"]
    with pytest.raises(ValueError, match="Known pages: .*xray.py.*notes.py.*performance.py'\\]"):
        at.switch_page("views/admin.py").run()  # not in a clinician's navigation at all


@pytest.mark.parametrize("role", [None, "clinician"])
def test_admin_pages_refuse_everyone_else_even_when_run_directly(role):
    for page in ("views/admin.py", "views/audit_log.py"):
        at = AppTest.from_file(str(REPO / page), default_timeout=60)
        if role:
            ensure_user("test-clinician", role)
            at.session_state["auth"] = {"name": "test-clinician", "signed_in_at": time.time(),
                                        "last_seen": time.time()}
        at.run()
        assert [e.value for e in at.error] == ["This page is for administrators only."]
        assert len(at.button) == 0 and len(at.dataframe) == 0


def test_an_idle_session_ends_and_forgets_the_session_state():
    ensure_user("test-clinician", "clinician")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    long_ago = time.time() - config.session_idle_seconds() - 5
    at.session_state["auth"] = {"name": "test-clinician", "signed_in_at": long_ago, "last_seen": long_ago}
    at.session_state["xray_results"] = {"cached": "result"}
    at.run()
    assert at.button[0].label == "Sign in"
    assert "without activity" in at.info[0].value
    assert "xray_results" not in at.session_state


def test_admins_see_the_administration_pages():
    at = signed_in_app("admin")
    assert not at.exception, at.exception
    at.switch_page("views/audit_log.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Audit log"


def test_a_weak_first_admin_password_is_refused_with_a_message(store, monkeypatch):
    monkeypatch.setenv("MEDCORE_ADMIN_USER", "chief")
    monkeypatch.setenv("MEDCORE_ADMIN_PASSWORD", "admin")
    st.cache_resource.clear()  # as a fresh server start: the first-start step runs once per process
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    assert "were not used: The password needs at least 12 characters" in at.error[0].value
    assert auth.get_user("chief") is None
