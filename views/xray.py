"""Chest X-ray page: upload radiographs, see calibrated probabilities, decisions and Grad-CAM."""

from collections import Counter
from functools import partial

import pandas as pd
import streamlit as st

from medcore.charts import probability_gauge
from medcore.imaging.gradcam import overlay
from medcore.imaging.service import analyse_uploads
from medcore.metrics import format_probability
from medcore.pdf_reports import study_report_pdf
from medcore.reports import study_report_html, summary_csv, summary_rows, xray_banner
from views.common import current_user, deferred_download, escape_markdown, xray_model

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
        st.markdown(f"#### {escape_markdown(result.filename)}")
        if result.error:
            st.warning(escape_markdown(result.error))
            if result.display is not None:
                st.image(result.display, caption="The uploaded image", width=240, clamp=True)
            continue
        left, middle, right = st.columns([1, 2, 2])
        with left:
            (st.error if result.flagged else st.success)(
                f"**{result.decision}**: probability {format_probability(result.probability)} "
                f"{'≥' if result.flagged else '<'} threshold {threshold:.1%}")
            st.plotly_chart(probability_gauge(result.probability, threshold), key=f"gauge-{index}",
                            config={"displayModeBar": False})
            if result.technical:
                st.caption(" · ".join(f"{k}: {escape_markdown(v)}" for k, v in result.technical.items()))
            st.download_button("PDF report", deferred_download(partial(study_report_pdf, result, evidence, opacity),
                                                               "a study's PDF report"),
                               f"medcore_report_{index + 1}.pdf", "application/pdf", key=f"pdf-{index}",
                               icon=":material/picture_as_pdf:")
            st.download_button("Download report (HTML)", study_report_html(result, evidence, opacity),
                               f"medcore_report_{index + 1}.html", "text/html", key=f"report-{index}")
        middle.image(result.display, caption="Original", width="stretch", clamp=True)
        right.image(overlay(result.display, result.heatmap, opacity),
                    caption=f"Grad-CAM: regions that raised the {positive.lower()} score", width="stretch")
