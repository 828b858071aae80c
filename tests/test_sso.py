"""Sign-in through the hospital's OpenID Provider (issue 33).

Unit tests: the claims MedCore accepts (issuer, audience, freshness, groups claim, roles), the account keyed by issuer +
subject whose role admin actions re-check, break-glass, and Authlib's checks as Streamlit's own callback wires them (a
tampered state, an ID token from another issuer or for another audience: no identity cookie, an audit row).
End to end: a real OpenID Provider (`eval "$(.ci/oidc start)"`: panva's oidc-provider) and the app in Chromium; a
clinician, an admin and someone in no MedCore group sign in through the provider's page; a changed group shows at the
next sign-in.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

ISSUER, CLIENT = "https://login.hospital.test/realm", "medcore"
GROUPS = {"admin": ("medcore-admins", "0f3c-admin-id"), "clinician": ("medcore-clinicians",), "claim": "groups"}


def _claims(**changes) -> dict:
    now = time.time()
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "a1b2", "iat": now - 5, "exp": now + 3600, "nonce": "n",
              "name": "Dr <i>Who</i>", "groups": ["medcore-clinicians"]}
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def _identity(claims: dict, **kwargs):
    from medcore import sso

    return sso.identity(claims, issuer=ISSUER, client_id=CLIENT, settings=GROUPS, **kwargs)


def test_claims_from_another_issuer_for_another_audience_or_stale_are_refused():
    from medcore import sso

    assert _identity(_claims()).role == "clinician"
    for claims, code in ((_claims(iss="https://evil.test"), "wrong_issuer"), (_claims(aud="other-app"), "wrong_audience"),
                         (_claims(aud=["other-app", CLIENT], azp="other-app"), "wrong_audience"),
                         (_claims(sub=""), "no_subject"), (_claims(exp=time.time() - 600), "expired"),
                         (_claims(iat=time.time() - 3600), "stale"), (_claims(iat=None), "stale")):
        with pytest.raises(sso.Refused) as refused:
            _identity(claims)
        assert refused.value.code == code
    assert _identity(_claims(aud=[CLIENT, "api"], azp=CLIENT)).subject == "a1b2"
    assert sso.expected_issuer(ISSUER + "/.well-known/openid-configuration") == ISSUER


def test_roles_come_from_the_groups_claim_and_a_missing_claim_is_refused(monkeypatch, tmp_path):
    from medcore import config, sso

    with pytest.raises(sso.Refused) as refused:
        _identity(_claims(groups=None))
    assert refused.value.code == "no_groups_claim" and "'groups' claim" in refused.value.message
    assert _identity(_claims(groups=["finance"])).role is None  # refused by the caller, with its own message
    assert _identity(_claims(groups=["x", "0f3c-admin-id"])).role == "admin"  # group ids work as names do
    assert _identity(_claims(groups="medcore-admins")).role == "admin"  # a single group as a string
    person = _identity(_claims(name=None, preferred_username="who\x1b[31m"))
    assert person.display_name == "who[31m"  # control characters dropped; escaped where shown
    monkeypatch.setenv("MEDCORE_OIDC_ADMIN_GROUPS", " admins , it ")
    monkeypatch.setenv("MEDCORE_OIDC_GROUPS_CLAIM", "roles")
    assert config.sso_groups() == {"admin": ("admins", "it"), "clinician": (), "claim": "roles"}
    settings = tmp_path / "medcore.toml"
    settings.write_text('[oidc]\nadmin_groups = ["a"]\nclinician_groups = "c1, c2"\n')
    monkeypatch.setenv("MEDCORE_CONFIG_FILE", str(settings))
    monkeypatch.delenv("MEDCORE_OIDC_ADMIN_GROUPS")
    assert config.sso_groups() == {"admin": ("a",), "clinician": ("c1", "c2"), "claim": "roles"}


def test_an_sso_account_is_keyed_by_issuer_and_subject_and_admin_actions_recheck_its_role(store):
    from medcore import auth, sso

    admin = sso.record_sign_in(_identity(_claims(groups=["medcore-admins"])))
    assert admin.is_admin and admin.name == "sso:a1b2" and admin.shown_name == "Dr <i>Who</i>"
    assert auth.require_admin(admin).is_admin
    other = sso.record_sign_in(_identity(_claims(iss=ISSUER, sub="a1b2", name="Renamed")))  # same person, new name
    assert other.display_name == "Renamed" and len(sso.list_accounts()) == 1
    with pytest.raises(auth.NotAllowed):  # removed from the admin group: the admin page still open cannot act
        auth.require_admin(admin)
    assert sso.record_sign_in(_identity(_claims(groups=["finance"]))) is None  # in no group now: no access
    assert sso.current_user(ISSUER, "a1b2") is None
    sso.record_sign_in(_identity(_claims(groups=["medcore-admins"])))
    assert sso.set_disabled("sso:a1b2", True) and sso.current_user(ISSUER, "a1b2") is None
    assert sso.record_sign_in(_identity(_claims(groups=["medcore-admins"]))) is None  # switched off in MedCore


def test_with_local_accounts_off_only_a_named_break_glass_admin_may_use_the_form(store, monkeypatch):
    from medcore import auth

    auth.add_user("glass", "emergency secret 1", "admin", "test")
    auth.add_user("other.admin", "another admin secret", "admin", "test")
    auth.add_user("dr.local", "a clinician's secret", "clinician", "test")
    assert all(auth.local_sign_in_allowed(name) for name in ("glass", "other.admin", "dr.local"))
    monkeypatch.setenv("MEDCORE_LOCAL_ACCOUNTS", "off")
    monkeypatch.setenv("MEDCORE_BREAK_GLASS_ADMINS", "Glass, dr.local")
    assert auth.local_sign_in_allowed("glass")
    assert not auth.local_sign_in_allowed("other.admin") and not auth.local_sign_in_allowed("dr.local")  # no admin


# --- Authlib's checks, as Streamlit's own OAuth callback runs them -----------------------------------------------------

def _callback(monkeypatch, id_token_claims: dict, state_in_url: str = "S1") -> tuple[list[str], object]:
    """Run Streamlit's /oauth2callback (wrapped by views.sso's audit) for a browser whose session holds state S1, with
    the provider's metadata, keys and token endpoint answered here. Returns the Set-Cookie names and the response."""
    from joserfc import jwt
    from joserfc.jwk import RSAKey
    from starlette.requests import Request
    from streamlit.runtime.secrets import AttrDict
    from streamlit.web.server.starlette import starlette_auth_routes as routes

    import views.sso
    from streamlit import auth_util

    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    section = AttrDict({"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "s" * 32,
                        "hospital": {"client_id": CLIENT, "client_secret": "x",
                                     "server_metadata_url": ISSUER + "/.well-known/openid-configuration"}})
    for module in (routes, auth_util):
        monkeypatch.setattr(module, "get_secrets_auth_section", lambda: section)
    monkeypatch.setattr(routes, "get_cookie_secret", lambda: "s" * 32)
    monkeypatch.setattr(views.sso, "provider_settings", lambda: {"client_id": CLIENT, "issuer": ISSUER})
    from authlib.integrations import starlette_client

    app_class = routes._create_streamlit_oauth_class(starlette_client).oauth2_client_cls

    async def metadata(self):
        return {"issuer": ISSUER, "jwks_uri": ISSUER + "/jwks", "token_endpoint": ISSUER + "/token",
                "authorization_endpoint": ISSUER + "/auth", "id_token_signing_alg_values_supported": ["RS256"]}

    async def jwks(self, force=False):
        return {"keys": [key.as_dict(private=False)]}

    async def token(self, **params):
        signed = jwt.encode({"alg": "RS256", "kid": "k1"}, id_token_claims, key)
        return {"access_token": "at", "token_type": "Bearer", "id_token": signed, "expires_in": 300}

    monkeypatch.setattr(app_class, "load_server_metadata", metadata)
    monkeypatch.setattr(app_class, "fetch_jwk_set", jwks, raising=False)
    monkeypatch.setattr(app_class, "fetch_access_token", token)
    original = getattr(routes._auth_callback, "__wrapped__", routes._auth_callback)
    monkeypatch.setattr(routes, "_auth_callback", original)  # put back after the test
    views.sso.audit_provider_errors()  # wraps it, as app.py does
    session = {"_state_hospital_S1": {"data": {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "nonce": "n",
                                               "code_verifier": "v" * 48}, "exp": time.time() + 600}}
    scope = {"type": "http", "method": "GET", "path": "/oauth2callback", "headers": [], "session": session,
             "query_string": f"code=c0de&state={state_in_url}".encode(), "server": ("127.0.0.1", 8501),
             "scheme": "http", "root_path": ""}
    response = asyncio.run(routes._auth_callback(Request(scope), ""))
    cookies = [value.decode("latin-1") for name, value in response.raw_headers if name == b"set-cookie"]
    return [c.split("=")[0] for c in cookies if "Max-Age=0" not in c], response


def test_authlib_refuses_a_tampered_state_another_issuer_or_audience_and_each_is_audited(store, monkeypatch):
    from medcore import audit

    since = time.time() - 1
    good = _claims(groups=["medcore-admins"])
    assert _callback(monkeypatch, good)[0][:1] == ["_streamlit_user"]  # the wiring works: an identity cookie
    for claims, state in ((good, "S2"), (_claims(iss="https://evil.test"), "S1"), (_claims(aud="other-app"), "S1"),
                          (_claims(nonce="replayed"), "S1")):
        names, response = _callback(monkeypatch, claims, state)
        assert "_streamlit_user" not in names and response.status_code == 302
    rows = audit.events("sign_in", since)
    assert [row["detail"]["reason"] for row in rows] == ["state_mismatch", "token_rejected", "token_rejected",
                                                          "token_rejected"]
    assert all(row["outcome"] == "provider error" and row["detail"]["issuer"] == ISSUER for row in rows)
    assert "eyJ" not in json.dumps(rows)  # never a token


# --- End to end: a real OpenID Provider, the app, Chromium ---------------------------------------------------------------

OIDC_URL = os.environ.get("MEDCORE_TEST_OIDC_URL")
ACCOUNTS = {"clinician": ("dr.grey", "clinician-test-password"), "admin": ("it.chief", "admin-test-password"),
            "stranger": ("stranger", "stranger-test-password")}


def write_secrets(path: Path, redirect_uri: str) -> Path:
    path.write_text(f"""[auth]
redirect_uri = "{redirect_uri}"
cookie_secret = "medcore-e2e-cookie-secret-0123456789abcdef"

[auth.hospital]
client_id = "{os.environ.get('MEDCORE_TEST_OIDC_CLIENT_ID', 'medcore')}"
client_secret = "{os.environ.get('MEDCORE_TEST_OIDC_CLIENT_SECRET', '')}"
server_metadata_url = "{OIDC_URL}/.well-known/openid-configuration"
client_kwargs = {{ scope = "openid profile email groups", prompt = "login" }}
""")
    return path


SSO_ENVIRONMENT = {"MEDCORE_OIDC_ADMIN_GROUPS": "medcore-admins", "MEDCORE_OIDC_CLINICIAN_GROUPS": "medcore-clinicians"}


def hospital_sign_in(browser, url: str, account: tuple[str, str], shots: Path | None = None, who: str = ""):
    """A fresh browser session through the provider's own login page; returns the page back in MedCore."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(url)
    button = page.get_by_role("button", name="Sign in with your hospital account")
    button.wait_for(timeout=60_000)
    if shots:
        page.screenshot(path=str(shots / "signin_page_with_hospital_button.png"))
    button.click()
    page.get_by_label("Username").wait_for(timeout=30_000)
    if shots:
        page.screenshot(path=str(shots / "provider_login_page.png"))
    page.get_by_label("Username").fill(account[0])
    page.get_by_label("Password").fill(account[1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url.rstrip("/") + "/**", timeout=30_000)
    return page


@pytest.fixture(scope="module")
def sso_app(tmp_path_factory):
    from tests.test_e2e import _free_port, start_app

    root = tmp_path_factory.mktemp("sso")
    port = _free_port()
    secrets = write_secrets(root / "secrets.toml", f"http://127.0.0.1:{port}/oauth2callback")
    for url in start_app(root / "store", port=port, arguments=("--secrets.files", str(secrets)), **SSO_ENVIRONMENT):
        yield url, root / "store"


@pytest.mark.e2e
@pytest.mark.skipif(not OIDC_URL, reason="needs the OpenID Provider (eval $(.ci/oidc start))")
def test_clinician_admin_and_stranger_sign_in_through_the_hospital_provider(sso_app, browser, monkeypatch):
    from playwright.sync_api import expect

    from medcore import audit
    from tests.test_e2e import SCREENSHOTS

    url, store_dir = sso_app
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    since = time.time() - 1
    clinician = hospital_sign_in(browser, url, ACCOUNTS["clinician"], SCREENSHOTS)
    clinician.get_by_text("Signed in as").wait_for(timeout=90_000)
    expect(clinician.get_by_role("link", name="Chest X-ray")).to_be_visible()
    expect(clinician.get_by_role("link", name="Models & retraining")).to_have_count(0)
    clinician.get_by_text("Dr Meredith Grey").wait_for()
    clinician.get_by_text("Operating threshold").wait_for(timeout=90_000)
    clinician.screenshot(path=str(SCREENSHOTS / "sso_clinician.png"))
    ended = []
    clinician.on("request", lambda request: ended.append(request.url) if "/session/end" in request.url else None)
    clinician.get_by_role("button", name="Sign out").click()
    clinician.get_by_role("button", name="Sign in with your hospital account").wait_for(timeout=60_000)
    assert any("/session/end" in address for address in ended)  # the provider's session was ended too
    clinician.close()

    admin = hospital_sign_in(browser, url, ACCOUNTS["admin"])
    admin.get_by_role("link", name="Models & retraining").wait_for(timeout=90_000)
    admin.get_by_text("Chief <b>Admin</b>").wait_for()  # the claims' name, shown as text, not as markup
    admin.screenshot(path=str(SCREENSHOTS / "sso_admin.png"))
    admin.close()

    stranger = hospital_sign_in(browser, url, ACCOUNTS["stranger"])
    stranger.get_by_text("not in a MedCore group").wait_for(timeout=60_000)
    expect(stranger.get_by_role("link", name="Chest X-ray")).to_have_count(0)
    expect(stranger.get_by_text("Signed in as")).to_have_count(0)
    stranger.screenshot(path=str(SCREENSHOTS / "sso_stranger_refused.png"))
    stranger.close()

    accounts_file = Path(os.environ["MEDCORE_TEST_OIDC_ACCOUNTS"])
    before = accounts_file.read_text()
    accounts = json.loads(before)
    accounts["it.chief"]["groups"] = ["medcore-clinicians"]  # IT removes the admin from the admin group
    accounts_file.write_text(json.dumps(accounts))
    try:
        demoted = hospital_sign_in(browser, url, ACCOUNTS["admin"])
        demoted.get_by_text("Signed in as").wait_for(timeout=90_000)
        expect(demoted.get_by_role("link", name="Chest X-ray")).to_be_visible()
        expect(demoted.get_by_role("link", name="Models & retraining")).to_have_count(0)
        demoted.close()
    finally:
        accounts_file.write_text(before)

    forged = browser.new_page()
    forged.goto(url + "/oauth2callback?code=forged&state=forged")  # a callback this browser never started
    forged.close()
    monkeypatch.setenv("MEDCORE_STORE_DIR", str(store_dir))
    rows = [(row["user"], row["outcome"], row["detail"].get("role"), row["detail"].get("reason"))
            for row in audit.events("sign_in", since)]
    assert rows == [("sso:dr.grey", "success", "clinician", None), ("sso:it.chief", "success", "admin", None),
                    ("sso:stranger", "refused", None, "no_group"), ("sso:it.chief", "success", "clinician", None),
                    ("unknown", "provider error", None, "state_mismatch")]
    details = [row["detail"] for row in audit.events("sign_in", since)]
    assert all(d["issuer"] == OIDC_URL for d in details) and details[0]["subject"] == "dr.grey"
    assert "eyJ" not in json.dumps(audit.recent(50))  # no token (a JWT starts eyJ) anywhere in the log
