"""Audit log (admin): every prediction, explanation, training run, promotion and sign-in; CSV export."""

import datetime

import pandas as pd
import streamlit as st

from medcore import access, audit
from views.common import escape_markdown, require_admin

admin = require_admin()
st.title("Audit log")
st.caption("Who did what, when, with which model version, and the outcome. Studies and notes appear only as a "
           "short digest of their content: no images, no note text, no file names, no DICOM identifiers.")

limit = st.select_slider("Most recent events", [100, 1000, 10_000, 100_000], value=1000)
frame = pd.DataFrame(audit.table(audit.recent(limit)),
                     columns=["time", "user", "action", "model version", "outcome", "detail"])
left, middle, right = st.columns(3)
users = left.multiselect("User", sorted(frame["user"].unique()))
kinds = middle.multiselect("Action", sorted(frame["action"].str.split(":").str[0].unique()))
outcomes = right.multiselect("Outcome", sorted(frame["outcome"].unique()))
keep = pd.Series(True, index=frame.index)
if users:
    keep &= frame["user"].isin(users)
if kinds:
    keep &= frame["action"].str.split(":").str[0].isin(kinds)
if outcomes:
    keep &= frame["outcome"].isin(outcomes)
shown = frame[keep]
st.markdown(f"**{len(shown)}** of the {len(frame)} most recent events")
st.dataframe(shown, hide_index=True, width="stretch")
st.download_button("Download these events (CSV)", audit.to_csv_table(shown.to_dict("records")),
                   file_name="medcore-audit.csv", mime="text/csv", icon=":material/download:",
                   on_click=lambda: audit.record(admin.name, "audit_export", "downloaded", rows=len(shown)))

st.subheader("Who listed or opened a patient's studies")
st.caption("For a privacy officer's request. The patient id (and, if given, the accession number) is turned into "
           "its keyed digest on this server and never stored; the search itself is recorded.")
with st.form("patient-accesses"):
    left, right = st.columns(2)
    patient_id = left.text_input("Patient id (as in the PACS)", max_chars=64)
    accession = right.text_input("Accession number (optional)", max_chars=64)
    asked = st.form_submit_button("Search", icon=":material/person_search:")
if asked:
    if not patient_id.strip():
        st.warning("Give the patient's id.")
    else:
        found = access.accesses(patient_id, accession.strip() or None, admin.name)
        if not found:
            st.info("Nobody listed or opened this patient's studies in MedCore.")
        else:
            st.markdown(f"**{len(found)}** recorded looks at this patient"
                        + (f" (accession {escape_markdown(accession.strip())})" if accession.strip() else ""))
            st.dataframe(pd.DataFrame([{"time": datetime.datetime.fromtimestamp(row["at"]).isoformat(timespec="seconds"),
                                        "user": row["user"], "action": row["action"], "server": row["server"] or ""}
                                       for row in found]), hide_index=True, width="stretch")
