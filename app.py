"""MedCore: `streamlit run app.py`. Signs the user in and routes to the pages their role may see.

Pages live in views/, not pages/: Streamlit serves every file in pages/ by URL on its own, which
would bypass this sign-in. Only the pages listed here can be reached.
"""

import streamlit as st

from medcore import auth, config, incidents, registry
from views.sso import audit_provider_errors, start_session
from views.common import escape_markdown, session_clock, sign_in, sign_out, signed_in

st.set_page_config(page_title="MedCore", page_icon=":material/pulmonology:", layout="wide")


def _keep_models_warm() -> None:
    """Stop Streamlit from resetting Keras after every script run.

    After each run Streamlit calls keras.backend.clear_session() (TensorFlow's kernel cache and graph reset, then a
    full garbage collection). Our models are loaded once per process and shared by every session, and pages never
    build one, so the reset only throws away compiled kernels, and it runs while other sessions' threads are inside
    a model. Under 8 to 20 sessions on 2 cores it made each study 2 to 4 times slower
    (benchmarks/concurrency.py). Training never runs in this process (jobs run in their own).
    """
    from streamlit.runtime.scriptrunner import script_runner

    script_runner._clean_problem_modules = lambda: None


_keep_models_warm()


@st.cache_resource(show_spinner=False)
def _first_start() -> str | None:
    """Once per server process: the shipped models into a new store, and the first admin from the
    environment if there is no admin yet. Page runs never write to the registry.

    Returns why the variables were refused (e.g. a too short password), for the sign-in page.
    """
    try:
        registry.ensure_defaults()
    except Exception as exc:  # a broken store must not stop the app: serving falls back to the shipped models
        incidents.report(exc, "system", "installing the shipped models at start", message_is_safe=True)
    try:
        auth.create_admin_from_environment()
    except auth.AuthError as exc:
        return f"MEDCORE_ADMIN_USER / MEDCORE_ADMIN_PASSWORD were not used: {exc}"
    return None


@st.cache_resource(show_spinner=False)
def _pacs_watcher() -> bool:
    """Once per server process, with MEDCORE_PACS_WATCH=1: the PACS watcher on a thread beside the app (the one-machine
    form of `medcore pacs watch`; it claims each study in the store, so it never repeats another watcher's work). It
    starts with the server's first page run (Streamlit has no start-up hook)."""
    if not (config.pacs_watch_in_app() and config.pacs_settings()["url"]):
        return False
    import threading

    from medcore.pacs.watcher import watch

    threading.Thread(target=watch, name="medcore-pacs-watcher", daemon=True).start()
    return True


first_start_problem = _first_start()
_pacs_watcher()
audit_provider_errors()
user = signed_in()
if user is None:  # a sign-in at the hospital's provider that just happened opens a session (views/sso.py)
    start_session(sign_in)
    user = signed_in()
if user is None:
    if first_start_problem:
        st.error(first_start_problem)
    # Every address of a page answers with the sign-in form, so a bookmarked /notes opens after sign-in.
    addresses = ("notes", "performance", "admin", "audit_log", "worklist")
    navigation = st.navigation([st.Page("views/signin.py", title="Sign in", icon=":material/login:", default=True)]
                               + [st.Page("views/signin.py", title="Sign in", url_path=a) for a in addresses],
                               position="hidden")
else:
    clinical = [
        st.Page("views/xray.py", title="Chest X-ray", icon=":material/radiology:", default=True),
        *([st.Page("views/worklist.py", title="PACS worklist", icon=":material/list_alt:")]
          if config.pacs_settings()["url"] else []),
        st.Page("views/notes.py", title="Case notes", icon=":material/clinical_notes:"),
        st.Page("views/performance.py", title="Model performance", icon=":material/monitoring:"),
    ]
    admin = [
        st.Page("views/admin.py", title="Models & retraining", icon=":material/model_training:"),
        st.Page("views/audit_log.py", title="Audit log", icon=":material/policy:"),
    ]
    navigation = st.navigation({"Clinical": clinical, "Administration": admin} if user.is_admin else clinical)
    st.sidebar.markdown(f"Signed in as **{escape_markdown(user.shown_name)}** ({user.role})")
    with st.sidebar:
        session_clock()
    if st.sidebar.button("Sign out", icon=":material/logout:"):
        sign_out()
        st.rerun()
st.sidebar.caption("MedCore · decision support, not a diagnosis")
try:
    navigation.run()
except Exception as exc:  # st.stop and st.rerun are not Exceptions: they pass through
    incident = incidents.report(exc, user.name if user else "anonymous", f"page {navigation.url_path or 'home'}")
    st.error(incidents.message(incident), icon=":material/error:")
