"""Chest X-ray page: upload radiographs, see calibrated probabilities, decisions and Grad-CAM."""

from collections import Counter

import pandas as pd
import streamlit as st

from medcore.imaging.service import analyse_uploads
from medcore.reports import summary_csv, summary_rows, xray_banner
from views.common import current_user, xray_model
from views.study_view import show_study

st.title("Chest X-ray: pneumonia")

model = xray_model()
if model is None:
    st.stop()

evidence, threshold = model.operating_evidence(), model.threshold
positive, negative = model.positive_label, model.negative_label
st.info(xray_banner(model))

uploads = st.file_uploader("Upload one or more frontal chest radiographs (PNG, JPEG or DICOM)",
                           type=["png", "jpg", "jpeg", "dcm", "dicom"], accept_multiple_files=True,
                           max_upload_size=64)
opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05,
                    help="How strongly the Grad-CAM colours cover the film; 0 shows the film alone.")
if not uploads:
    st.caption("Files are analysed in this session only; the audit log keeps a digest and the outcome, "
               "never the image or its name.")
    st.stop()

bar = st.progress(0.0, text="Analysing…")
results = analyse_uploads(
    model, [(f.name, f.getvalue()) for f in uploads], st.session_state.setdefault("xray_results", {}),
    current_user(), progress=lambda done, name: bar.progress(done / len(uploads),
                                                             text=f"Analysed {done} of {len(uploads)}"))
bar.empty()


summary = summary_rows(results, positive)
counts = Counter(row["decision"] for row in summary)
st.subheader(f"{len(results)} studies: {counts[positive]} flagged {positive}, {counts[negative]} {negative}, "
             f"{counts['no prediction']} without a prediction")
probability_column = f"{positive.lower()} probability"
st.dataframe(pd.DataFrame(summary), hide_index=True, column_config={
    probability_column: st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)})
st.download_button("Download summary (CSV)", summary_csv(summary), "medcore_xray_summary.csv", "text/csv")


for index, result in enumerate(results):
    with st.container(border=True):
        show_study(result, evidence, threshold, positive, opacity, key=str(index + 1), title=result.filename,
                   model=model)
