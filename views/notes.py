"""Case notes page: paste or upload a note, see the likely categories and the words behind them."""

import hashlib
from functools import partial

import streamlit as st

from medcore import tasks
from medcore.charts import class_probabilities_figure
from medcore.metrics import format_probability
from medcore.notes.explain import ExplanationCache, legend_html, render_html
from medcore.notes.second_opinion import lime_opinion
from medcore.notes.service import analyse_note
from medcore.notes.text import NoteRejected, decode_upload
from medcore.pdf_reports import note_report_pdf
from medcore.reports import notes_summary
from views.common import current_user, deferred_download, escape_markdown, production_model

st.title("Case notes")
task = st.selectbox("Task", tasks.NOTES_KEYS, format_func=lambda key: tasks.get(key).title)
model = production_model(task)
if model is None:
    st.stop()
st.caption(notes_summary(model))

with st.form("note"):
    text = st.text_area("Paste the note", height=200, max_chars=100_000,
                        placeholder="e.g. I have had a high fever, chills and a cough for three days…")
    upload = st.file_uploader("…or upload a .txt file", type=["txt"], max_upload_size=1)
    submitted = st.form_submit_button("Analyse", type="primary")

if submitted:
    source = text
    if upload is not None:
        try:
            source = decode_upload(upload.getvalue())
        except NoteRejected as exc:
            st.error(str(exc))
            st.stop()
    st.session_state["note_text"] = source
source = st.session_state.get("note_text")
if not source and not submitted:
    st.stop()

cache = st.session_state.setdefault("note_explanations", ExplanationCache(capacity=32))
prediction, attribution, error = analyse_note(model, source or "", cache, current_user())
if prediction is None:
    st.error(error)
    st.stop()
for warning in prediction.note.warnings:
    st.warning(warning)

ranked = prediction.ranked()
candidates = prediction.prediction_set
top3 = ranked[:max(3, len(candidates or []))]
if prediction.certain:
    st.subheader(f"Most likely: {escape_markdown(top3[0][0])} ({format_probability(top3[0][1])})")
elif candidates is not None:
    st.subheader("One of: " + ", ".join(escape_markdown(label) for label in candidates))
    st.warning(f"The model cannot narrow this note to one category. Sets like this one "
               f"{escape_markdown(prediction.coverage)}: read them as the possibilities to weigh, not a finding.",
               icon=":material/help:")
else:
    st.subheader("Uncertain: no category is probable enough")
    st.warning(f"The highest probability, {format_probability(top3[0][1])} for {escape_markdown(top3[0][0])}, is below "
               f"{prediction.confidence_threshold:.0%}: the level at which the model's findings were right at least "
               "90 % of the time on validation. Read the candidates below as possibilities, not a finding.",
               icon=":material/help:")
st.plotly_chart(class_probabilities_figure(top3), config={"displayModeBar": False})

if attribution is None:  # the prediction stands; its explanation failed (an incident was recorded)
    st.error(error)
    st.stop()
label = st.selectbox("Explain the class", [lbl for lbl, _ in ranked],
                     format_func=lambda lbl: f"{lbl} ({format_probability(dict(ranked)[lbl])})")
class_index = model.labels.index(label)
st.markdown(f"Words in **:red[red]** pushed the note towards *{escape_markdown(label)}*, words in **:blue[blue]** away from "
            "it; the stronger the colour, the larger the push. Hover a word for its SHAP value (log-odds).")
st.html(legend_html(label) + render_html(prediction.note, attribution, class_index))
if attribution.truncated:
    st.caption(f"Only the first {len(attribution.tokens)} words are coloured; the rest of the note was read "
               "and held fixed.")
with st.expander("Top words for this class"):
    st.dataframe([{"word": word, "SHAP (log-odds)": round(value, 4)}
                  for word, value in attribution.top(class_index, 15)], hide_index=True)
opinions = st.session_state.setdefault("note_lime", {})
opinion_key = (model.version, hashlib.sha256(prediction.note.text.encode()).hexdigest(), class_index)
if opinion_key not in opinions and st.button("Check the words with a second method (LIME)", icon=":material/compare:"):
    with st.spinner("Fitting LIME's local model…"):
        opinions[opinion_key] = lime_opinion(model, prediction.note, attribution, class_index)
        while len(opinions) > 20:
            opinions.pop(next(iter(opinions)))
if opinion_key in opinions:
    opinion = opinions[opinion_key]
    (st.success if opinion.overlap >= 0.6 else st.warning)(escape_markdown(opinion.sentence()))
    shap_column, lime_column = st.columns(2)
    shap_column.dataframe([{"SHAP top words": w, "log-odds": round(v, 4)} for w, v in opinion.shap_top],
                          hide_index=True)
    lime_column.dataframe([{"LIME top words": w, "weight (probability)": round(v, 4)} for w, v in opinion.lime_top],
                          hide_index=True)
    st.caption("SHAP averages each word's effect over the orders in which words could be added; LIME fits a local "
               "linear model to the note with random words removed. Where they disagree, trust the words both name "
               "and read the note itself.")
st.download_button("Download report (PDF)",
                   deferred_download(partial(note_report_pdf, prediction, attribution, class_index,
                                             tasks.get(task).title), "a note's PDF report"),
                   "medcore_note_report.pdf", "application/pdf", icon=":material/picture_as_pdf:")
