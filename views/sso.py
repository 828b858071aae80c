"""Sign-in through the hospital's OpenID Provider with Streamlit's own OIDC support (st.login / st.user / st.logout).

The provider is `[auth.hospital]` in Streamlit's secrets (beside `[auth]`'s redirect_uri and cookie_secret). Streamlit
runs the flow and keeps the ID token's claims in a signed identity cookie; `start_session` turns fresh claims into a
MedCore session (medcore.sso checks them and maps the groups to a role), and `audit_provider_errors` records the
sign-ins that fail at the provider or in the token exchange, which Streamlit only writes to its log.
"""

from __future__ import annotations

import re

import streamlit as st

from medcore import audit, sso

PROVIDER = "hospital"
BUTTON = "Sign in with your hospital account"


def provider_settings() -> dict | None:
    """The `[auth.hospital]` section of the secrets (client_id, server_metadata_url, ...), or None when absent."""
    try:
        section = st.secrets.get("auth", {}).get(PROVIDER)
    except Exception:  # no secrets file at all
        return None
    if not section or not section.get("client_id") or not section.get("server_metadata_url"):
        return None
    return {"client_id": str(section["client_id"]), "issuer": sso.expected_issuer(str(section["server_metadata_url"]))}


def configured() -> bool:
    return provider_settings() is not None


def start_session(sign_in) -> None:
    """Once per Streamlit session and ID token: open a MedCore session from st.user's claims when they are fresh and
    give a role; otherwise leave a message for the sign-in page (and audit refusals). `sign_in` is views.common's."""
    settings = provider_settings()
    if settings is None or not st.user.is_logged_in:
        return
    claims = {key: value for key, value in st.user.to_dict().items() if key != "tokens"}
    marker = f"{claims.get('iss')}|{claims.get('sub')}|{claims.get('iat')}|{claims.get('nonce')}"
    if st.session_state.get("sso_seen") == marker:
        return  # this token was used (or refused) in this session already
    st.session_state["sso_seen"] = marker
    try:
        person = sso.identity(claims, issuer=settings["issuer"], client_id=settings["client_id"])
    except sso.Refused as refused:
        if refused.code != "stale":  # a stale identity cookie is an earlier sign-in, not a new attempt
            audit.record(sso.account_name(refused.issuer or "", refused.subject) if refused.subject else "unknown",
                         "sign_in", "refused", method="sso", reason=refused.code, issuer=refused.issuer,
                         subject=refused.subject)
            st.session_state["sso_problem"] = refused.message
        return
    user = sso.record_sign_in(person)
    if user is None:
        reason = "no_group" if person.role is None else "disabled"
        audit.record(sso.account_name(person.issuer, person.subject), "sign_in", "refused", method="sso",
                     reason=reason, issuer=person.issuer, subject=person.subject)
        st.session_state["sso_problem"] = (
            "Your hospital account is not in a MedCore group, so MedCore is not open to you. If you need it, ask IT "
            "to add you to the MedCore clinicians' group." if reason == "no_group" else
            "Your hospital account is switched off in MedCore. Ask a MedCore administrator.")
        return
    sign_in(user, method="sso", issuer=person.issuer, subject=person.subject)


def sign_in_button() -> None:
    if st.button(BUTTON, type="primary", icon=":material/badge:"):
        st.session_state.pop("sso_problem", None)
        st.login(PROVIDER)


def _provider_error_reason(request) -> str:
    error = request.query_params.get("error")
    if error:
        return error if re.fullmatch(r"[a-z_]{1,40}", error) else "provider_error"
    state = request.query_params.get("state") or ""
    if not any(key == f"_state_{PROVIDER}_{state}" for key in request.session.keys()):
        return "state_mismatch"
    return "token_rejected"


def audit_provider_errors() -> None:
    """Wrap Streamlit's OAuth callback (once per process) so that a failed sign-in (an error from the provider, a state
    that is not this browser's, a token Authlib rejects: another issuer or audience, a bad signature) is an audit
    row with the issuer and the reason, never a token. A successful callback is audited when the session starts."""
    from streamlit.web.server.starlette import starlette_auth_routes as routes

    original = routes._auth_callback
    if getattr(original, "medcore_audited", False):
        return

    async def audited(request, base_url):
        import asyncio

        settings = provider_settings()
        reason = _provider_error_reason(request) if settings else None
        response = await original(request, base_url)
        signed_in = any(value.decode("latin-1").startswith("_streamlit_user=") and "Max-Age=0" not in
                        value.decode("latin-1") for name, value in response.raw_headers if name == b"set-cookie")
        if settings and not signed_in and (request.query_params.get("code") or request.query_params.get("error")):
            await asyncio.to_thread(audit.record, "unknown", "sign_in", "provider error", method="sso", reason=reason,
                                    issuer=settings["issuer"])
        return response

    audited.medcore_audited = True
    audited.__wrapped__ = original
    routes._auth_callback = audited
