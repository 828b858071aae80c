"""Model performance page: what the production models achieve on their held-out validation data."""

import pandas as pd
import streamlit as st

from medcore import charts, tasks
from views.common import production_model, xray_model

st.title("Model performance")
st.caption("Every number and curve is recomputed by MedCore's evaluation code from the validation predictions "
           "stored with each production model (patients or notes never seen in training). Validation data come "
           "from the same source as the training data; expect somewhat lower figures elsewhere.")
xray_tab, notes_tab = st.tabs(["Chest X-ray", "Case notes"])

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
