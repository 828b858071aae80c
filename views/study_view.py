"""One analysed film on a page (an upload, or a study from the PACS): decision, gauge, film, Grad-CAM, reports.

Not a page of its own: the X-ray and PACS worklist pages call show_study.
"""

from __future__ import annotations

import hashlib
from functools import partial

import streamlit as st

from medcore.charts import probability_gauge
from medcore.imaging.gradcam import overlay
from medcore.imaging.second_opinion import occlusion_opinion
from medcore.metrics import format_probability
from medcore.pdf_reports import study_report_pdf
from medcore.reports import THRESHOLD_PROMISE, study_report_html
from views.common import deferred_download, escape_markdown


def show_study(result, evidence: dict, threshold: float, positive: str, opacity: float, key: str,
               title: str | None = None, model=None) -> None:
    """The result view of one film, its widgets keyed by `key` (unique on the page); with the model, a second
    explainer on demand."""
    if title:
        st.markdown(f"#### {escape_markdown(title)}")
    if result.error:
        st.warning(escape_markdown(result.error))
        if result.display is not None:
            st.image(result.display, caption="The image", width=240, clamp=True)
        return
    if result.intended_use_warning:
        st.error(escape_markdown(result.intended_use_warning), icon=":material/warning:")
    left, middle, right = st.columns([1, 2, 2])
    with left:
        (st.error if result.flagged else st.success)(
            f"**{result.decision}**: probability {format_probability(result.probability)} "
            f"{'≥' if result.flagged else '<'} threshold {threshold:.1%}")
        st.caption(THRESHOLD_PROMISE)
        if result.population_note:
            st.caption(escape_markdown(result.population_note))
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
    if model is not None and result.model_input is not None:
        _second_opinion(result, model, positive, opacity, key)


def _second_opinion(result, model, positive: str, opacity: float, key: str) -> None:
    """Occlusion beside Grad-CAM when asked (a few hundred forward passes), kept for the session."""
    opinions = st.session_state.setdefault("occlusion_opinions", {})
    film = (model.version, hashlib.sha256(result.model_input.tobytes()).hexdigest())
    if film not in opinions:
        if not st.button("Check the heatmap with a second method (occlusion)", key=f"occlusion-{key}",
                         icon=":material/compare:"):
            return
        with st.spinner("Covering the film region by region…"):
            opinions[film] = occlusion_opinion(model.occlusion, result.model_input, result.heatmap)
            while len(opinions) > 20:
                opinions.pop(next(iter(opinions)))
    opinion = opinions[film]
    left, middle, right = st.columns([1, 2, 2])
    left.metric("Rank correlation", f"{opinion.rank_correlation:.2f}",
                help="Spearman's rho between the two maps over the film's regions: 1 = the same order, 0 = unrelated.")
    left.metric("Top 10 % shared", f"{opinion.top_overlap:.0%}",
                help="Intersection over union of the hottest tenth of the film in each map.")
    middle.image(overlay(result.display, opinion.display_map(), opacity), width="stretch",
                 caption=f"Occlusion: regions whose covering lowered the {positive.lower()} score (scaled to its own "
                         "peak)")
    right.image(overlay(result.display, result.heatmap, opacity), width="stretch",
                caption="Grad-CAM (as above)")
    (st.success if opinion.verdict == "agree" else st.warning)(opinion.sentence())
    typical = model.typical_heatmap_agreement
    if typical:
        st.caption(f"On new patients' films (the external sample's choosing part, {typical['n']} films) the median rank "
                   f"correlation was {typical['median']:.2f} (half of films between {typical['iqr'][0]:.2f} and "
                   f"{typical['iqr'][1]:.2f}).")
