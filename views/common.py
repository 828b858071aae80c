"""View helpers shared by the pages: the signed-in user and session expiry, cached model loading."""

from __future__ import annotations

import functools
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Callable

import streamlit as st

from medcore import audit, auth, config, incidents, production, tasks
from medcore.artifacts import ModelLoadError
from medcore.markup import escape_markdown  # noqa: F401 - the views' one import for it

if TYPE_CHECKING:  # TensorFlow is imported when a model is first loaded, not for the sign-in page
    from medcore.imaging.service import LoadedXrayModel
    from medcore.notes.model import NotesModel


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def _served(task: str, version: str | None) -> production.Served:
    """Loaded once per server process and production version, shared read-only by every session."""
    return production.load(task)


def production_model(task: str) -> LoadedXrayModel | NotesModel | None:
    """The model serving `task` (a task key) now; a promotion or rollback changes the cache key, so it shows at once.

    Every model offers the same face (artifacts.ModelInfo): version, labels, validation metrics and predictions.
    None, after saying so on the page, when no version at all can be loaded; the reason (which names server
    paths) goes to the server log, never to the browser.
    """
    try:
        served = _served(task, production.current_version(task))
    except ModelLoadError as exc:
        incident = incidents.report(exc, current_user(), f"loading the {task} model", message_is_safe=True)
        st.error(f"The model for {tasks.get(task).title} cannot be loaded, so no prediction is possible "
                 f"(incident {incident}; an administrator finds the reason in the server log).")
        return None
    if served.warnings:
        st.warning(f"The newest production version of this model could not be used; version {served.version} is "
                   "serving instead. An administrator finds the reason in the audit and server logs.",
                   icon=":material/warning:")
    return served.model


def xray_model() -> LoadedXrayModel | None:
    return production_model("xray")


def current_user() -> str:
    state = st.session_state.get("auth")
    return state["name"] if state else "anonymous"


def signed_in() -> auth.User | None:
    """The signed-in user, read again from the user table on every run (a disabled account is out at once).

    Ends the session when it has been idle or open too long; the sign-in page then says why.
    """
    state = st.session_state.get("auth")
    if not state:
        return None
    if state.get("issuer") is not None:  # a hospital account: the role of its latest sign-in at the provider
        from medcore import sso

        user = sso.current_user(state["issuer"], state["subject"])
    else:
        user = auth.get_user(state["name"])
        if user is not None and not auth.local_sign_in_allowed(user.name):
            user = None  # local accounts were switched off, and this is no break-glass admin
    reason = auth.session_expired(state["signed_in_at"], state["last_seen"])
    if reason is None and (user is None or user.disabled):
        reason = "Your account is no longer active."
    if reason:
        sign_out(reason)
        return None
    state["last_seen"] = time.time()
    return user


def session_active() -> bool:
    """Still signed in, without counting this check as activity (for pages that refresh themselves)."""
    state = st.session_state.get("auth")
    return bool(state) and auth.session_expired(state["signed_in_at"], state["last_seen"]) is None


SESSION_CHECK = timedelta(seconds=20)  # how soon an unattended page is cleared once its session has ended


@st.fragment(run_every=SESSION_CHECK)
def session_clock() -> None:
    """Runs by itself every SESSION_CHECK, without counting as activity: once the session has ended, the whole
    app runs again, signs out (forgetting films, notes and results) and shows the sign-in form, even if nobody
    touches the workstation."""
    if st.session_state.get("auth") and not session_active():
        st.rerun(scope="app")


def deferred_download(make: Callable[[], bytes], what: str) -> Callable[[], bytes]:
    """A download made only when clicked: for a session that is still signed in, and never an exception in
    Streamlit's log (a failure is an incident; the file then says so).

    Streamlit runs the callable on a thread of its own, outside the script run, where `st.session_state` is an
    empty stand-in: so the session's own state is captured here, when the button is drawn, and read at the click.
    """
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()
    state = context.session_state if context is not None else None

    def signed_in_state() -> dict | None:
        session = state["auth"] if state is not None and "auth" in state else None
        if not session or auth.session_expired(session["signed_in_at"], session["last_seen"]) is not None:
            return None
        return session

    def run() -> bytes:
        from medcore.pdf_reports import notice_pdf

        session = signed_in_state()
        if session is None:
            return notice_pdf("MedCore: session ended", "Your session ended, so this report was not made. Sign in "
                                                        "again and open the study or note once more.")
        try:
            return make()
        except Exception as exc:
            incident = incidents.report(exc, session["name"], f"making {what}")
            return notice_pdf("MedCore: report not made", incidents.message(incident))
    return run


def guarded(where: str):
    """For a fragment, which reruns on its own outside app.py's guard: an error shows an incident id, never a
    traceback (st.rerun and st.stop are not Exceptions and pass through)."""
    def decorate(function):
        @functools.wraps(function)
        def run(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except Exception as exc:
                st.error(incidents.message(incidents.report(exc, current_user(), where)), icon=":material/error:")
        return run
    return decorate


def client_id() -> str:
    """Where a sign-in attempt comes from, for throttling: the browser's address, or the one a configured proxy
    forwards (never the session, which a reload renews)."""
    return auth.client_address(st.context.ip_address, st.context.headers.get_all("X-Forwarded-For"),
                               config.trusted_proxies())


def sign_in(user: auth.User, method: str = "local", **detail: str) -> None:
    """Open a MedCore session: `method` is local, break-glass (a local admin while local accounts are off) or sso
    (with the provider's issuer and subject in `detail`; never a token)."""
    now = time.time()
    st.session_state["auth"] = {"name": user.name, "signed_in_at": now, "last_seen": now,
                                "issuer": user.issuer, "subject": user.subject}
    st.session_state.pop("signed_out_reason", None)
    st.session_state.pop("sso_problem", None)
    audit.record(user.name, "sign_in", "break-glass" if method == "break-glass" else "success", role=user.role,
                 method=method, **detail)


def sign_out(reason: str | None = None) -> None:
    """Forget everything this session held (results, notes, explanations), not only the user name. A hospital account
    signing out is also signed out of the provider (st.logout: its end-session endpoint, when it has one)."""
    name = current_user()
    state = st.session_state.get("auth") or {}
    seen = st.session_state.get("sso_seen")  # the ID token this session used: never again
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    if seen:
        st.session_state["sso_seen"] = seen
    if reason:
        st.session_state["signed_out_reason"] = reason
    audit.record(name, "sign_out", "expired" if reason else "signed out")
    if state.get("issuer") is not None and not reason:
        st.logout()
        st.stop()


def require_admin() -> auth.User:
    """First line of an admin page: everyone else is stopped here, also when the page is reached by URL."""
    user = signed_in()
    if user is None or not user.is_admin:
        st.error("This page is for administrators only.")
        st.stop()
    return user


