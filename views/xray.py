"""Chest X-ray page: upload radiographs, see calibrated probabilities, decisions and Grad-CAM."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from medcore.artifacts import ModelLoadError
from medcore.imaging.gradcam import overlay
from medcore.imaging.service import StudyResult, analyse_uploads
from medcore.reports import study_report_html
from views.common import current_user, escape_markdown, xray_model

st.title("Chest X-ray: pneumonia")

try:
    model = xray_model()
except ModelLoadError as exc:
    st.error(f"The chest X-ray model cannot be loaded, so no prediction is possible: {exc}")
    st.stop()

validation, threshold = model.validation_metrics, model.threshold
positive, negative = model.positive_label, model.negative_label
st.info(
    f"**Operating threshold {threshold:.1%}.** A study whose calibrated {positive.lower()} probability is at or "
    f"above it is flagged **{positive}**. On {validation['n']} validation films from children not seen in "
    f"training, this threshold gave **sensitivity {validation['sensitivity']:.1%}** and **specificity "
    f"{validation['specificity']:.1%}** (AUC {validation['auc']:.3f}). Model `{model.version}`, "
    "trained on paediatric frontal films: decision support, not a diagnosis."
)

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


probability_column = f"{positive.lower()} probability"


def summary_row(result: StudyResult) -> dict:
    return {"file": result.filename, "decision": result.decision or "no prediction",
            probability_column: None if result.probability is None else round(result.probability, 4),
            "note": result.error or ""}


summary = pd.DataFrame([summary_row(r) for r in results])
st.subheader(f"{len(results)} studies: {int((summary['decision'] == positive).sum())} flagged {positive}, "
             f"{int((summary['decision'] == negative).sum())} {negative}, "
             f"{int((summary['decision'] == 'no prediction').sum())} without a prediction")
st.dataframe(summary, hide_index=True, column_config={
    probability_column: st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)})
st.download_button("Download summary (CSV)", summary.to_csv(index=False), "medcore_xray_summary.csv", "text/csv")


def gauge(probability: float) -> go.Figure:
    figure = go.Figure(go.Indicator(
        mode="gauge+number", value=probability * 100, number={"suffix": "%", "valueformat": ".1f"},
        gauge={"axis": {"range": [0, 100]}, "bar": {"color": "#c0392b" if probability >= threshold else "#2e86c1"},
               "threshold": {"line": {"color": "black", "width": 3}, "value": threshold * 100}}))
    figure.update_layout(height=190, margin={"l": 35, "r": 35, "t": 15, "b": 10})
    return figure


for index, result in enumerate(results):
    with st.container(border=True):
        st.markdown(f"#### {escape_markdown(result.filename)}")
        if result.error:
            st.warning(result.error)
            if result.display is not None:
                st.image(result.display, caption="The uploaded image", width=240, clamp=True)
            continue
        left, middle, right = st.columns([1, 2, 2])
        with left:
            (st.error if result.flagged else st.success)(
                f"**{result.decision}**: probability {result.probability:.1%} "
                f"{'≥' if result.flagged else '<'} threshold {threshold:.1%}")
            st.plotly_chart(gauge(result.probability), key=f"gauge-{index}", config={"displayModeBar": False})
            if result.technical:
                st.caption(" · ".join(f"{k}: {escape_markdown(v)}" for k, v in result.technical.items()))
            st.download_button("Download report (HTML)", study_report_html(result, validation, opacity),
                                f"medcore_report_{index + 1}.html", "text/html", key=f"report-{index}")
        middle.image(result.display, caption="Original", width="stretch", clamp=True)
        right.image(overlay(result.display, result.heatmap, opacity),
                    caption=f"Grad-CAM: regions that raised the {positive.lower()} score", width="stretch")
