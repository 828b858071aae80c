"""One analysed film on a page (an upload, or a study from the PACS): decision, gauge, film, Grad-CAM, reports.

Not a page of its own: the X-ray and PACS worklist pages call show_study.
"""

from __future__ import annotations

from functools import partial

import streamlit as st

from medcore.charts import probability_gauge
from medcore.imaging.gradcam import overlay
from medcore.metrics import format_probability
from medcore.pdf_reports import study_report_pdf
from medcore.reports import THRESHOLD_PROMISE, study_report_html
from views.common import deferred_download, escape_markdown


def show_study(result, evidence: dict, threshold: float, positive: str, opacity: float, key: str,
               title: str | None = None) -> None:
    """The result view of one film, its widgets keyed by `key` (unique on the page)."""
    if title:
        st.markdown(f"#### {escape_markdown(title)}")
    if result.error:
        st.warning(escape_markdown(result.error))
        if result.display is not None:
            st.image(result.display, caption="The image", width=240, clamp=True)
        return
    left, middle, right = st.columns([1, 2, 2])
    with left:
        (st.error if result.flagged else st.success)(
            f"**{result.decision}**: probability {format_probability(result.probability)} "
            f"{'≥' if result.flagged else '<'} threshold {threshold:.1%}")
        st.caption(THRESHOLD_PROMISE)
        st.plotly_chart(probability_gauge(result.probability, threshold), key=f"gauge-{key}",
                        config={"displayModeBar": False})
        if result.technical:
            st.caption(" · ".join(f"{k}: {escape_markdown(v)}" for k, v in result.technical.items()))
        st.download_button("PDF report", deferred_download(partial(study_report_pdf, result, evidence, opacity),
                                                           "a study's PDF report"),
                           f"medcore_report_{key}.pdf", "application/pdf", key=f"pdf-{key}",
                           icon=":material/picture_as_pdf:")
        st.download_button("Download report (HTML)", study_report_html(result, evidence, opacity),
                           f"medcore_report_{key}.html", "text/html", key=f"report-{key}")
    middle.image(result.display, caption="Original", width="stretch", clamp=True)
    right.image(overlay(result.display, result.heatmap, opacity),
                caption=f"Grad-CAM: regions that raised the {positive.lower()} score", width="stretch")
