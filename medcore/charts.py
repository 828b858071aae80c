"""Plotly figures of a model's validation performance, computed from its stored predictions.

Every figure is recomputed by medcore.metrics from the labels and probabilities saved with the model
(ModelInfo.validation_predictions); nothing is typed by hand. No Streamlit here: the page only shows them.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from medcore.artifacts import Evaluation
from medcore.markup import escape_chart_text
from medcore.metrics import (
    binary_figures,
    binary_metrics,
    curves,
    format_probability,
    multiclass_intervals,
    multiclass_metrics,
)

LAYOUT = {"height": 360, "margin": {"l": 50, "r": 20, "t": 40, "b": 50}, "template": "plotly_white"}


def binary_report(y_true: np.ndarray, prob: np.ndarray, threshold: float) -> dict:
    """Metrics at the threshold, curves, and the operating point on each curve."""
    metrics = binary_metrics(y_true, prob, threshold)
    points = curves(y_true, prob)
    precision_at = metrics["ppv"]
    return {"metrics": metrics, "curves": points,
            "operating_point": {"fpr": 1 - metrics["specificity"], "tpr": metrics["sensitivity"],
                                "recall": metrics["sensitivity"], "precision": precision_at}}


def roc_figure(report: dict) -> go.Figure:
    c, op, m = report["curves"], report["operating_point"], report["metrics"]
    figure = go.Figure([
        go.Scatter(x=c["fpr"], y=c["tpr"], mode="lines", name=f"ROC (AUC {m['auc']:.3f})"),
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "gray"}),
        go.Scatter(x=[op["fpr"]], y=[op["tpr"]], mode="markers", name=f"threshold {m['threshold']:.2f}",
                   marker={"size": 12, "color": "#c0392b", "symbol": "x"})])
    figure.update_layout(title="ROC curve", xaxis_title="1 − specificity", yaxis_title="sensitivity", **LAYOUT)
    return figure


def reliability_figure(predicted: list[float], observed: list[float], counts: list[int], ece: float,
                       what: str = "predicted probability") -> go.Figure:
    figure = go.Figure([
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line={"dash": "dot", "color": "gray"}),
        go.Scatter(x=predicted, y=observed, mode="lines+markers", name=f"model (ECE {ece:.3f})",
                   marker={"size": [6 + 14 * np.sqrt(c / max(counts)) for c in counts]},
                   text=[f"{c} cases" for c in counts], hovertemplate="%{x:.2f} → %{y:.2f} (%{text})")])
    figure.update_layout(title="Calibration (reliability)", xaxis_title=f"mean {what}",
                         yaxis_title="observed frequency", xaxis_range=[0, 1], yaxis_range=[0, 1], **LAYOUT)
    return figure


def confusion_figure(matrix: list[list[int]], labels: list[str], title: str) -> go.Figure:
    counts = np.asarray(matrix)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    labels = [escape_chart_text(label) for label in labels]
    figure = go.Figure(go.Heatmap(z=share, x=labels, y=labels, colorscale="Blues", zmin=0, zmax=1,
                                  text=counts, texttemplate="%{text}", hovertemplate="true %{y}<br>predicted %{x}"
                                  "<br>%{text} cases (%{z:.0%} of the row)<extra></extra>"))
    figure.update_layout(title=title, xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                         **{**LAYOUT, "height": max(360, 26 * len(labels) + 120)})
    return figure


def binary_confusion(metrics: dict) -> list[list[int]]:
    return [[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]]


def multiclass_report(y_true: np.ndarray, prob: np.ndarray, labels: list[str]) -> dict:
    metrics = multiclass_metrics(y_true, prob, labels)
    pred = prob.argmax(1)
    confidence = prob[np.arange(len(pred)), pred]
    reliability = curves((pred == y_true).astype(int), confidence)
    return {"metrics": metrics, "reliability": reliability, "intervals": multiclass_intervals(y_true, prob)}


def per_class_f1_figure(deep: dict[str, float], baseline: dict[str, float], name: str = "shipped model"
                        ) -> go.Figure:
    keys = list(deep)
    labels = [escape_chart_text(k) for k in keys]
    figure = go.Figure([go.Bar(y=labels, x=[deep[k] for k in keys], name=f"{name} (shipped)", orientation="h"),
                        go.Bar(y=labels, x=[baseline[k] for k in keys], name="TF-IDF + LR baseline",
                               orientation="h")])
    figure.update_layout(title="F1 per class", xaxis_range=[0, 1], barmode="group",
                         **{**LAYOUT, "height": max(360, 34 * len(labels) + 120)})
    return figure


def training_curves_figure(epochs: list[dict]) -> go.Figure:
    """Loss and the validation score per epoch, from a job's progress events, as they arrive."""
    from plotly.subplots import make_subplots

    score = "val_auc" if epochs and "val_auc" in epochs[0] else "val_macro_f1"
    # An ensemble's members train one after another: member m's epoch e is step (m - 1) * epochs + e.
    x = [(int(e.get("member", 1)) - 1) * int(e["epochs"]) + int(e["epoch"]) for e in epochs]
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(go.Scatter(x=x, y=[e["loss"] for e in epochs], mode="lines+markers", name="training loss"))
    if epochs and "auc" in epochs[0]:
        figure.add_trace(go.Scatter(x=x, y=[e["auc"] for e in epochs], mode="lines", name="training AUC",
                                    line={"dash": "dot"}), secondary_y=True)
    figure.add_trace(go.Scatter(x=x, y=[e[score] for e in epochs], mode="lines+markers",
                                name="validation " + ("AUC" if score == "val_auc" else "macro-F1")), secondary_y=True)
    members = int(epochs[0].get("members", 1)) if epochs else 1
    unit = "round" if epochs and epochs[0].get("federated") else "epoch"
    figure.update_layout(title="Training progress", **LAYOUT,
                         xaxis_title=unit + (f" ({members} members, one after another)" if members > 1 else ""))
    figure.update_yaxes(title_text="loss", secondary_y=False)
    scores = [e[k] for e in epochs for k in ("auc", score) if k in e]
    low = max(0.0, min(scores, default=0.0) - 0.05)  # zoomed in: late epochs differ in the third decimal
    figure.update_yaxes(title_text="score", range=[low, 1.005], showgrid=False, secondary_y=True)
    return figure


def federated_rounds_figure(rounds: list[dict]) -> go.Figure:
    """Validation AUC per round: the global model on the pooled validation films and on each hospital's own."""
    x = [int(r["epoch"]) for r in rounds]
    traces = [go.Scatter(x=x, y=[r["val_auc"] for r in rounds], mode="lines+markers", name="global (pooled)",
                         line={"width": 3})]
    for site in rounds[0]["site_auc"] if rounds else []:
        traces.append(go.Scatter(x=x, y=[r["site_auc"].get(site) for r in rounds], mode="lines+markers",
                                 name=escape_chart_text(site), line={"dash": "dot"}))
    figure = go.Figure(traces)
    figure.update_layout(title="Validation AUC per round, global and per hospital", xaxis_title="round",
                         yaxis_title="AUC", **LAYOUT)
    return figure


def gan_curves_figure(epochs: list[dict]) -> go.Figure:
    """A generator's training: both losses per epoch, and its Fréchet ratio (1 = as close as real films get)."""
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=("Losses", "Fréchet distance / real-vs-real floor"))
    x = [int(e["epoch"]) for e in epochs]
    figure.add_trace(go.Scatter(x=x, y=[e["loss"] for e in epochs], mode="lines", name="generator loss"), 1, 1)
    figure.add_trace(go.Scatter(x=x, y=[e["d_loss"] for e in epochs], mode="lines", name="discriminator loss"), 1, 1)
    measured = [e for e in epochs if "fd_ratio" in e]
    for name in (measured[0]["fd_ratio_per_class"] if measured else {}):
        figure.add_trace(go.Scatter(x=[int(e["epoch"]) for e in measured],
                                    y=[e["fd_ratio_per_class"][name] for e in measured], mode="lines",
                                    line={"dash": "dot"}, name=f"Fréchet ratio, {name}"), 1, 2)
    figure.add_trace(go.Scatter(x=[int(e["epoch"]) for e in measured], y=[e["fd_ratio"] for e in measured],
                                mode="lines+markers", name="Fréchet ratio (geometric mean of classes)", line={"width": 3}), 1, 2)
    figure.add_hline(y=1.0, line_dash="dot", annotation_text="real films", row=1, col=2)
    figure.update_yaxes(type="log", dtick=1, row=1, col=2)
    figure.update_xaxes(title_text="epoch")
    figure.update_layout(**LAYOUT)
    return figure


def comparison_roc_figure(y_true: np.ndarray, probabilities: dict[str, np.ndarray]) -> go.Figure:
    """Overlaid ROC curves of several models on the same items (micro-averaged one-vs-rest for classes)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    traces = []
    multiclass = any(prob.ndim == 2 for prob in probabilities.values())
    for name, prob in probabilities.items():
        if prob.ndim == 2:  # multiclass: every (item, class) pair is one binary decision
            truth = np.eye(prob.shape[1], dtype=int)[y_true].ravel()
            prob = prob.ravel()
        else:
            truth = y_true
        fpr, tpr, _ = roc_curve(truth, prob)
        traces.append(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{name} (AUC {roc_auc_score(truth, prob):.3f})"))
    traces.append(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "gray"}))
    figure = go.Figure(traces)
    title = "ROC on the same held-out data" + (" (micro-average over classes)" if multiclass else "")
    figure.update_layout(title=title, xaxis_title="1 − specificity", yaxis_title="sensitivity", **LAYOUT)
    return figure


def probability_gauge(probability: float, threshold: float) -> go.Figure:
    """A calibrated probability on a 0-100 % dial, with the operating threshold marked."""
    figure = go.Figure(go.Indicator(
        mode="gauge+number", value=probability * 100, number={"suffix": "%", "valueformat": ".1f"},
        gauge={"axis": {"range": [0, 100]}, "bar": {"color": "#c0392b" if probability >= threshold else "#2e86c1"},
               "threshold": {"line": {"color": "black", "width": 3}, "value": threshold * 100}}))
    figure.update_layout(height=190, margin={"l": 35, "r": 35, "t": 15, "b": 10})
    return figure


def class_probabilities_figure(ranked: list[tuple[str, float]]) -> go.Figure:
    """The top classes of a note as horizontal bars of calibrated probability, the most likely on top."""
    labels = [escape_chart_text(label) for label, _ in ranked][::-1]
    probabilities = [p for _, p in ranked][::-1]
    figure = go.Figure(go.Bar(x=[p * 100 for p in probabilities], y=labels, orientation="h",
                              text=[format_probability(p) for p in probabilities], textposition="auto",
                              marker_color=["#93c5fd", "#60a5fa", "#2563eb"][-len(ranked):]))
    figure.update_layout(height=60 + 45 * len(ranked), margin={"l": 10, "r": 10, "t": 10, "b": 30},
                         xaxis={"range": [0, 100], "title": "calibrated probability (%)"})
    return figure


def daily_use_figure(days: list[str], studies: list[int], flagged_share: list[float], positive: str) -> go.Figure:
    """Studies per day (bars) and the share flagged positive (line, right axis)."""
    figure = go.Figure([go.Bar(x=days, y=studies, name="studies", marker_color="#93c5fd"),
                        go.Scatter(x=days, y=[share * 100 for share in flagged_share], name=f"% flagged {positive}",
                                   yaxis="y2", mode="lines+markers", line={"color": "#c0392b"})])
    figure.update_layout(**LAYOUT, title="Studies per day", xaxis={"type": "category"}, yaxis={"title": "studies"},
                         yaxis2={"title": "% flagged", "overlaying": "y", "side": "right", "range": [0, 100],
                                 "showgrid": False}, legend={"orientation": "h", "y": -0.2})
    return figure


def distribution_figure(recent: np.ndarray, reference: np.ndarray | None, title: str, x_title: str,
                        limit: float | None = None, limit_label: str = "limit") -> go.Figure:
    """Recent values against the validation reference, as overlaid normalised histograms."""
    traces = [go.Histogram(x=recent, name=f"recent use (n = {len(recent)})", histnorm="percent", opacity=0.6,
                           xbins={"size": 0.05})]
    if reference is not None:
        traces.append(go.Histogram(x=reference, name=f"validation (n = {len(reference)})", histnorm="percent",
                                   opacity=0.6, xbins={"size": 0.05}))
    figure = go.Figure(traces)
    if limit is not None:
        figure.add_vline(x=limit, line_dash="dash", line_color="black", annotation_text=limit_label)
    figure.update_layout(**LAYOUT, title=title, barmode="overlay", xaxis={"title": x_title},
                         yaxis={"title": "% of studies"})
    return figure


SOURCE_COLOURS = {"internal": "#1f77b4", "external": "#d62728", "local": "#2ca02c"}


def evaluation_report(evaluation: Evaluation) -> dict:
    """Metrics with 95 % intervals and curves of one stored evaluation (internal, new patients or local)."""
    metrics = binary_figures(evaluation.y_true, evaluation.prob, evaluation.threshold, evaluation.decisions)
    return {"kind": evaluation.kind, "title": evaluation.title, "source": evaluation.source, "metrics": metrics,
            "curves": curves(evaluation.y_true, evaluation.prob)}


def figures_table(reports: list[dict]) -> list[dict]:
    """One row per evaluation ({"title", "source", "metrics": binary_figures}): each figure with its 95 % interval."""
    def cell(report: dict, key: str, percent: bool) -> str:
        value, (low, high) = report["metrics"][key], report["metrics"]["intervals"][key]
        return f"{value:.1%} ({low:.1%}–{high:.1%})" if percent else f"{value:.3f} ({low:.3f}–{high:.3f})"

    return [{"evaluation": r["title"], "films": r["metrics"]["n"], "AUC": cell(r, "auc", False),
             "accuracy": cell(r, "accuracy", True), "sensitivity": cell(r, "sensitivity", True),
             "specificity": cell(r, "specificity", True), "ECE": cell(r, "ece", False), "source": r["source"]}
            for r in reports]


def roc_overlay_figure(reports: list[dict]) -> go.Figure:
    """The ROC curves of several evaluations of one model, each with its operating point."""
    figure = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                                   line={"dash": "dot", "color": "gray"})])
    for r in reports:
        colour, m = SOURCE_COLOURS.get(r["kind"]), r["metrics"]
        figure.add_trace(go.Scatter(x=r["curves"]["fpr"], y=r["curves"]["tpr"], mode="lines", line={"color": colour},
                                    name=f"{r['title']} (AUC {m['auc']:.3f})"))
        figure.add_trace(go.Scatter(x=[1 - m["specificity"]], y=[m["sensitivity"]], mode="markers",
                                    marker={"size": 12, "symbol": "x", "color": colour}, showlegend=False,
                                    name=f"{r['title']}: operating point"))
    figure.update_layout(title="ROC curves (× = operating threshold)", xaxis_title="1 − specificity",
                         yaxis_title="sensitivity", **LAYOUT)
    return figure


def reliability_overlay_figure(reports: list[dict]) -> go.Figure:
    """Calibration of several evaluations of one model on one chart."""
    figure = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                                   line={"dash": "dot", "color": "gray"})])
    for r in reports:
        c = r["curves"]
        figure.add_trace(go.Scatter(
            x=c["reliability_predicted"], y=c["reliability_observed"], mode="lines+markers",
            name=f"{r['title']} (ECE {r['metrics']['ece']:.3f})", line={"color": SOURCE_COLOURS.get(r["kind"])},
            marker={"size": [6 + 12 * np.sqrt(n / max(c["reliability_count"])) for n in c["reliability_count"]]},
            text=[f"{n} films" for n in c["reliability_count"]], hovertemplate="%{x:.2f} → %{y:.2f} (%{text})"))
    figure.update_layout(title="Calibration (reliability)", xaxis_title="mean predicted probability",
                         yaxis_title="observed frequency", xaxis_range=[0, 1], yaxis_range=[0, 1], **LAYOUT)
    return figure


def adaptation_figure(before: list[float], after: list[float]) -> go.Figure:
    """The local films' logits before and after an adaptation: how far it moved them."""
    figure = go.Figure([go.Histogram(x=before, name=f"before (production, n = {len(before)})", opacity=0.6,
                                     histnorm="percent", nbinsx=40),
                        go.Histogram(x=after, name="after (adapted)", opacity=0.6, histnorm="percent", nbinsx=40)])
    figure.update_layout(**LAYOUT, title="Your films' scores (logits) before and after adaptation", barmode="overlay",
                         xaxis={"title": "logit (towards pneumonia →)"}, yaxis={"title": "% of films"})
    return figure
