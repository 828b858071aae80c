"""Model performance page: what the production models achieve on their held-out validation data."""

import pandas as pd
import streamlit as st

from medcore import charts, drift, tasks
from views.common import production_model, xray_model

st.title("Model performance")
st.caption("Every number and curve is recomputed by MedCore's evaluation code from the validation predictions "
           "stored with each production model (patients or notes never seen in training). Validation data come "
           "from the same source as the training data; expect somewhat lower figures elsewhere.")
xray_tab, drift_tab, notes_tab = st.tabs(["Chest X-ray", "Chest X-ray: recent use", "Case notes"])

with xray_tab:
    model = xray_model()
    if model is not None:
        stored = model.validation_predictions()
        report = charts.binary_report(stored["y_true"], stored["prob"], model.threshold)
        m = report["metrics"]
        st.markdown(f"Model `{model.version}` · {m['n']} validation films · operating threshold "
                    f"**{m['threshold']:.1%}** ({model.threshold_rule})")
        st.dataframe(pd.DataFrame([{"AUC": m["auc"], "accuracy": m["accuracy"], "sensitivity": m["sensitivity"],
                                    "specificity": m["specificity"], "F1": m["f1"], "PPV": m["ppv"],
                                    "NPV": m["npv"], "ECE": m["ece"]}]).round(4), hide_index=True)
        left, right = st.columns(2)
        left.plotly_chart(charts.roc_figure(report), key="xray-roc")
        right.plotly_chart(charts.pr_figure(report), key="xray-pr")
        left, right = st.columns(2)
        c = report["curves"]
        left.plotly_chart(charts.reliability_figure(c["reliability_predicted"], c["reliability_observed"],
                                                    c["reliability_count"], m["ece"]), key="xray-cal")
        right.plotly_chart(charts.confusion_figure(charts.binary_confusion(m), model.labels,
                                                   "Confusion matrix at the operating threshold"), key="xray-cm")

with drift_tab:
    model = xray_model()
    if model is not None:
        days = st.select_slider("Period", [7, 30, 90, 365], value=30, format_func=lambda d: f"last {d} days")
        use = drift.report(model, drift.recent_studies(days))
        st.caption(f"Model `{model.version}` · {use.n} studies in the last {days} days, from the audit log (outcomes, "
                   "probabilities and atypicality scores only: no images, names or identifiers), against the "
                   "model's internal validation films.")
        for check in use.warnings:
            st.warning(f"Recent use differs from validation: {check.name} is {check.recent:.3f} against "
                       f"{check.reference:.3f} (p = {check.p_value:.2g}, {check.test}). Check the films and "
                       "consider a local validation before relying on the figures.", icon=":material/warning:")
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
                                    "test": c.test if c.p_value is not None else
                                    f"not tested: fewer than {drift.MIN_STUDIES} studies"} for c in use.checks]),
                     hide_index=True, width="stretch")

with notes_tab:
    task = st.selectbox("Task", tasks.NOTES_KEYS, format_func=lambda key: tasks.get(key).title,
                        key="performance-task")
    model = production_model(task)
    if model is None:
        st.stop()
    stored = model.validation_predictions()
    report = charts.multiclass_report(stored["y_true"], stored["prob"], model.labels)
    m, baseline = report["metrics"], model.baseline_metrics
    st.markdown(f"Model `{model.version}` · {m['n']} validation notes")
    st.dataframe(pd.DataFrame([
        {"model": "MLP (shipped)", "accuracy": m["accuracy"], "macro-F1": m["macro_f1"], "ECE": m["ece"]},
        {"model": "TF-IDF + logistic regression (baseline)", "accuracy": baseline["accuracy"],
         "macro-F1": baseline["macro_f1"], "ECE": baseline["ece"]}]).round(4), hide_index=True)
    left, right = st.columns(2)
    left.plotly_chart(charts.per_class_f1_figure(m["per_class_f1"], baseline["per_class_f1"]), key="notes-f1")
    r = report["reliability"]
    right.plotly_chart(charts.reliability_figure(r["reliability_predicted"], r["reliability_observed"],
                                                 r["reliability_count"], m["ece"], "top-class probability"),
                       key="notes-cal")
    st.plotly_chart(charts.confusion_figure(m["confusion"], model.labels, "Confusion matrix (top class)"),
                    key="notes-cm")
