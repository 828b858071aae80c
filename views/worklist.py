"""PACS worklist: today's (or a chosen range of, at most 31 days) chest studies in triage order, a page at a time;
open one for its result, beside the patient's prior film; confirm or correct the finding. Every page shown and
every study opened is recorded in the access log (medcore.access)."""

import datetime

import pandas as pd
import streamlit as st

from medcore import access, config
from medcore.metrics import format_probability
from medcore.pacs import analysis, feedback, worklist
from medcore.pacs.client import FilmTooLarge, PacsClient, PacsUnavailable
from views.common import current_user, escape_markdown, xray_model
from views.study_view import show_study

st.title("PACS worklist")
model = xray_model()
if model is None:
    st.stop()
watching = worklist.watcher_status()
if watching.stale:
    st.error(escape_markdown(watching.sentence()), icon=":material/visibility_off:")
st.caption("Chest studies from the hospital's PACS: flagged first (highest probability first), then every study "
           "MedCore has not judged (not yet analysed, outside the model's intended use, refused, could not be "
           "analysed), then those it read as not flagged. Patient names and ids are shown here to identify the "
           "patient; MedCore does not log them, and records by keyed digest that you saw them.")
st.caption(escape_markdown(model.intended_use.statement()) + " Other studies are listed as outside intended use.")

today = datetime.date.today()
chosen = st.date_input(f"Studies from (at most {config.WORKLIST_MAX_DAYS} days)", (today, today), max_value=today,
                       min_value=today - datetime.timedelta(days=3650), format="YYYY-MM-DD", key="worklist-range")
first_day, last_day = (chosen if isinstance(chosen, (tuple, list)) and len(chosen) == 2 else (today, today))
try:
    client = PacsClient()
    rows = worklist.worklist(client, model.version, model.threshold, first_day, last_day)
except PacsUnavailable as exc:
    st.error(f"{exc} The worklist shows again once the PACS answers; uploads on the Chest X-ray page still work.",
             icon=":material/cloud_off:")
    st.stop()
except ValueError as exc:  # a range too long, or backwards
    st.warning(escape_markdown(str(exc)))
    st.stop()

if not rows:
    st.info("No chest study in the PACS for these dates.")
    st.stop()
pages = worklist.page_count(rows)
page = st.number_input(f"Page (of {pages}; {config.worklist_page_size()} studies a page, {len(rows)} in all)",
                       1, pages, 1, key="worklist-page") if pages > 1 else 1
flagged = sum(r.state == "flagged" for r in rows)
rows = worklist.shown_page(rows, int(page), current_user())
if elsewhere := flagged - sum(r.state == "flagged" for r in rows):
    st.warning(f"{elsewhere} flagged studies are on other pages (page 1 lists them first).")
table = pd.DataFrame([{"": "🔴" if r.state == "flagged" else "", "state": r.state,
                       f"{model.positive_label.lower()} probability": r.probability,
                       "patient": r.study.patient_name.replace("^", " "), "patient id": r.study.patient_id,
                       "study date": r.study.when, "accession": r.study.accession_number,
                       "note": r.detail} for r in rows])
st.dataframe(table, hide_index=True, width="stretch", column_config={
    f"{model.positive_label.lower()} probability": st.column_config.ProgressColumn(format="percent", min_value=0,
                                                                                    max_value=1)})

labels = {r.study.study_uid: f"{r.study.patient_name.replace('^', ' ')} ({r.study.patient_id}) · {r.study.when} · "
                             f"{r.study.accession_number} · {r.state}" for r in rows}  # this page only
study_uid = st.selectbox("Open a study", list(labels), format_func=labels.get, index=None,
                         placeholder="Choose a study to see its result", key="worklist-study")
if study_uid is None:
    st.session_state.pop("worklist_shown", None)  # the next study chosen, even the same again, is a new look
    st.stop()
row = next(r for r in rows if r.study.study_uid == study_uid)
opened = st.session_state.setdefault("worklist_opened", {})
try:
    if (study_uid, model.version) in opened and st.session_state.get("worklist_shown") != study_uid:
        access.record(current_user(), "opened", [(row.study.patient_id, row.study.accession_number)])  # again
    st.session_state["worklist_shown"] = study_uid
    if (study_uid, model.version) not in opened:
        with st.spinner("Fetching the film from the PACS and analysing it…"):
            opened[(study_uid, model.version)] = analysis.view_study(client, model, row.study, current_user())
            prior = worklist.prior_study(client, row.study)
            opened[(study_uid, "prior")] = (prior, analysis.view_study(client, model, prior, current_user())
                                            if prior else None)
    shown = opened[(study_uid, model.version)]
    prior, prior_analysis = opened[(study_uid, "prior")]
except (PacsUnavailable, analysis.NotAChestStudy, FilmTooLarge) as exc:
    st.error(escape_markdown(str(exc)))
    st.stop()

evidence, threshold = model.operating_evidence(), model.threshold
if row.detail:
    st.info(f"On the worklist: {row.state}. {escape_markdown(row.detail)}")
opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05, key="worklist-opacity")
with st.container(border=True):
    show_study(shown.result, evidence, threshold, model.positive_label, opacity, key="current",
               title=f"{row.study.patient_name.replace('^', ' ')} · {row.study.when} · {row.study.accession_number}",
               model=model)
if prior is not None and prior_analysis is not None:
    with st.container(border=True):
        st.markdown(f"**Prior chest film of this patient**, {escape_markdown(prior.when)} (accession "
                    f"{escape_markdown(prior.accession_number)})")
        show_study(prior_analysis.result, evidence, threshold, model.positive_label, opacity, key="prior")

with st.form("worklist-feedback"):
    st.markdown("**Confirm or correct the finding** (kept as history against a keyed digest of this film, without "
                "names or pixels; a later confirmation supersedes; the performance page counts MedCore's agreement).")
    label = st.radio("The film shows", feedback.LABELS, horizontal=True, index=None, key="worklist-label")
    if st.form_submit_button("Save the finding", icon=":material/task_alt:"):
        if label is None:
            st.warning("Choose NORMAL or PNEUMONIA first.")
        else:
            feedback.confirm(shown.sop_uid, shown.study_uid, shown.series_uid, label, model.version,
                             shown.result.probability, shown.result.decision, current_user())
            said = (f"{shown.result.decision} at {format_probability(shown.result.probability)}"
                    if shown.result.probability is not None else "no decision (the film was refused)")
            st.success(f"Saved: {label}. MedCore said {said}.")
