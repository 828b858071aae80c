"""Sign-in page: the only page a visitor who is not signed in can reach."""

import streamlit as st

from medcore import audit, auth
from views.common import client_id, sign_in

st.title("MedCore")
st.caption("Chest X-ray and case-note decision support for clinicians.")
if reason := st.session_state.get("signed_out_reason"):
    st.info(reason + " Please sign in again.")

if not auth.has_users():
    st.warning("No account exists yet. An administrator creates the first one on the server with "
               "`medcore users add --admin NAME` (the password is read without echo), or starts the app once "
               "with `MEDCORE_ADMIN_USER` and `MEDCORE_ADMIN_PASSWORD` set.")
    st.stop()

with st.form("sign-in"):
    name = st.text_input("User name", autocomplete="username")
    password = st.text_input("Password", type="password", autocomplete="current-password")
    submitted = st.form_submit_button("Sign in", type="primary")

if submitted:
    user, reason = auth.authenticate(name.strip().lower(), password, client=client_id())
    if user is None:
        known = auth.get_user(name.strip().lower()) is not None  # never log what was typed for an unknown name
        audit.record(name.strip().lower() if known else "unknown", "sign_in", "refused")
        st.error(reason)
    else:
        sign_in(user)
        st.rerun()
