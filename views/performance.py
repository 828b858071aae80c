"""Model performance page: what the production models achieve on their held-out validation data."""

import pandas as pd
import streamlit as st

from medcore import charts, drift, tasks
from medcore.pacs import feedback
from views.common import escape_markdown, production_model, signed_in, xray_model

st.title("Model performance")
st.caption("Every number and curve is recomputed by MedCore's evaluation code from the predictions stored with "
           "each production model (patients or notes never seen in training), and says where they come from.")
xray_tab, drift_tab, notes_tab = st.tabs(["Chest X-ray", "Chest X-ray: recent use", "Case notes"])



@st.cache_data(max_entries=4, show_spinner="Computing figures and intervals…")
def xray_reports(version: str, _model) -> list[dict]:
    """Per model version: the bootstrap intervals are computed once, not on every page run."""
    return [charts.evaluation_report(e) for e in _model.evaluations()]


with xray_tab:
    model = xray_model()
    if model is not None:
        reports = xray_reports(model.version, model)
        st.markdown(f"Model `{model.version}` · operating threshold **{model.threshold:.1%}** "
                    f"({escape_markdown(model.threshold_rule or '')})")
        st.caption("Side by side: **internal validation** (held-out films of the training source: optimistic), "
                   "**new patients** (an external sample never trained on) and **local validation** (your "
                   "hospital's films, after a local recalibration). Intervals are 95 %: Wilson for proportions, "
                   "bias-corrected bootstrap for AUC and ECE.")
        if len(reports) == 1:
            st.info("Only internal validation is available for this version. Run a local validation "
                    "(admin page, or `medcore calibrate xray`) on your own films before relying on these figures.")
        st.dataframe(pd.DataFrame(charts.figures_table(reports)), hide_index=True, width="stretch")
        left, right = st.columns(2)
        left.plotly_chart(charts.roc_overlay_figure(reports), key="xray-roc")
        right.plotly_chart(charts.reliability_overlay_figure(reports), key="xray-cal")
        for column, report in zip(st.columns(len(reports)), reports):
            column.plotly_chart(charts.confusion_figure(charts.binary_confusion(report["metrics"]), model.labels,
                                                        f"{report['title']}: confusion at the threshold"),
                                key=f"xray-cm-{report['kind']}")
        if model.release_comparison:
            with st.expander("Compared before this release: one network, adaptation without labels, threshold rules",
                             icon=":material/compare:"):
                st.caption(model.release_comparison_notes)
                st.dataframe(pd.DataFrame(model.release_comparison), hide_index=True, width="stretch")

        confirmed = feedback.agreement_by_month(feedback.confirmed(model.version))
        if confirmed:
            st.markdown("**Agreement with clinicians' confirmed findings** (PACS worklist; this model version; "
                        "95 % Wilson intervals). Confirmed studies are those a clinician chose to confirm, not a "
                        "random sample: read it as a check, not as sensitivity or specificity.")
            st.dataframe(pd.DataFrame([{"month": m["month"], "confirmed studies": m["n"],
                                        "MedCore agreed": f"{m['agreement']:.1%} ({m['low']:.1%}–{m['high']:.1%})"}
                                       for m in confirmed]), hide_index=True)

with drift_tab:
    model = xray_model()
    if model is not None:
        days = st.select_slider("Period", [7, 30, 90, 365], value=30, format_func=lambda d: f"last {d} days")
        use = drift.report(model, drift.recent_studies(days))
        st.caption(f"Model `{model.version}` · {use.n} studies in the last {days} days, from the audit log (outcomes, "
                   "probabilities, atypicality scores and an 8-number summary of the network's features only: no "
                   "images, names or identifiers), each film counted once per day and source, against the model's "
                   "internal validation films.")
        if use.invalid_outputs:
            st.error(f"On {use.invalid_outputs} studies the model gave no valid output (not a finite number); they got "
                     "no decision. This is a fault of the model: an administrator should roll back to a previous "
                     "version (Models & retraining).", icon=":material/error:")
        for check in use.warnings:
            st.warning(f"Recent use differs from validation: {check.name} is {check.recent:.3f} against "
                       f"{check.reference:.3f} (p = {check.p_value:.2g}, {check.test}).", icon=":material/warning:")
        if use.warnings:
            admin = (user := signed_in()) is not None and user.is_admin
            st.info(drift.ADVICE + (" (Models & retraining → Local validation or Adaptation.)" if admin else
                                    " Tell your MedCore administrator."), icon=":material/tune:")
        if use.n:
            st.plotly_chart(charts.daily_use_figure(use.days, use.studies_per_day, use.flagged_share_per_day,
                                                    model.positive_label), key="drift-days")
            left, right = st.columns(2)
            left.plotly_chart(charts.distribution_figure(use.probabilities, use.reference_probabilities,
                                                         "Calibrated probabilities", "probability", model.threshold,
                                                         "threshold"),
                              key="drift-prob")
            right.plotly_chart(charts.distribution_figure(use.atypicality, None, "Atypicality (quality gate)",
                                                          "atypicality score", 1.0), key="drift-atyp")
        st.dataframe(pd.DataFrame([{"check": c.name, "recent": round(c.recent, 4), "validation": round(c.reference, 4),
                                    "p-value": "" if c.p_value is None else f"{c.p_value:.2g}",
                                    "test": c.unavailable or (c.test if c.p_value is not None else
                                                              f"not tested: fewer than {drift.MIN_STUDIES} studies")}
                                   for c in use.checks]),
                     hide_index=True, width="stretch")

def _notes_source(model) -> str:
    """Where the shipped model's figures come from: a held-out split, or out-of-fold predictions after a refit."""
    if model.figures_are_out_of_fold:
        return ("The model was refitted on every note; its figures are these notes' out-of-fold predictions, from "
                "models that never saw them (internal validation, same source as training).")
    return "Internal validation: notes held out from training, same source."


with notes_tab:
    task = st.selectbox("Task", tasks.NOTES_KEYS, format_func=lambda key: tasks.get(key).title,
                        key="performance-task")
    model = production_model(task)
    if model is None:
        st.stop()
    stored = model.validation_predictions()
    report = charts.multiclass_report(stored["y_true"], stored["prob"], model.labels)
    m, baseline = report["metrics"], model.baseline_metrics
    st.markdown(f"Model `{model.version}` · {m['n']} validation notes · 95 % intervals in brackets (Wilson for "
                "accuracy, class-stratified bootstrap for macro-F1 and ECE)")
    intervals = report["intervals"]

    def cell(key: str) -> str:
        low, high = intervals[key]
        return f"{m[key]:.3f} ({low:.3f}–{high:.3f})"

    st.dataframe(pd.DataFrame([
        {"model": f"{model.architecture} (shipped)", "accuracy": cell("accuracy"), "macro-F1": cell("macro_f1"),
         "ECE": cell("ece")},
        {"model": "TF-IDF + logistic regression (baseline)", "accuracy": f"{baseline['accuracy']:.3f}",
         "macro-F1": f"{baseline['macro_f1']:.3f}", "ECE": f"{baseline['ece']:.3f}"}]), hide_index=True)
    st.caption("The baseline is scored on the same notes; its predictions are not kept, so it has no interval. "
               + _notes_source(model))
    left, right = st.columns(2)
    left.plotly_chart(charts.per_class_f1_figure(m["per_class_f1"], baseline["per_class_f1"], model.architecture),
                      key="notes-f1")
    r = report["reliability"]
    right.plotly_chart(charts.reliability_figure(r["reliability_predicted"], r["reliability_observed"],
                                                 r["reliability_count"], m["ece"], "top-class probability"),
                       key="notes-cal")
    st.plotly_chart(charts.confusion_figure(m["confusion"], model.labels, "Confusion matrix (top class)"),
                    key="notes-cm")
