"""Sign-in page: the only page a visitor who is not signed in can reach.

With a hospital provider configured ([auth.hospital] in Streamlit's secrets) it offers "Sign in with your hospital
account" beside the local form; with MEDCORE_LOCAL_ACCOUNTS=off instead of it, the local form then kept, folded, for a
named break-glass admin only.
"""

import streamlit as st

from medcore import audit, auth, config
from views.sso import configured, sign_in_button
from views.common import client_id, sign_in

st.title("MedCore")
st.caption("Chest X-ray and case-note decision support for clinicians.")
if reason := st.session_state.get("signed_out_reason"):
    st.info(reason + " Please sign in again.")
if problem := st.session_state.get("sso_problem"):
    st.error(problem, icon=":material/block:")

hospital = configured()
local = config.local_accounts()
if hospital:
    sign_in_button()

if not hospital and not auth.has_users():
    st.warning("No account exists yet. An administrator creates the first one on the server with "
               "`medcore users add --admin NAME` (the password is read without echo), or starts the app once "
               "with `MEDCORE_ADMIN_USER` and `MEDCORE_ADMIN_PASSWORD` set.")
    st.stop()


def local_form() -> None:
    with st.form("sign-in"):
        name = st.text_input("User name", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="secondary" if hospital else "primary")
    if not submitted:
        return
    name = name.strip().lower()
    user, reason = auth.authenticate(name, password, client=client_id())
    if user is not None and not auth.local_sign_in_allowed(user.name):
        user, reason = None, auth.WRONG  # local accounts are off and this is no break-glass admin: nothing said
    if user is None:
        known = auth.get_user(name) is not None  # never log what was typed for an unknown name
        audit.record(name if known else "unknown", "sign_in", "refused", method="local" if local else "break-glass")
        st.error(reason)
    else:
        sign_in(user, method="local" if local else "break-glass")
        st.rerun()


if local:
    if hospital:
        st.caption("Or with a MedCore account:")
    local_form()
elif config.break_glass_admins():
    with st.expander("Break-glass access (MedCore administrator, when the hospital sign-in is down)"):
        st.caption("Every use is recorded in the audit log as break-glass access.")
        local_form()
elif not hospital:
    st.warning("Local accounts are switched off (MEDCORE_LOCAL_ACCOUNTS=off) and no hospital sign-in is configured.")
